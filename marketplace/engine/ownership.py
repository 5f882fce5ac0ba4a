"""Which engine matches an order in a multi-domain market: kept here, or handed to another domain.

With one engine per domain every engine indexes every order on the one chain, so ownership must
be decided, and the chain must make a wrong decision harmless. The rule:

1. **The entry engine owns an order first.** An order is matched only by an engine that holds its
   spec, and the spec reaches an engine only with the order: the buyer posts it to one engine
   (``POST /v1/orders``), which places the order on chain. Every other engine sees the order's
   events and shows its state, but has nothing to match it with.
2. **It keeps it or hands it over, once per decision** (``route``, each turn before the matching
   round): its own domain if it can serve the order now, or another domain by the summaries its
   ``DomainRouter`` selected, best first or spread by free capacity and latency
   (``marketplace.routing.domain_choice``). Handing over withdraws the order from this engine's
   matcher *before* the spec is sent (``jobs``, sent by the federation link to the other engine's
   ``POST /v1/handovers``), and records it (``ownership.json``), so this engine never matches it
   again, also after a restart.
3. **The receiving engine accepts or refuses** (``accept``): the order must be Open on chain, the
   spec must hash to its on-chain requirement, its own providers must be able to serve it some
   day, and it must not be an order this engine handed away. An accepted order is matched there
   and never handed on (one hop: no order circulates). A refusal, an unreachable engine or a
   handover that times out brings the order back here (``handover_failed``), that domain excluded
   for ``EXCLUDE_S``.
4. **Taking back.** An order handed to a domain that has had no route at all for ``TAKE_BACK_S``
   (its engine died: the sessions to it went down and its summaries were withdrawn) and is still
   Open on chain comes back to this engine.
5. **The chain is the arbiter.** Rules 1-4 make two owners rare (a handover whose answer was lost,
   a taken-back order whose engine returns), never impossible; so the contract assigns an order
   only while it is Open, and an ``assignBatch`` that reaches an order already assigned skips it
   (``AssignmentSkipped``) instead of reverting: the first batch mined wins, the other engine
   releases its reservation. No order is assigned twice.

Orders this engine matches: ``owned``. Without a domain (one engine for the whole market) every
order with a spec is owned and ``route`` does nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from marketplace.chain.lifecycle import OrderState
from marketplace.engine import batch as B
from marketplace.engine.errors import HandoverRefused, SpecMismatch, UnknownEngineOrder
from marketplace.engine.matcher import Matcher
from marketplace.engine.orders import OrderDesk, OrderRecord, Status
from marketplace.engine.providers import ProviderTable
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore
from marketplace.matching import Order, ProviderStatus
from marketplace.resources.model import DeviceClass
from marketplace.routing import DomainSummary, ProviderCapacity, RoutingTable
from marketplace.routing.domain_choice import ChoicePolicy, DomainOption, choose, options

log = logging.getLogger(__name__)

#: how often an order that could not be placed (refused here, or pending) is reconsidered
ROUTE_RETRY_S = 2.0
#: an order pending here this long may go to a domain with free capacity
PENDING_HANDOVER_S = 5.0
#: a handed order whose domain has had no route at all this long (and is still Open) comes back
TAKE_BACK_S = 5.0
#: a domain that refused an order (or could not be reached) is not offered it again for this long
EXCLUDE_S = 30.0
ROUTABLE = (Status.QUEUED, Status.PENDING, Status.REFUSED)


@dataclass(frozen=True, slots=True)
class Handover:
    """An order to send to ``domain``'s engine, with its spec (``Spec.to_dict``)."""

    order: int
    domain: int
    spec: dict[str, Any]
    option: dict[str, Any]


class Ownership:
    """Route orders between domains and take orders from other domains (see the module docstring).

    ``routes(device_class)``: the summaries the domain router selected, best first (set by the
    federation link; None: a single engine). Every method runs under the engine's lock."""

    def __init__(self, *, domain: int | None, home: str | None, policy: ChoicePolicy,
                 orders: dict[int, OrderRecord], specs: dict[bytes, Spec], table: ProviderTable, matcher: Matcher,
                 desk: OrderDesk, store: EngineStore, routing: RoutingTable | None, sync: Callable[[], None],
                 lock: threading.RLock, clock: Callable[[], float]) -> None:
        self.domain, self.home, self.policy = domain, home, policy
        self.orders, self.specs, self.table, self.matcher, self.desk = orders, specs, table, matcher, desk
        self.store, self.routing, self.sync, self.lock, self.clock = store, routing, sync, lock, clock
        self.routes: Callable[[DeviceClass], Sequence[DomainSummary]] | None = None
        doc = store.load_ownership()
        self.handed: dict[int, int] = {int(k): int(v) for k, v in doc.get("handed", {}).items()}
        self.accepted: set[int] = {int(x) for x in doc.get("accepted", [])}
        self.in_flight: dict[int, int] = {}
        #: per order, the domains not to offer it to, until when
        self.excluded: dict[int, dict[int, float]] = {}
        self.decided: dict[int, float] = {}
        self.first_seen: dict[int, float] = {}
        self.unrouted_since: dict[int, float] = {}
        self.jobs: queue.Queue[Handover] = queue.Queue()
        self.counters: Counter[str] = Counter()

    @property
    def federated(self) -> bool:
        return self.domain is not None and self.routes is not None

    def owned(self, rec: OrderRecord) -> bool:
        return rec.id not in self.handed and rec.id not in self.in_flight

    def restore(self) -> None:
        """After recovery: orders handed away earlier stay with their domain (never queued here)."""
        for oid, domain in self.handed.items():
            rec = self.orders.get(oid)
            if rec is not None and rec.state == OrderState.OPEN:
                rec.set(Status.HANDED_OVER, [["handover", f"matched in domain {domain}"]])

    # -- this domain's offer (also what the federation link advertises in summaries)

    def capacities(self) -> list[ProviderCapacity]:
        """Per own active provider and device class: devices (CPU: slots) in total and free now (the lesser
        of the matcher's and the provider's LSA's), its price and the latency from this domain's home node."""
        if not self.matcher.providers:
            return []
        sched = self.matcher.scheduler()
        ix = sched.index
        out = []
        for addr, p in sorted(self.matcher.providers.items()):
            i = ix.pos.get(addr)
            lsa = self.table.lsas.get(addr)
            if i is None or lsa is None or p.status != ProviderStatus.ACTIVE:
                continue
            # free: what the matcher has not given away, and no more than the provider's LSA says is free
            # (the agent's own view: capacity busy outside this engine's leases is busy too)
            said = {a.device_class: a.free_milli / 1000 for a in lsa.availability}
            latency = self._latency(self.home, p.attach_node) or 0.0
            rows = [(cls, float(cs.cap[i].sum()) / 1000, float(cs.free[i].sum()) / 1000)
                    for cls, cs in ix.slots.items()]
            rows.append((DeviceClass.CPU, float(ix.cpu_cap[i]) / 1000, float(ix.cpu_free[i]) / 1000))
            for cls, total, free in rows:
                if total:
                    out.append(ProviderCapacity(addr, cls, total, min(free, said.get(cls, free)),
                                                float(self.table.price(addr, int(cls))), latency))
        return out

    def _latency(self, a: str | None, b: str | None) -> float | None:
        if self.routing is None or a is None or b is None:
            return None
        return float(self.routing.latency(a, b))

    # -- handing over

    def route(self, now: float) -> None:
        """Decide, for each order this engine owns and has not decided yet (or should reconsider), where
        it is matched; hand over those that go elsewhere. Before the round, so a handed order is not matched."""
        if not self.federated:
            return
        # filtered before sorted: the table holds every order the chain ever saw, the candidates are few
        candidates = [r for r in self.orders.values() if r.state == OrderState.OPEN and r.status in ROUTABLE]
        for rec in sorted(candidates, key=lambda r: r.id):
            if rec.spec_digest not in self.specs or rec.id in self.accepted or not self.owned(rec):
                continue
            if not self._due(rec, now):
                continue
            self.decided[rec.id] = now
            choice = self.choice(rec, now)
            if choice is not None and not choice.local:
                self._hand(rec, choice)
        self._take_back(now)

    def _due(self, rec: OrderRecord, now: float) -> bool:
        first = self.first_seen.setdefault(rec.id, now)
        last = self.decided.get(rec.id)
        if last is None:
            return True
        if rec.status == Status.QUEUED or now - last < ROUTE_RETRY_S:
            return False
        return rec.status == Status.REFUSED or now - first >= PENDING_HANDOVER_S

    def choice(self, rec: OrderRecord, now: float) -> DomainOption | None:
        """Where ``rec`` goes now (None: nowhere can take it now; it stays here)."""
        order = self.matcher.order_of(rec, now)
        if order is None or self.routes is None:
            return None
        req = order.requirement
        local = self._local(order, now) if rec.status != Status.REFUSED else None
        border = self._latency(order.buyer_node, self.home) or 0.0
        opts = options(list(self.routes(req.device_class)), own=self.domain or 0, local=local,
                       need=req.count * req.share_milli / 1000, max_price=rec.max_price, domain=req.domain,
                       max_latency_ms=req.max_latency_ms, border_latency_ms=border,
                       exclude=[d for d, until in self.excluded.get(rec.id, {}).items() if now < until])
        return choose(opts, self.policy, rec.id)

    def _local(self, order: Order, now: float) -> DomainOption | None:
        """This domain as an option for ``order``: only if a provider here can take it now."""
        if not self.matcher.providers:
            return None
        sched = self.matcher.scheduler()
        mask = sched.feasible(order, now)
        if not mask.any():
            return None
        cls = order.requirement.device_class
        caps = [c for c in self.capacities() if c.device_class == cls]
        ids = [sched.index.ids[i] for i in mask.nonzero()[0]]
        latency = min((self._latency(order.buyer_node, self.matcher.providers[a].attach_node) or 0.0) for a in ids)
        return DomainOption(self.domain or 0, sum(c.free for c in caps), sum(c.total for c in caps),
                            min((c.price for c in caps), default=0.0), latency, 1, local=True)

    def _hand(self, rec: OrderRecord, choice: DomainOption) -> None:
        spec = self.specs[rec.spec_digest]
        self.in_flight[rec.id] = choice.domain
        if self.matcher.sched is not None:
            B.withdraw(self.matcher.sched, str(rec.id))
        rec.set(Status.HANDED_OVER, [["handover", f"sending to domain {choice.domain}"]])
        self.jobs.put(Handover(rec.id, choice.domain, spec.to_dict(), choice.to_dict()))
        log.info("order %d: handing over to domain %d (%s)", rec.id, choice.domain, choice.to_dict())

    def handed_over(self, order_id: int, domain: int) -> None:
        """The other engine took it: this one never matches it again."""
        if self.in_flight.pop(order_id, None) is None:
            return
        self.handed[order_id] = domain
        self.counters["handed"] += 1
        self._persist()
        rec = self.orders.get(order_id)
        if rec is not None and rec.status == Status.HANDED_OVER:
            rec.set(Status.HANDED_OVER, [["handover", f"matched in domain {domain}"]])
        log.info("order %d: handed over to domain %d", order_id, domain)

    def handover_failed(self, order_id: int, domain: int, reason: str) -> None:
        """The other engine refused it, or could not be reached: match it here (that domain excluded)."""
        if self.in_flight.pop(order_id, None) is None:
            return
        self.counters[f"handover-failed:{reason}"] += 1
        self._back(order_id, domain, f"domain {domain} did not take it ({reason})")

    def _back(self, order_id: int, domain: int, why: str) -> None:
        self.excluded.setdefault(order_id, {})[domain] = self.clock() + EXCLUDE_S
        rec = self.orders.get(order_id)
        if rec is None or rec.state != OrderState.OPEN:
            return
        log.info("order %d: back to this engine: %s", order_id, why)
        rec.set(Status.QUEUED, [["handover", why]])
        self.decided[order_id] = self.clock()
        if self.matcher.current:
            self.matcher.submit(rec, self.clock())

    def _take_back(self, now: float) -> None:
        if not self.handed:
            return
        alive = {s.origin_as for cls in DeviceClass for s in self.routes(cls)} if self.routes else set()
        for oid, domain in list(self.handed.items()):
            rec = self.orders.get(oid)
            if rec is None or rec.state != OrderState.OPEN or domain in alive:
                self.unrouted_since.pop(oid, None)
                continue
            since = self.unrouted_since.setdefault(oid, now)
            if now - since < TAKE_BACK_S:
                continue
            del self.handed[oid]
            self.unrouted_since.pop(oid, None)
            self.counters["taken-back"] += 1
            self._persist()
            self._back(oid, domain, f"domain {domain} has had no route for {TAKE_BACK_S:.0f} s")

    # -- taking over

    def accept(self, order_id: int, raw_spec: Any, from_domain: int) -> dict[str, Any]:
        """Take an order another domain's engine hands over (its identity already checked by the caller)."""
        if self.domain is None:
            raise HandoverRefused("this engine matches the whole market: there is no domain to hand over to",
                                  reason="not-federated", field="order")
        self.sync()  # the chain as of now: an order assigned since this engine's last turn is refused as such
        rec = self.orders.get(order_id)
        if rec is None:
            raise UnknownEngineOrder(f"no order {order_id} on this market", field="order")
        if rec.id in self.accepted:
            return {"order": order_id, "accepted": True, "domain": self.domain}
        if rec.state != OrderState.OPEN:
            raise HandoverRefused(f"order {order_id} is {rec.state.label} on chain", reason="order-not-open",
                                  field="order")
        if rec.id in self.handed or rec.id in self.in_flight:
            raise HandoverRefused(f"order {order_id} was handed away by this engine", reason="handed-away",
                                  field="order")
        spec = self.desk.spec(raw_spec)
        if spec.digest() != rec.spec_digest:
            raise SpecMismatch(f"the spec hashes to 0x{spec.digest().hex()}, order {order_id} holds "
                               f"0x{rec.spec_digest.hex()}", field="spec")
        self._can_serve(rec, spec)
        self.accepted.add(rec.id)
        self._persist()
        self.counters[f"accepted-from:{from_domain}"] += 1
        self.desk.keep_spec(spec)
        log.info("order %d: taken over from domain %d", order_id, from_domain)
        return {"order": order_id, "accepted": True, "domain": self.domain}

    def _can_serve(self, rec: OrderRecord, spec: Spec) -> None:
        if not self.matcher.providers:
            raise HandoverRefused(f"domain {self.domain} has no provider", reason="cannot-serve", field="order")
        order = Order(str(rec.id), B.with_max_price(spec.requirement, rec.max_price), min(rec.tier, 3),
                      spec.attachment, self.clock())
        if not self.matcher.scheduler().explain(order).ever_satisfiable():
            raise HandoverRefused(f"no provider of domain {self.domain} can ever serve order {rec.id}",
                                  reason="cannot-serve", field="order")

    def _persist(self) -> None:
        self.store.put_ownership({"handed": {str(k): v for k, v in sorted(self.handed.items())},
                                  "accepted": sorted(self.accepted)})

    def status(self) -> dict[str, Any]:
        return {"handed": len(self.handed), "in_flight": len(self.in_flight), "accepted": len(self.accepted),
                "counters": dict(self.counters)}
