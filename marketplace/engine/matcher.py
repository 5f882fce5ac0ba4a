"""The matching ``Scheduler`` the engine runs, and the capacity it holds for leases on chain.

``Matcher`` owns the scheduler and the providers it matches on (``providers``, the
``ProviderTable``'s projections). A provider that appears or changes hardware makes the
scheduler stale: it is rebuilt at its next use, holding the capacity of every Assigned or
Running order on its provider again and queueing every Open order with a spec (an order
refused before may fit a provider that just appeared). Otherwise a change is an in-place
``update_provider``.

``round(now, binder)`` runs one matching round with the engine's ``ChainBinder`` and records
each decision on its order: refused (with the matcher's reasons), pending, or assigned.

Invariants: the capacity held for a lease is held once (``hold`` does nothing for an order
the scheduler already tracks); an order leaves the scheduler (``release``) when its lease or
its chance of one ends on chain; the scheduler is never consulted while stale.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from marketplace.chain.lifecycle import OrderState
from marketplace.engine import batch as B
from marketplace.engine.orders import OrderRecord, Status
from marketplace.engine.providers import ProviderTable
from marketplace.engine.spec import Spec
from marketplace.errors import TopologyError, Unschedulable
from marketplace.matching import MatchingConfig, Order, Outcome, Provider, RoundResult, Scheduler
from marketplace.resources.runtimes import WorkloadNeed
from marketplace.routing import RoutingTable

if TYPE_CHECKING:
    from marketplace.engine.binder import ChainBinder

log = logging.getLogger(__name__)

#: statuses of an Open order the matcher should have queued (a rebuild queues them again)
MATCHABLE = (Status.QUEUED, Status.PENDING, Status.REFUSED)


class Matcher:
    """The scheduler, built from the projected providers and kept in step with the order table."""

    def __init__(self, table: ProviderTable, *, config: MatchingConfig, routing: RoutingTable | None,
                 orders: dict[int, OrderRecord], specs: dict[bytes, Spec], clock: Callable[[], float],
                 need_of: Callable[[Spec], WorkloadNeed | None] = Spec.need) -> None:
        self.table = table
        self.config = config
        self.routing = routing
        self.orders = orders
        self.specs = specs
        self.clock = clock
        #: what an order's workload needs of a provider's runtimes (``ArtifactDesk.need_of``)
        self.need_of = need_of
        #: the providers matched on, by address: the table's projections
        self.providers: dict[str, Provider] = {}
        self.sched: Scheduler | None = None
        self.stale = True

    @property
    def current(self) -> bool:
        """Whether the scheduler is built and up to date (an order may go straight into it)."""
        return self.sched is not None and not self.stale

    # -- providers

    def refresh(self, addr: str) -> None:
        """Project ``addr`` again (its LSA, registry record or liveness changed)."""
        p = self.table.project(addr)
        if p is None:
            return
        old = self.providers.get(addr)
        self.providers[addr] = p
        if old is None or old.descriptor != p.descriptor or old.runtimes != p.runtimes or not self.current:
            # a provider added since the last rebuild is not in the scheduler yet: rebuild, not update;
            # one that serves other runtimes now may take an order refused before: rebuild too
            self.stale = True
        else:
            self.sched.update_provider(p)

    def remove(self, addr: str) -> None:
        self.providers.pop(addr, None)
        self.stale = True

    # -- the scheduler

    def scheduler(self) -> Scheduler:
        """The scheduler, rebuilt first when stale (see the module docstring)."""
        if self.current:
            return self.sched
        self.stale = False
        sched = Scheduler(list(self.providers.values()), config=self.config, routing=self.routing)
        self.sched = sched
        now = self.clock()
        for rec in sorted(self.orders.values(), key=lambda r: r.id):
            if rec.state.live:
                self.hold(rec, rec.provider, now)
            elif rec.state == OrderState.OPEN and rec.status in MATCHABLE:
                # a provider that just appeared may satisfy an order refused before
                self.submit(rec, now)
        log.info("scheduler built: %d providers, %d leases held, %d orders queued", len(self.providers),
                 len(sched.held), len(sched.queue))
        return sched

    def order_of(self, rec: OrderRecord, now: float) -> Order | None:
        """The matcher's ``Order`` for ``rec`` (None until its spec is known)."""
        spec = self.specs.get(rec.spec_digest)
        if spec is None:
            return None
        return Order(str(rec.id), B.with_max_price(spec.requirement, rec.max_price), min(rec.tier, 3),
                     spec.attachment, float(now), self.need_of(spec))

    def hold(self, rec: OrderRecord, provider: str, now: float) -> None:
        """Hold the capacity of a lease the chain bound (recovery, failover to a backup)."""
        sched = self.sched
        if sched is None or sched.state_of(str(rec.id)) is not None:
            return
        order = self.order_of(rec, now)
        if order is None or provider not in sched.index.pos:
            log.info("order %d: lease on %s not held in the matcher (no spec or no LSA yet)", rec.id, provider)
            return
        B.withdraw(sched, order.order_id)
        pl = B.place_on(sched, order, provider, now)
        if pl is None:
            log.warning("order %d: %s has no free capacity left for its lease; not held", rec.id, provider)
            return
        B.hold(sched, order, pl)

    def release(self, rec: OrderRecord) -> None:
        if self.sched is not None:
            B.withdraw(self.sched, str(rec.id))
            self.sched.release(str(rec.id))

    def submit(self, rec: OrderRecord, now: float) -> None:
        """Queue an Open order; one no provider can ever satisfy is recorded refused."""
        sched = self.sched
        order = self.order_of(rec, now)
        if sched is None or order is None or order.order_id in sched.orders:
            return
        try:
            sched.submit(order)
        except Unschedulable as exc:
            rec.set(Status.REFUSED, [list(r) for r in getattr(exc, "summary", ())])
            log.info("order %d refused: no provider can ever satisfy it (%s); it stays Open on chain, the buyer "
                     "may cancel it", rec.id, rec.reasons)
            return
        except TopologyError as exc:
            rec.set(Status.REFUSED, [["attachment", str(exc)]])
            return
        rec.set(Status.QUEUED)

    # -- a round

    def round(self, now: float, binder: ChainBinder) -> None:
        """One matching round bound by ``binder`` (which first snapshots the round's inputs for its
        batch record), each decision recorded on its order. The binder is handed to the scheduler
        per round: it writes through the engine's event fold, which itself drives this matcher."""
        if not self.providers:
            return
        sched = self.scheduler()
        if not len(sched.queue):
            return
        binder.prepare(sched, now)
        sched.binder = binder
        self.record(sched, sched.schedule_round(now))

    def record(self, sched: Scheduler, result: RoundResult) -> None:
        for d in result.decisions:
            rec = self.orders.get(int(d.order_id))
            if rec is None:
                continue
            if d.outcome == Outcome.REFUSED:
                rec.set(Status.REFUSED, [list(r) for r in d.reasons])
                log.info("order %d refused (%s); it stays Open on chain: the buyer may cancel it", rec.id,
                         rec.reasons)
            elif d.outcome in (Outcome.PENDING, Outcome.DENIED, Outcome.PREEMPTED):
                if rec.state == OrderState.OPEN and rec.status != Status.REFUSED:
                    rec.set(Status.PENDING, [list(r) for r in d.reasons])
                if d.outcome == Outcome.DENIED and any(str(r[0]).startswith("Bind:order-") for r in d.reasons):
                    B.withdraw(sched, d.order_id)  # no longer Open on chain: not ours to match
            elif d.outcome == Outcome.BOUND and rec.status != Status.ASSIGNED:
                rec.set(Status.ASSIGNED)
