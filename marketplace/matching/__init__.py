"""The matching engine's pure core: orders in, placements out, every rejection explained.

    Scheduler(providers, config=MatchingConfig(), routing=RoutingTable|None,
              binder=InMemoryBinder(), workload=WorkloadDistribution|None)
      .submit(order)              raises Unschedulable (never satisfiable) / InvalidOrder
      .schedule_round(now)        -> RoundResult(decisions, digest())
      .explain(order)             -> Explanation (per provider: rejections or scores)
      .unreserve(order_id)        idempotent; .confirm(order_id); .release(order_id)
      .hold(order, placement)     capacity of a lease bound elsewhere (recovery, failover)
      .placement_on(order, provider_id, now) -> Placement | None

MatchingConfig(policy=...) selects a registered policy (registry.py: "default", "first-fit");
the framework's extension points are Protocols in framework.py, plugins in plugins/.

See docs/matching.md for the pipeline, plugins, reason codes, ageing and determinism.
"""

from marketplace.matching.binder import Binder, BindResult, BindStatus, InMemoryBinder
from marketplace.matching.config import MatchingConfig
from marketplace.matching.fragmentation import FragmentationModel, TaskType, WorkloadDistribution
from marketplace.matching.model import (Code, Decision, Explanation, Order, Outcome, Placement, Provider,
                                        ProviderStatus, ProviderVerdict, Rejection, Reservation, ReservationState,
                                        ScoreLine)
from marketplace.matching.ledger import RoundResult
from marketplace.matching.scheduler import Scheduler

__all__ = [
    "Binder", "BindResult", "BindStatus", "InMemoryBinder", "MatchingConfig", "FragmentationModel", "TaskType",
    "WorkloadDistribution", "Code", "Decision", "Explanation", "Order", "Outcome", "Placement", "Provider",
    "ProviderStatus", "ProviderVerdict", "Rejection", "Reservation", "ReservationState", "ScoreLine",
    "RoundResult", "Scheduler",
]
