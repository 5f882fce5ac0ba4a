"""The order queue, and its QueueSort plugin: orders by tier, with ageing so that low tiers never starve.

Ageing formula. An order of tier ``t`` (0..3) submitted at ``s`` has at time ``now`` the
effective priority

    priority(now) = t + (now - s) / ageing_s

i.e. waiting ``ageing_s`` seconds is worth one tier. Orders are served by decreasing
priority, then by earlier submission, then by order id. Because ``now / ageing_s`` is the
same for every order, the ranking never changes with time: sorting by the *virtual time*

    v = s - t * ageing_s        (smallest first)

is the same ranking at every instant, so a plain heap keyed on ``v`` is exact and pushes
and pops cost O(log n) with no re-sorting as the clock runs. Starvation bound: an order is
served before every order submitted more than ``MAX_TIER * ageing_s`` seconds after it,
whatever their tiers; a tier-0 order waits behind at most the higher-tier orders submitted
within ``3 * ageing_s`` after it (plus those already queued).

``TierAgeing`` is that QueueSort plugin (``key``); ``OrderQueue`` is the heap of queued
orders, ordered by any QueueSort plugin's key.

Invariants: deterministic (keys are (v, submitted_at, order_id), no insertion-order or
clock dependence); an order id is in the queue at most once.
"""

from __future__ import annotations

import heapq
import logging
from typing import TYPE_CHECKING

from marketplace.matching.errors import InvalidOrder
from marketplace.matching.framework import QueueSortPlugin
from marketplace.matching.model import Order

if TYPE_CHECKING:
    from marketplace.matching.config import MatchingConfig

log = logging.getLogger(__name__)


class TierAgeing(QueueSortPlugin):
    """QueueSort by tier with ageing: waiting ``ageing_s`` is worth one tier (module docstring)."""

    name = "TierAgeing"

    def __init__(self, ageing_s: float) -> None:
        self.ageing_s = float(ageing_s)

    @classmethod
    def new(cls, config: MatchingConfig) -> TierAgeing:
        return cls(config.ageing_s)

    def key(self, order: Order) -> tuple[float, float, str]:
        return (order.submitted_at - order.tier * self.ageing_s, order.submitted_at, order.order_id)

    def priority(self, order: Order, now: float) -> float:
        """The effective priority at ``now`` (for display; the heap uses ``key``)."""
        return order.tier + (now - order.submitted_at) / self.ageing_s


class OrderQueue:
    """Queued orders, served by the QueueSort plugin's key (smallest first)."""

    def __init__(self, sort: QueueSortPlugin) -> None:
        self.sort = sort
        self._heap: list[tuple] = []
        self._orders: dict[str, Order] = {}

    def priority(self, order: Order, now: float) -> float:
        return self.sort.priority(order, now)

    def push(self, order: Order) -> None:
        if order.order_id in self._orders:
            raise InvalidOrder(f"order {order.order_id} is already queued", field="order_id")
        self._orders[order.order_id] = order
        heapq.heappush(self._heap, self.sort.key(order))

    def pop(self) -> Order | None:
        while self._heap:
            # every QueueSort key ends with the order id (keys are total)
            oid = heapq.heappop(self._heap)[-1]
            order = self._orders.pop(oid, None)
            if order is not None:
                return order
        return None

    def pop_many(self, limit: int | None) -> list[Order]:
        out: list[Order] = []
        while limit is None or len(out) < limit:
            o = self.pop()
            if o is None:
                break
            out.append(o)
        return out

    def remove(self, order_id: str) -> bool:
        """Drop a queued order (lazily: its heap entry is skipped when popped)."""
        return self._orders.pop(order_id, None) is not None

    def __contains__(self, order_id: str) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def snapshot(self) -> list[Order]:
        """Queued orders in service order (for inspection and tests)."""
        return sorted(self._orders.values(), key=self.sort.key)
