"""The Permit plugin: a provider's stake covers the value of the leases it holds.

``StakeCoversLeases`` runs after every order of a round is reserved, reservation by
reservation in decision order: a provider whose stake is below ``collateral_milli``/1000 of
the value (price x devices x hours) of everything it holds, this reservation included, is
denied it (reason ``stake-cover``); the order is requeued. With ``collateral_milli`` 0 every
reservation is allowed.
"""

from __future__ import annotations

import logging

from marketplace.matching.framework import Handle, Held, PermitPlugin

log = logging.getLogger(__name__)


class StakeCoversLeases(PermitPlugin):
    """Stake >= collateral share of the value held (see the module docstring)."""

    name = "StakeCoversLeases"

    def permit(self, fw: Handle, held: Held) -> str | None:
        milli = fw.config.collateral_milli
        if not milli:
            return None
        row = held.row
        need = sum(x.value for x in fw.live_on(row)) * milli / 1000
        stake = fw.index.providers[row].stake
        if stake >= need:
            return None
        log.info("order %s denied on %s: stake %d < collateral %.0f", held.reservation.order.order_id,
                 fw.index.ids[row], stake, need)
        return "stake-cover"
