"""The matcher's plugins, one module per extension point (the registry lists them by name).

    prefilter.py    PreFilter       EverFeasible
    filters.py      Filter          HardwareFit, RuntimeSupport, FreeCapacity, DomainLatency,
                                    PriceCeiling, ProviderStatus, ProviderLoad
    preemption.py   PostFilter      ReservationPreemption
    scores.py       Score           Fragmentation, BestFit, Price, PathLatency, LoadBalance, Reliability
                    NormalizeScore  MinMax
    reserve.py      Reserve         ProviderCapacity
    permit.py       Permit          StakeCoversLeases

QueueSort (``TierAgeing``) lives with the queue it orders (``matching/queue.py``), Bind's
``InMemoryBinder`` with the ``Binder`` port (``matching/binder.py``). Each plugin subclasses
its extension point's Protocol (``matching/framework.py``).
"""
