"""The PostFilter plugin: a higher tier takes capacity held by unbound, lower-tier reservations.

Runs only when no provider passes the filters. ``ReservationPreemption`` looks at every
provider holding unbound reservations of strictly lower tiers that passes every filter but
the capacity ones, and frees, on each, the fewest such reservations (lowest tiers first,
newest first) until the order's devices fit (``Placer.place``); it nominates the provider
whose victims have the lowest highest tier, then the fewest, then the lowest row.

Invariants: a bound lease is never a victim (only ``Handle.unbound`` reservations are);
the trial gives capacity back and takes it again in reverse order, so the index is left as
it was: the plugin touches nothing, the framework drops the victims it names.
"""

from __future__ import annotations

import logging

from marketplace.matching.framework import CycleState, Handle, Held, Nomination, PostFilterPlugin

log = logging.getLogger(__name__)


class ReservationPreemption(PostFilterPlugin):
    """Pre-emption of unbound, strictly lower-tier reservations (see the module docstring)."""

    name = "ReservationPreemption"

    def post_filter(self, st: CycleState, fw: Handle) -> Nomination | None:
        unbound = fw.unbound()
        if not unbound:
            return None
        tier = st.order.tier
        rows = sorted(r for r, hs in unbound.items() if any(h.reservation.order.tier < tier for h in hs.values()))
        if not rows:
            return None
        other = fw.feasible_mask(st, capacity=False)
        best = None
        for row in rows:
            if not other[row]:
                continue
            taken = self._fewest(st, fw, row, unbound[row].values())
            if taken is not None:
                key = (max(h.reservation.order.tier for h in taken), len(taken), row)
                if best is None or key < best[0]:
                    best = (key, row, taken)
        if best is None:
            return None
        _, row, taken = best
        log.debug("order %s: pre-empting %s on row %d", st.order.order_id,
                  [h.reservation.order.order_id for h in taken], row)
        return Nomination(row, tuple(taken))

    @staticmethod
    def _fewest(st: CycleState, fw: Handle, row: int, held) -> list[Held] | None:
        """The victims on ``row``, lowest tier then newest first, until the order fits; None
        if it does not fit even with all of them gone. The index is left as it was."""
        tier = st.order.tier
        victims = sorted((h for h in held if h.reservation.order.tier < tier),
                         key=lambda h: (h.reservation.order.tier, -h.reservation.round_no, h.reservation.order.order_id))
        ix = fw.index
        taken: list[Held] = []
        fits = False
        for h in victims:
            ix.give(row, h.reservation.placement)
            taken.append(h)
            if fw.placer.place(st, row) is not None:
                fits = True
                break
        for h in reversed(taken):
            ix.take(row, h.reservation.placement)
        return taken if fits else None
