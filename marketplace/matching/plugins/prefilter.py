"""The PreFilter plugin: refuse at once an order that no provider can EVER take.

``EverFeasible`` ANDs every filter's ``ever`` mask (what could pass once capacity frees up,
LSAs are fresh and providers come back): an order no provider passes is refused with every
provider's unresolvable reasons (``Unschedulable``), at submit and again in a round (provider
facts may have changed since). The mask is kept per (asks, provider facts version) until a
provider fact or the routes change (latency bounds read them): ``ever`` reads no clock and
no free capacity, so it does not change from round to round.

Invariant: an order refused here has no provider in ``ever``; since every filter's ``ever``
contains its ``mask``, no provider would pass the filters either.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from marketplace.errors import Unschedulable
from marketplace.matching.errors import unschedulable
from marketplace.matching.framework import CycleState, Handle, Lifetime, PreFilterPlugin, StateKey
from marketplace.matching.model import Rejection

log = logging.getLogger(__name__)

#: per order asks: (the AND of every filter's ever mask, whether any provider is in it)
EVER: StateKey[tuple[np.ndarray, bool]] = StateKey("EverFeasible.mask", Lifetime.MARKET_ROUTES)


class EverFeasible(PreFilterPlugin):
    """Refuses an order no provider can ever satisfy, with per-provider reasons."""

    name = "EverFeasible"

    def pre_filter(self, st: CycleState, fw: Handle) -> Unschedulable | None:
        if self.ever(st, fw)[1]:
            return None
        return self.refusal(st, fw)

    def ever(self, st: CycleState, fw: Handle) -> tuple[np.ndarray, bool]:
        hit = st.shared.get(EVER, st.asks)
        if hit is None:
            m = np.ones(st.ix.n, dtype=bool)
            for f in fw.filters:
                e = f.ever(st)
                if e is not None:
                    m = m & e
            hit = st.shared.put(EVER, st.asks, (m, bool(m.any())))
        return hit

    def refusal(self, st: CycleState, fw: Handle) -> Unschedulable:
        rejections: list[Rejection] = []
        for i in range(st.ix.n):
            rejections.extend(fw.rejections(st, i, unresolvable_only=True))
        summary = tuple(sorted(Counter(f"{r.plugin}:{r.reason}" for r in rejections).items()))
        log.info("order %s refused: no provider can ever satisfy it (%s)", st.order.order_id, summary)
        return unschedulable(st.order.order_id, tuple(rejections), summary)
