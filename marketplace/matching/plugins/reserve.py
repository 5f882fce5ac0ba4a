"""The Reserve plugin: a reservation takes its devices, CPU and memory in the provider index.

``ProviderCapacity.reserve`` takes the placement on the provider's row (with the row's
fragmentation after it when the score simulated exactly this placement, so it is not
computed twice: ``Placer.frag_after``); ``unreserve`` gives it back. The framework calls
``unreserve`` at most once per reservation (its own idempotence), so the index never gives
back capacity it did not take.
"""

from __future__ import annotations

import logging

from marketplace.matching.framework import Handle, ReservePlugin
from marketplace.matching.model import Order, Placement

log = logging.getLogger(__name__)


class ProviderCapacity(ReservePlugin):
    """Capacity held in the provider index (``ProviderIndex.take`` / ``give``)."""

    name = "ProviderCapacity"

    def reserve(self, fw: Handle, order: Order, row: int, placement: Placement) -> None:
        fw.index.take(row, placement, fw.placer.frag_after(row, order.requirement, placement))

    def unreserve(self, fw: Handle, order: Order, row: int, placement: Placement) -> None:
        fw.index.give(row, placement)
