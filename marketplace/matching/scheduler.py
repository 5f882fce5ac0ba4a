"""The scheduler: orders in, placements out, one deterministic round at a time.

The scheduler runs the Kubernetes scheduling framework (``framework.py``) with the plugins
its config's policy names (``registry.py``). One round (``schedule_round(now)``):

    QueueSort   up to ``batch_size`` orders, in the QueueSort plugin's order (tier + ageing)
    PreFilter   refuse an order no provider can EVER satisfy (EverFeasible)
    Filter      vectorized masks over all providers (plugins/filters.py)
    PostFilter  when nothing passes: ReservationPreemption may nominate a provider and victims
    Score       the policy's sampling (up to ``num_to_score`` feasible providers from a rotating
                start, or the first feasible one), weighted normalized scores (scoring.py)
    Reserve     the exact slots (placement.Placer), taken by the Reserve plugins; Unreserve
                gives them back, idempotently
    Permit      each reservation of the round (StakeCoversLeases)
    Bind        one Binder.bind call for the whole round (one batched chain write)

Determinism: the result depends only on the inputs (providers, config, workload
distribution, the queued orders, ``now``, the seed and the state left by earlier rounds and
calls): providers are indexed by id, ties are broken by keccak(seed, order id), nothing
reads a clock or iterates a set. ``RoundResult.digest()`` is a keccak over a canonical
encoding of these inputs and of the decisions, for replay (ledger.py).

Invariants: a bound lease is never pre-empted; capacity is held by at most one live
reservation per order; ``unreserve`` is idempotent; every order that leaves the queue
without a lease has a decision with reasons.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from marketplace.errors import Unschedulable
from marketplace.matching.binder import Binder, BindStatus, InMemoryBinder
from marketplace.matching.config import MatchingConfig
from marketplace.matching.errors import InvalidOrder, InvalidProvider, LeaseBound, UnknownOrder
from marketplace.matching.fragmentation import FragmentationModel, TaskType, WorkloadDistribution
from marketplace.matching.framework import (CycleState, ExtensionPoint, FilterPlugin, Held, Lifetime, SharedState,
                                            StateKey)
from marketplace.matching.index import ProviderIndex
from marketplace.matching.ledger import Ledger, RoundResult
from marketplace.matching.model import (Code, Decision, Explanation, Order, Outcome, Placement, Provider,
                                        ProviderVerdict, Rejection, Reservation, ReservationState, ScoreLine)
from marketplace.matching.placement import Placer
from marketplace.matching.queue import OrderQueue
from marketplace.matching.registry import REGISTRY, Sampling
from marketplace.matching.scoring import Scorer
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

ENGINE_VERSION = "cona-matching/1"

#: per (clock when a static filter reads it, order asks): the AND of the filters that do not
#: read free capacity
STATIC_MASK: StateKey[np.ndarray] = StateKey("Scheduler.static-mask", Lifetime.ROUND_ROUTES)


@dataclass(slots=True)
class _Round:
    """One round's work in progress: decisions in order, this round's live reservations, the
    orders to requeue at its end, and the providers examined."""

    decisions: list[Decision] = field(default_factory=list)
    new: list[Held] = field(default_factory=list)
    requeue: list[Order] = field(default_factory=list)
    examined: int = 0


class Scheduler:
    """The matching engine's pure core, and the framework ``Handle`` its plugins see."""

    def __init__(self, providers: Iterable[Provider], *, config: MatchingConfig | None = None, routing=None,
                 binder: Binder | None = None, workload: WorkloadDistribution | None = None) -> None:
        self.config = config or MatchingConfig()
        self.index = ProviderIndex(providers, routing=routing)
        self.routing = routing
        self._build_plugins(binder)
        if workload is None:
            # without the edge's workload history, one whole device is the only type assumed
            workload = WorkloadDistribution(DeviceClass.GPU, (TaskType(1, 1000, 0, 0, 1.0),))
        self.workload = workload
        scorers = [p for p, _ in self.scorer.scores] + self.scorer.tie_break
        if self.config.profile.track_fragmentation or any(p.needs_fragmentation for p in scorers):
            self.index.set_fragmentation(FragmentationModel(workload))
        self.placer = Placer(self.index)
        self.orders: dict[str, Order] = {}
        self.held: dict[str, Held] = {}
        #: unbound reservations per provider row (the only ones pre-emption may take)
        self.unbound_on: dict[int, dict[str, Held]] = {}
        self.round_no = 0
        self.next_start = 0
        self.shared = SharedState()
        self.ledger = Ledger(ENGINE_VERSION, self.config, self.workload, self.index)

    def _build_plugins(self, binder: Binder | None) -> None:
        profile, cfg = self.config.profile, self.config

        def make(point: ExtensionPoint, name: str):
            return REGISTRY.create(point, name, cfg)

        P = ExtensionPoint
        self.queue = OrderQueue(make(P.QUEUE_SORT, profile.queue_sort))
        self.pre_filters = [make(P.PRE_FILTER, n) for n in profile.pre_filter]
        self.filters: list[FilterPlugin] = [make(P.FILTER, n) for n in profile.filter]
        self._dynamic = [f for f in self.filters if f.dynamic]
        self._static_reads_clock = any(f.reads_clock(cfg) for f in self.filters if not f.dynamic)
        self.post_filters = [make(P.POST_FILTER, n) for n in profile.post_filter]
        self.scorer = Scorer(self.index, [(make(P.SCORE, n), w) for n, w in profile.score if w > 0],
                             [make(P.SCORE, n) for n in profile.tie_break],
                             make(P.NORMALIZE_SCORE, profile.normalize_score), cfg.seed)
        self.reserves = [make(P.RESERVE, n) for n in profile.reserve]
        self.permits = [make(P.PERMIT, n) for n in profile.permit]
        self.binder: Binder = binder if binder is not None else REGISTRY.create(P.BIND, InMemoryBinder.name, cfg)

    # ================================================================== inputs

    def providers_digest(self) -> bytes:
        """keccak over every provider's canonical record, in id order (the LSDB snapshot)."""
        return self.ledger.providers_digest()

    def state_digest(self) -> bytes:
        """keccak chain over every state change (submit, reserve, unreserve, bind, round)."""
        return self.ledger.state_digest()

    def update_provider(self, provider: Provider) -> None:
        """A new LSA / registry fact (status, stake, load, price, reliability) for a known provider."""
        self.index.update_market(provider)
        self.ledger.providers_changed()
        self.shared.clear()

    def routing_changed(self) -> None:
        """Call after ``RoutingTable.apply``: latency verdicts kept for this round are dropped."""
        self.shared.routes_changed()

    # ================================================================== submit / explain

    def cycle(self, order: Order, now: float) -> CycleState:
        """The scheduling cycle of ``order`` at ``now`` (what every plugin reads)."""
        return CycleState(order, self.index, self.config, now, self.shared)

    def submit(self, order: Order) -> None:
        """Queue an order; raise ``Unschedulable`` (with per-provider reasons) if no provider
        can ever satisfy it, and ``InvalidOrder`` if it is malformed or a duplicate."""
        if order.order_id in self.orders:
            raise InvalidOrder(f"order {order.order_id} was already submitted", field="order_id")
        if order.buyer_node is not None and self.routing is not None:
            self.routing.index(order.buyer_node)  # UnknownNode names it
        refusal = self._pre_filter(self.cycle(order, order.submitted_at))
        if refusal is not None:
            raise refusal
        self.orders[order.order_id] = order
        self.queue.push(order)
        self.ledger.event("submit", self.ledger.order_canon(order))

    def _pre_filter(self, st: CycleState) -> Unschedulable | None:
        for p in self.pre_filters:
            refusal = p.pre_filter(st, self)
            if refusal is not None:
                return refusal
        return None

    def explain(self, order: Order | str, *, now: float | None = None) -> Explanation:
        """Per provider: why it is filtered out (every failing filter), or how it scores (per
        plugin: raw, normalized 0..100, weight; then each tie-break plugin's raw with weight 0)
        over the whole feasible set. The pick is the round's rule over that set."""
        if isinstance(order, str):
            if order not in self.orders:
                raise UnknownOrder(order)
            order = self.orders[order]
        st = self.cycle(order, order.submitted_at if now is None else now)
        n = self.index.n
        rejections = [self.rejections(st, i) for i in range(n)]
        rows = np.flatnonzero(np.array([not r for r in rejections], dtype=bool))
        lines: dict[int, tuple[list[ScoreLine], float]] = {}
        best = None
        if len(rows):
            totals, per, ties = self.scorer.score(st, rows)
            tie_names = [p.name for p in self.scorer.tie_break]
            for k, i in enumerate(rows.tolist()):
                lines[i] = ([ScoreLine(name, float(raw[k]), float(norm[k]), w) for name, raw, norm, w in per] +
                            [ScoreLine(name, float(raw[k]), 0.0, 0.0) for name, raw in zip(tie_names, ties)],
                            float(totals[k]))
            k = 0 if self._first_feasible_policy else self.scorer.pick(order, totals, ties)
            best = self.index.ids[int(rows[k])]
        verdicts = []
        for i in range(n):
            if i in lines:
                verdicts.append(ProviderVerdict(self.index.ids[i], True, (), tuple(lines[i][0]), lines[i][1]))
            else:
                verdicts.append(ProviderVerdict(self.index.ids[i], False, rejections[i]))
        return Explanation(order.order_id, tuple(verdicts), best)

    @property
    def _first_feasible_policy(self) -> bool:
        return self.config.profile.sampling is Sampling.FIRST_FEASIBLE

    # ================================================================== filters (Handle)

    def feasible(self, order: Order, now: float) -> np.ndarray:
        """Which providers pass every filter for ``order`` at ``now`` (bool per index row)."""
        return self.feasible_mask(self.cycle(order, now))

    def feasible_mask(self, st: CycleState, *, capacity: bool = True) -> np.ndarray:
        """Providers every filter passes; ``capacity=False`` leaves out the filters that read
        free capacity (the result is then shared: read it, do not write it)."""
        # the filters that do not read free capacity are ANDed once per (order asks, round)
        # (and per clock, when one of them reads it: ProviderLoad ages LSAs out)
        sub = (st.now if self._static_reads_clock else None, st.asks)
        static = self.shared.get(STATIC_MASK, sub)
        if static is None:
            static = self.shared.put(STATIC_MASK, sub, self._combine(st, [f for f in self.filters if not f.dynamic]))
        if not capacity:
            return static
        m = static
        for f in self._dynamic:
            fm = f.mask(st)
            if fm is not None:
                m = m & fm
        return m if m is not static else m.copy()

    def _combine(self, st: CycleState, filters: list[FilterPlugin]) -> np.ndarray:
        m: np.ndarray | None = None
        for f in filters:
            fm = f.mask(st)
            if fm is None:
                continue
            m = fm.copy() if m is None else (m & fm)
        return np.ones(self.index.n, dtype=bool) if m is None else m

    def rejections(self, st: CycleState, i: int, *, unresolvable_only: bool = False) -> tuple[Rejection, ...]:
        """Every filter's rejection of provider row ``i`` (only the never-resolvable ones, from
        the filters that can say so, with ``unresolvable_only``)."""
        out: list[Rejection] = []
        for f in self.filters:
            if unresolvable_only and f.ever(st) is None:
                continue
            r = f.check(st, i)
            if r is None:
                continue
            out.extend(r if isinstance(r, tuple) else (r,))
        if unresolvable_only:
            out = [r for r in out if r.code == Code.UNRESOLVABLE]
        return tuple(out)

    def _pending_reasons(self, st: CycleState) -> tuple[tuple[str, int], ...]:
        """kube-scheduler's "0/N nodes are available: ..." counts, by the first failing filter."""
        left = np.ones(self.index.n, dtype=bool)
        counts = []
        for f in self.filters:
            fm = f.mask(st)
            if fm is None:
                continue
            bad = left & ~fm
            k = int(bad.sum())
            if k:
                counts.append((f.name, k))
            left &= fm
        return tuple(counts)

    # ================================================================== sampling

    def num_to_score(self) -> int:
        """How many feasible providers to find before scoring (kube-scheduler's rule)."""
        n = self.index.n
        pct = self.config.percentage_of_providers_to_score
        floor = self.config.min_feasible_to_score
        if n <= floor:
            return n
        if pct == 0:
            pct = max(5, 50 - n // 125)
        return max(floor, n * pct // 100)

    def _candidates(self, mask: np.ndarray) -> tuple[np.ndarray, int]:
        """The first ``num_to_score`` feasible rows from the rotating start, and how many
        providers that search examined (the start then moves past them, so the tail is not starved)."""
        n = self.index.n
        rows = np.flatnonzero(mask)
        if self.config.profile.sampling is Sampling.ALL:
            return rows, n
        want = self.num_to_score()
        start = self.next_start
        if len(rows) <= want:
            return rows, n
        k = int(np.searchsorted(rows, start))
        wrap = want - (len(rows) - k)
        if wrap > 0:
            # the search ran past the end and went on from row 0: those rows come first in id order
            picked = np.concatenate([rows[:wrap], rows[k:]])
            last = int(rows[wrap - 1])
        else:
            picked = rows[k:k + want]
            last = int(picked[-1])
        examined = (last - start) % n + 1
        return picked, examined

    def _select(self, rnd: _Round, st: CycleState, mask: np.ndarray) -> tuple[int, Placement, float] | None:
        """The provider the order takes among the feasible ones, its exact slots and its score;
        None when none of the sampled providers' device groups fit after all."""
        if self._first_feasible_policy:
            return self._first_feasible(st, mask)
        rows, examined = self._candidates(mask)
        rnd.examined += examined
        self.next_start = (self.next_start + examined) % max(self.index.n, 1)
        totals, _, ties = self.scorer.score(st, rows, detail=False)
        while len(rows):
            k = self.scorer.pick(st.order, totals, ties)
            pl = self.placer.place(st, int(rows[k]))
            if pl is not None:
                return int(rows[k]), pl, float(totals[k])
            # fit() disagrees with the mask (mixed device groups): skip that provider
            rows = np.delete(rows, k)
            totals = np.delete(totals, k)
            ties = [np.delete(t, k) for t in ties]
        return None

    def _first_feasible(self, st: CycleState, mask: np.ndarray) -> tuple[int, Placement, float] | None:
        start = 0
        while start < len(mask):
            row = start + int(np.argmax(mask[start:]))
            if not mask[row]:
                return None
            pl = self.placer.place(st, row)
            if pl is not None:
                return row, pl, 0.0
            start = row + 1
        return None

    # ================================================================== reserve / unreserve

    def placement_on(self, order: Order, provider_id: str, now: float) -> Placement | None:
        """The exact slots ``order`` would take on ``provider_id`` now (None: unknown provider,
        or its free capacity does not fit the order)."""
        row = self.index.pos.get(provider_id)
        if row is None:
            return None
        return self.placer.place(self.cycle(order, now), row)

    def hold(self, order: Order, placement: Placement) -> None:
        """Hold ``placement``'s capacity for a lease that exists already (bound on chain): a
        restart's recovery, a failover to a backup provider. The order is known and bound."""
        row = self.index.pos.get(placement.provider_id)
        if row is None:
            raise InvalidProvider(f"provider {placement.provider_id!r} is not in the index", field="provider_id")
        if order.order_id in self.held:
            raise InvalidOrder(f"order {order.order_id} already holds capacity", field="order_id")
        self.orders[order.order_id] = order
        self._reserve(order, row, placement)
        self.confirm(order.order_id)

    def _reserve(self, order: Order, row: int, pl: Placement) -> Held:
        for p in self.reserves:
            p.reserve(self, order, row, pl)
        req = order.requirement
        price = self.index.providers[row].price or 0
        value = price * req.count * req.share_milli / 1000 * req.duration_s / 3600
        h = Held(Reservation(order, pl, self.round_no), ReservationState.RESERVED, row, value)
        self.held[order.order_id] = h
        self.unbound_on.setdefault(row, {})[order.order_id] = h
        self.ledger.event("reserve", order.order_id, pl.canonical())
        return h

    def unreserve(self, order_id: str, *, requeue: bool = True) -> bool:
        """Give back an unbound reservation's capacity. Idempotent: False when nothing is held.
        A bound lease is not a reservation: ``LeaseBound`` (end it with ``release``)."""
        h = self.held.get(order_id)
        if h is None or h.state == ReservationState.RELEASED:
            return False
        if h.state == ReservationState.BOUND:
            raise LeaseBound(f"order {order_id} is bound to {h.reservation.placement.provider_id}; "
                             "a bound lease is never unreserved", order_id=order_id)
        self._drop(h)
        log.info("order %s unreserved from %s", order_id, h.reservation.placement.provider_id)
        if requeue and order_id not in self.queue:
            self.queue.push(h.reservation.order)
        return True

    def _drop(self, h: Held) -> None:
        order = h.reservation.order
        oid = order.order_id
        for p in reversed(self.reserves):
            p.unreserve(self, order, h.row, h.reservation.placement)
        h.state = ReservationState.RELEASED
        del self.held[oid]
        self._not_unbound(h.row, oid)
        self.ledger.event("unreserve", oid)

    def confirm(self, order_id: str) -> None:
        """The binder's deferred confirmation: the reservation is now a lease (never pre-empted)."""
        h = self.held.get(order_id)
        if h is None:
            raise UnknownOrder(order_id)
        if h.state == ReservationState.RESERVED:
            h.state = ReservationState.BOUND
            self._not_unbound(h.row, order_id)
            self.ledger.event("bound", order_id)

    def _not_unbound(self, row: int, order_id: str) -> None:
        # a row without unbound reservations leaves the map: pre-emption looks at the rows in it
        on = self.unbound_on.get(row)
        if on is not None:
            on.pop(order_id, None)
            if not on:
                del self.unbound_on[row]

    def release(self, order_id: str) -> bool:
        """A lease ended (or failed): its capacity returns. Idempotent."""
        h = self.held.get(order_id)
        if h is None:
            return False
        self._drop(h)
        self.orders.pop(order_id, None)
        return True

    def state_of(self, order_id: str) -> ReservationState | None:
        h = self.held.get(order_id)
        return None if h is None else h.state

    def unbound(self) -> Mapping[int, Mapping[str, Held]]:
        """Unbound reservations per provider row (the only capacity pre-emption may take)."""
        return self.unbound_on

    def live_on(self, row: int) -> list[Held]:
        """Every reservation and lease holding capacity on provider row ``row``."""
        return [h for h in self.held.values() if h.row == row]

    # ================================================================== the round

    def schedule_round(self, now: float) -> RoundResult:
        """Match up to ``batch_size`` queued orders; see the module docstring."""
        self.round_no += 1
        self.shared.end_round()
        batch = self.queue.pop_many(self.config.batch_size)
        inputs = self.ledger.inputs(self.round_no, now, batch)
        rnd = _Round()
        for order in batch:
            self._schedule_one(rnd, order, now)
        index_of = {d.order_id: k for k, d in enumerate(rnd.decisions) if d.outcome == Outcome.RESERVED}
        self._permit(rnd, index_of)
        self._bind(rnd, index_of)
        for o in rnd.requeue:
            if o.order_id not in self.queue:
                self.queue.push(o)
        result = RoundResult(self.round_no, float(now), tuple(rnd.decisions), inputs, rnd.examined)
        self.ledger.event("round", self.round_no, result.digest().hex())
        log.debug("round %d: %d orders, %s", self.round_no, len(batch),
                  dict(Counter(d.outcome.value for d in rnd.decisions)))
        return result

    def _schedule_one(self, rnd: _Round, order: Order, now: float) -> None:
        """One order's cycle: PreFilter, Filter, then PostFilter or Score, then Reserve."""
        st = self.cycle(order, now)
        refusal = self._pre_filter(st)
        if refusal is not None:
            rnd.decisions.append(Decision(order.order_id, Outcome.REFUSED, reasons=refusal.summary))
            self.orders.pop(order.order_id, None)
            return
        mask = self.feasible_mask(st)
        if not mask.any():
            self._post_filter(rnd, st)
            return
        got = self._select(rnd, st, mask)
        if got is None:
            rnd.decisions.append(Decision(order.order_id, Outcome.PENDING, reasons=(("HardwareFit:groups", 1),)))
            rnd.requeue.append(order)
            return
        row, pl, score = got
        rnd.new.append(self._reserve(order, row, pl))
        rnd.decisions.append(Decision(order.order_id, Outcome.RESERVED, pl.provider_id, pl, score))

    def _post_filter(self, rnd: _Round, st: CycleState) -> None:
        """No provider passes: the first PostFilter plugin that nominates a provider frees its
        victims (requeued) and the order takes it; else the order waits, with the counts."""
        order = st.order
        nomination = None
        for p in self.post_filters:
            nomination = p.post_filter(st, self)
            if nomination is not None:
                break
        if nomination is None:
            rnd.decisions.append(Decision(order.order_id, Outcome.PENDING, reasons=self._pending_reasons(st)))
            rnd.requeue.append(order)
            return
        victims = nomination.victims
        for h in victims:
            self._drop(h)
        pl = self.placer.place(st, nomination.row)
        assert pl is not None  # it fitted with exactly these victims gone
        for v in victims:
            vo = v.reservation.order
            rnd.decisions.append(Decision(vo.order_id, Outcome.PREEMPTED, v.reservation.placement.provider_id,
                                          reasons=((f"preempted-by:{order.order_id}", 1),)))
            rnd.new = [h for h in rnd.new if h.reservation.order.order_id != vo.order_id]
            rnd.requeue.append(vo)
        rnd.new.append(self._reserve(order, nomination.row, pl))
        rnd.decisions.append(Decision(order.order_id, Outcome.RESERVED, pl.provider_id, pl,
                                      preempted=tuple(v.reservation.order.order_id for v in victims)))

    def _permit(self, rnd: _Round, index_of: dict[str, int]) -> None:
        """Each reservation of the round, in decision order, through every Permit plugin: the
        first denial drops it and requeues the order."""
        if not self.permits:
            return
        kept = []
        for h in rnd.new:
            why = None
            for p in self.permits:
                code = p.permit(self, h)
                if code is not None:
                    why = f"{p.name}:{code}"
                    break
            if why is None:
                kept.append(h)
                continue
            oid = h.reservation.order.order_id
            self._drop(h)
            rnd.requeue.append(h.reservation.order)
            rnd.decisions[index_of[oid]] = Decision(oid, Outcome.DENIED, h.reservation.placement.provider_id,
                                                    reasons=((why, 1),))
        rnd.new = kept

    def _bind(self, rnd: _Round, index_of: dict[str, int]) -> None:
        """One Binder call for the round's permitted reservations."""
        if not rnd.new:
            return
        results = self.binder.bind(self.round_no, [h.reservation for h in rnd.new])
        for h, res in zip(rnd.new, results):
            oid = h.reservation.order.order_id
            if res.status == BindStatus.BOUND:
                self.confirm(oid)
                d = rnd.decisions[index_of[oid]]
                rnd.decisions[index_of[oid]] = Decision(oid, Outcome.BOUND, d.provider_id, d.placement, d.score,
                                                        d.reasons, d.preempted)
            elif res.status == BindStatus.FAILED:
                self._drop(h)
                rnd.requeue.append(h.reservation.order)
                rnd.decisions[index_of[oid]] = Decision(oid, Outcome.DENIED, h.reservation.placement.provider_id,
                                                        reasons=((f"Bind:{res.reason}", 1),))
