"""The scheduler: orders in, placements out, one deterministic round at a time.

One round (``schedule_round(now)``) runs the Kubernetes framework's extension points:

    QueueSort   TierQueue (tier + ageing), up to ``batch_size`` orders
    PreFilter   validate; refuse at once an order no provider can EVER satisfy
    Filter      vectorized masks over all providers (plugins.py)
    PostFilter  ReservationPreemption: a higher tier may take an unbound, lower-tier reservation
    Score       over at most ``num_to_score`` feasible providers, from a rotating start index
    Normalize   min-max to 0..100, weighted sum; ties broken by a seeded hash
    Reserve     take the capacity (index.take); Unreserve gives it back, idempotently
    Permit      StakeCoversLeases: a provider's stake covers its leases of this round
    Bind        one Binder.bind call for the whole round (one batched chain write)

Determinism: the result depends only on the inputs (providers, config, workload
distribution, the queued orders, ``now``, the seed and the state left by earlier rounds and
calls): providers are indexed by id, ties are broken by keccak(seed, order id), nothing
reads a clock or iterates a set. ``RoundResult.digest()`` is a keccak over a canonical
encoding of these inputs and of the decisions, for replay.

Invariants: a bound lease is never pre-empted; capacity is held by at most one live
reservation per order; ``unreserve`` is idempotent; every order that leaves the queue
without a lease has a decision with reasons.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from eth_utils import keccak

from marketplace.matching.binder import Binder, BindStatus, InMemoryBinder
from marketplace.matching.config import MatchingConfig
from marketplace.matching.errors import InvalidOrder, LeaseBound, UnknownOrder, unschedulable
from marketplace.matching.fragmentation import FragmentationModel, TaskType, WorkloadDistribution
from marketplace.matching.index import ProviderIndex
from marketplace.matching.model import (Code, Decision, Explanation, Order, Outcome, Placement, Provider,
                                        ProviderVerdict, Rejection, Reservation, ReservationState, ScoreLine)
from marketplace.matching.plugins import FILTERS, SCORES, CycleState, FilterPlugin, Sim, memo_key
from marketplace.matching.queue import TierQueue
from marketplace.resources.fit import fit
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

ENGINE_VERSION = "cona-matching/1"


def _canon(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class RoundResult:
    round_no: int
    now: float
    decisions: tuple[Decision, ...]
    #: keccak of the round's inputs (config, workload, providers, prior state, orders, now, seed)
    inputs_digest: bytes
    #: counts of providers examined while searching (for cost accounting)
    examined: int = 0

    def digest(self) -> bytes:
        """keccak-256 over the inputs digest and the canonical decisions: what goes on chain."""
        return keccak(self.inputs_digest + _canon([d.canonical() for d in self.decisions]))

    def by_order(self) -> dict[str, Decision]:
        return {d.order_id: d for d in self.decisions}

    def count(self, outcome: Outcome) -> int:
        return sum(1 for d in self.decisions if d.outcome == outcome)


@dataclass(slots=True)
class _Held:
    reservation: Reservation
    state: ReservationState
    row: int
    value: float = 0.0


class Scheduler:
    """The matching engine's pure core. See the module docstring for one round's steps."""

    def __init__(self, providers: Iterable[Provider], *, config: MatchingConfig | None = None, routing=None,
                 binder: Binder | None = None, workload: WorkloadDistribution | None = None) -> None:
        self.config = config or MatchingConfig()
        self.index = ProviderIndex(providers, routing=routing)
        self.routing = routing
        self.binder: Binder = binder if binder is not None else InMemoryBinder()
        self.filters: list[FilterPlugin] = [FILTERS[n]() for n in self.config.filter]
        self.scores = [(SCORES[n](), w) for n, w in self.config.score if w > 0]
        self.tie_break = [SCORES[n]() for n in self.config.tie_break]
        self._wsum = sum(w for _, w in self.scores) or 1.0
        if workload is None:
            # without the edge's workload history, one whole device is the only type assumed
            workload = WorkloadDistribution(DeviceClass.GPU, (TaskType(1, 1000, 0, 0, 1.0),))
        self.workload = workload
        if any(p.name == "Fragmentation" for p in [q for q, _ in self.scores] + self.tie_break):
            self.index.set_fragmentation(FragmentationModel(workload))
        self.queue = TierQueue(self.config.ageing_s)
        self.orders: dict[str, Order] = {}
        self.held: dict[str, _Held] = {}
        #: unbound reservations per provider row (the only ones pre-emption may take)
        self.unbound_on: dict[int, dict[str, _Held]] = {}
        self.round_no = 0
        self.next_start = 0
        self._caches: dict = {}
        #: fit() with free capacity, per (hardware ask, provider state id): _place's device groups.
        #: Valid for the index's life: state ids are never reused and hardware never changes
        self._fit_memo: dict = {}
        self._tie_seed = int(self.config.seed).to_bytes(32, "big", signed=False)
        self._providers_digest: bytes | None = None
        self._state = keccak(b"cona-matching-state")
        self._events: list[list] = []
        self._req_hex: dict = {}
        self.providers_digest()
        self._static_digest = keccak(_canon([ENGINE_VERSION, self.config.canonical(), self.workload.canonical()]))

    # ================================================================== inputs

    def providers_digest(self) -> bytes:
        """keccak over every provider's canonical record, in id order (the LSDB snapshot).

        A record names its hardware by the digest of its descriptor without the hostname
        (computed once per hardware shape) plus the hostname, so the snapshot costs one small
        record per provider, not one descriptor digest each."""
        if self._providers_digest is None:
            shape: dict[tuple, str] = {}
            leaves = []
            for p in self.index.providers:
                d = p.descriptor
                key = (d.devices, d.memory_mib, d.disk_gib, d.numa_nodes, d.arch)
                h = shape.get(key)
                if h is None:
                    c = d.canonical()
                    c.pop("hostname")
                    h = shape[key] = keccak(_canon(c)).hex()
                leaves.append([p.provider_id, d.hostname, h, p.attach_node, p.price, p.domain, p.status.value,
                               p.stake, repr(float(p.load)), None if p.lsa_at is None else repr(float(p.lsa_at)),
                               repr(float(p.reliability))])
            self._providers_digest = keccak(_canon(leaves))
        return self._providers_digest

    def update_provider(self, provider: Provider) -> None:
        """A new LSA / registry fact (status, stake, load, price, reliability) for a known provider."""
        self.index.update_market(provider)
        self._providers_digest = None
        self._caches.clear()

    def routing_changed(self) -> None:
        """Call after ``RoutingTable.apply``: latency verdicts cached for this round are dropped."""
        self._caches = {k: v for k, v in self._caches.items() if k[0] not in ("lat", "ever", "static")}

    def _event(self, *parts: Any) -> None:
        # folded into the state digest at the next round (one keccak per round, not per event)
        self._events.append(list(parts))

    def state_digest(self) -> bytes:
        """keccak chain over every state change (submit, reserve, unreserve, bind, round)."""
        if self._events:
            self._state = keccak(self._state + _canon(self._events))
            self._events = []
        return self._state

    def _order_canon(self, order: Order) -> list:
        req = order.requirement
        h = self._req_hex.get(req)
        if h is None:
            h = self._req_hex[req] = req.digest().hex()
        return [order.order_id, h, order.tier, order.buyer_node, repr(float(order.submitted_at))]

    # ================================================================== submit / explain

    def submit(self, order: Order) -> None:
        """Queue an order; raise ``Unschedulable`` (with per-provider reasons) if no provider
        can ever satisfy it, and ``InvalidOrder`` if it is malformed or a duplicate."""
        if order.order_id in self.orders:
            raise InvalidOrder(f"order {order.order_id} was already submitted", field="order_id")
        if order.buyer_node is not None and self.routing is not None:
            self.routing.index(order.buyer_node)  # UnknownNode names it
        st = self._state_for(order, order.submitted_at)
        if not self._ever(st).any():
            raise self._refusal(st)
        self.orders[order.order_id] = order
        self.queue.push(order)
        self._event("submit", self._order_canon(order))

    def _state_for(self, order: Order, now: float) -> CycleState:
        return CycleState(order, self.index, self.config, now, self._caches)

    def _ever(self, st: CycleState) -> np.ndarray:
        # a function of the order's static asks and the provider facts (version), cached like
        # the latency verdicts it includes (dropped by routing_changed and each round)
        key = ("ever",) + self._asks(st)
        m = self._caches.get(key)
        if m is None:
            m = np.ones(self.index.n, dtype=bool)
            for f in self.filters:
                e = f.ever(st)
                if e is not None:
                    m = m & e
            self._caches[key] = m
        return m

    def _rejections(self, st: CycleState, i: int, *, only_unresolvable: bool = False) -> tuple[Rejection, ...]:
        out: list[Rejection] = []
        for f in self.filters:
            if only_unresolvable and f.ever(st) is None:
                continue
            r = f.check(st, i)
            if r is None:
                continue
            out.extend(r if isinstance(r, tuple) else (r,))
        if only_unresolvable:
            out = [r for r in out if r.code == Code.UNRESOLVABLE]
        return tuple(out)

    def _refusal(self, st: CycleState):
        rejections: list[Rejection] = []
        for i in range(self.index.n):
            rejections.extend(self._rejections(st, i, only_unresolvable=True))
        summary = tuple(sorted(Counter(f"{r.plugin}:{r.reason}" for r in rejections).items()))
        log.info("order %s refused: no provider can ever satisfy it (%s)", st.order.order_id, summary)
        return unschedulable(st.order.order_id, tuple(rejections), summary)

    def explain(self, order: Order | str, *, now: float | None = None) -> Explanation:
        """Per provider: why it is filtered out (every failing filter), or how it scores (per
        plugin: raw, normalized 0..100, weight; then each tie-break plugin's raw with weight 0)
        over the whole feasible set."""
        if isinstance(order, str):
            if order not in self.orders:
                raise UnknownOrder(order)
            order = self.orders[order]
        st = self._state_for(order, order.submitted_at if now is None else now)
        n = self.index.n
        rejections = [self._rejections(st, i) for i in range(n)]
        feasible = np.array([not r for r in rejections], dtype=bool)
        rows = np.flatnonzero(feasible)
        lines: dict[int, list[ScoreLine]] = {}
        totals = np.zeros(len(rows))
        best = None
        if len(rows):
            totals, per, ties = self._score(st, rows)
            tie_names = [p.name for p in self.tie_break]
            for k, i in enumerate(rows.tolist()):
                lines[i] = [ScoreLine(name, float(raw[k]), float(norm[k]), w) for name, raw, norm, w in per] + \
                           [ScoreLine(name, float(raw[k]), 0.0, 0.0) for name, raw in zip(tie_names, ties)]
            best = self.index.ids[int(rows[self._pick(order, totals, ties)])]
        pos = {int(i): k for k, i in enumerate(rows.tolist())}
        verdicts = []
        for i in range(n):
            if feasible[i]:
                verdicts.append(ProviderVerdict(self.index.ids[i], True, (), tuple(lines[i]),
                                                float(totals[pos[i]])))
            else:
                verdicts.append(ProviderVerdict(self.index.ids[i], False, rejections[i]))
        return Explanation(order.order_id, tuple(verdicts), best)

    # ================================================================== pipeline pieces

    def _feasible(self, st: CycleState, skip: str | None = None) -> np.ndarray:
        if skip is None:
            # the filters that do not read free capacity are ANDed once per (order asks, round);
            # ProviderLoad also reads the clock when LSAs age out
            key = ("static", st.now if self.config.max_lsa_age_s is not None else None) + self._asks(st)
            m = self._caches.get(key)
            if m is None:
                m = self._caches[key] = self._combine(st, lambda f: not f.dynamic)
            for f in self.filters:
                if f.dynamic:
                    fm = f.mask(st)
                    if fm is not None:
                        m = m & fm
            return m if m is not self._caches[key] else m.copy()
        return self._combine(st, lambda f: f.name != skip)

    def _asks(self, st: CycleState) -> tuple:
        """What the static filters read of an order (the buyer's node only under a latency bound)."""
        req = st.req
        lat = req.max_latency_ms
        return (st.hw_key, None if lat is None else st.order.buyer_node, req.domain, lat, req.max_price,
                self.index.version)

    def _combine(self, st: CycleState, use) -> np.ndarray:
        m: np.ndarray | None = None
        for f in self.filters:
            if not use(f):
                continue
            fm = f.mask(st)
            if fm is None:
                continue
            m = fm.copy() if m is None else (m & fm)
        return np.ones(self.index.n, dtype=bool) if m is None else m

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
        want = self.num_to_score()
        start = self.next_start
        rows = np.flatnonzero(mask)
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

    def _score(self, st: CycleState, rows: np.ndarray, *, detail: bool = True):
        """(weighted totals 0..100, per-plugin (name, raw, normalized, weight) when ``detail``,
        tie-break raws)."""
        sim = Sim(self.index, st.req, rows)
        wsum = self._wsum
        per = []
        if self.scores:
            # sum_p w_p * norm_p, left to right ("total += w * norm" from zero gives the same
            # bits); a plugin whose raw value is the same on every provider (no prices published,
            # equal reliability) normalizes to a constant (ScorePlugin.normalize), added as a scalar
            total = None
            n = len(rows)
            for plugin, w in self.scores:
                c = plugin.constant(st)
                if c is None:
                    raw = plugin.score(st, rows, sim)
                    norm = plugin.normalize(raw)
                    term = w * norm
                else:
                    level = 100.0 if math.isfinite(c) else 0.0
                    term = w * level
                    if detail:
                        raw, norm = np.full(n, c), np.full(n, level)
                if total is None:
                    total = term if c is None else np.full(n, term)
                else:
                    total = total + term
                if detail:
                    per.append((plugin.name, raw, norm, w))
        else:
            total = np.zeros(len(rows))
        ties = [plugin.score(st, rows, sim).round(9) for plugin in self.tie_break]
        return (total / wsum).round(9), per, ties

    def _pick(self, order: Order, totals: np.ndarray, ties: list[np.ndarray] = ()) -> int:
        """The highest total; among equal totals the highest raw of each tie-break plugin in
        turn; then keccak(seed, order id) among what is still tied."""
        cand = np.flatnonzero(totals == totals.max())
        for raw in ties:
            if len(cand) == 1:
                break
            sub = raw[cand]
            cand = cand[sub == sub.max()]
        if len(cand) == 1:
            return int(cand[0])
        h = int.from_bytes(keccak(self._tie_seed + order.order_id.encode())[:8], "big")
        return int(cand[h % len(cand)])

    def _place(self, st: CycleState, i: int) -> Placement | None:
        """The exact slots on row ``i``: fit() with its free capacity picks the eligible device
        groups, and within them the devices with the least free part that fits (best fit)."""
        ix, req = self.index, st.req
        view = ix.views[i]
        # fit's verdict is a function of the hardware ask and the row's state (hardware shape,
        # free parts, CPU, memory): equal states share it
        sid = int(ix.state[i])
        fkey = (st.hw_key, sid)
        f = self._fit_memo.get(fkey)
        if f is None:
            if len(self._fit_memo) > 100_000:
                self._fit_memo.clear()
            f = self._fit_memo[fkey] = fit(req, view, free=ix.free_for_fit(i), free_memory_mib=int(ix.mem_free[i]))
        if not f.ok:
            return None
        mem = req.min_system_memory_mib or 0
        pid = ix.ids[i]
        if req.device_class == DeviceClass.CPU:
            return Placement(pid, DeviceClass.CPU, (), req.count * req.share_milli, mem)
        groups = [g for g in view.groups[req.device_class] if g.device in f.devices]
        cand = []
        free = ix.slots[req.device_class].free[i]
        parts = free.tolist()
        share = req.share_milli
        for g in groups:
            for j in range(g.index, g.index + g.slots):
                if parts[j] >= share:
                    cand.append((parts[j], j))
        if req.count == 1 and req.share_milli < 1000 and ix.frag_class == req.device_class and cand:
            # a fractional device: the same FGD choice as the score's simulation (index.fgd_slot),
            # read from the shape's memo when this provider state was scored
            memo = ix.memos.get(st.shape)
            ok = [j for _, j in cand]
            j = -1
            if memo is not None and sid < len(memo.known) and memo.known[sid]:
                j = int(memo.slots[sid, 0])
            if j not in ok:
                eligible = np.zeros((1, len(free)), dtype=bool)
                eligible[0, ok] = True
                j = int(ix.fgd_slot(free[None, :], eligible, ix.cpu_free[i:i + 1] - req.cpu_milli,
                                    ix.mem_free[i:i + 1] - mem, req.share_milli)[0])
            return Placement(pid, req.device_class, ((j, req.share_milli),), req.cpu_milli, mem)
        cand.sort()
        chosen = sorted(j for _, j in cand[: req.count])
        return Placement(pid, req.device_class, tuple((j, req.share_milli) for j in chosen), req.cpu_milli, mem)

    def _frag_after(self, row: int, req, pl: Placement) -> float | None:
        """The row's fragmentation after ``pl`` as the score simulated it (PlacementMemo.after),
        when ``pl`` is exactly the simulated placement on the row's current state; else None."""
        ix = self.index
        if ix.frag_model is None:
            return None
        memo = ix.memos.get(memo_key(ix, req))
        if memo is None:
            return None
        sid = int(ix.state[row])
        if sid >= len(memo.known) or not memo.known[sid]:
            return None
        if pl.device_class == ix.frag_class and \
                sorted(j for j, _ in pl.slots) != sorted(memo.slots[sid].tolist()):
            return None
        return float(memo.after[sid])

    def _reserve(self, order: Order, row: int, pl: Placement) -> _Held:
        self.index.take(row, pl, self._frag_after(row, order.requirement, pl))
        req = order.requirement
        price = self.index.providers[row].price or 0
        value = price * req.count * req.share_milli / 1000 * req.duration_s / 3600
        h = _Held(Reservation(order, pl, self.round_no), ReservationState.RESERVED, row, value)
        self.held[order.order_id] = h
        self.unbound_on.setdefault(row, {})[order.order_id] = h
        self._event("reserve", order.order_id, pl.canonical())
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

    def _drop(self, h: _Held) -> None:
        oid = h.reservation.order.order_id
        self.index.give(h.row, h.reservation.placement)
        h.state = ReservationState.RELEASED
        del self.held[oid]
        self.unbound_on.get(h.row, {}).pop(oid, None)
        self._event("unreserve", oid)

    def confirm(self, order_id: str) -> None:
        """The binder's deferred confirmation: the reservation is now a lease (never pre-empted)."""
        h = self.held.get(order_id)
        if h is None:
            raise UnknownOrder(order_id)
        if h.state == ReservationState.RESERVED:
            h.state = ReservationState.BOUND
            self.unbound_on.get(h.row, {}).pop(order_id, None)
            self._event("bound", order_id)

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

    # ================================================================== post-filter

    def _preempt(self, st: CycleState) -> tuple[int, Placement, list[_Held]] | None:
        """ReservationPreemption: the provider where freeing the fewest unbound reservations of
        strictly lower tiers (lowest tiers, newest first) makes the order fit. Bound leases
        are never touched."""
        if "ReservationPreemption" not in self.config.post_filter or not self.unbound_on:
            return None
        tier = st.order.tier
        rows = sorted(r for r, hs in self.unbound_on.items()
                      if any(h.reservation.order.tier < tier for h in hs.values()))
        if not rows:
            return None
        other = self._feasible(st, skip="FreeCapacity")
        best = None
        for row in rows:
            if not other[row]:
                continue
            victims = sorted((h for h in self.unbound_on[row].values() if h.reservation.order.tier < tier),
                             key=lambda h: (h.reservation.order.tier, -h.reservation.round_no,
                                            h.reservation.order.order_id))
            taken: list[_Held] = []
            for h in victims:
                self.index.give(row, h.reservation.placement)
                taken.append(h)
                pl = self._place(st, row)
                if pl is not None:
                    break
            else:
                pl = None
            for h in reversed(taken):
                self.index.take(row, h.reservation.placement)
            if pl is not None:
                key = (max(h.reservation.order.tier for h in taken), len(taken), row)
                if best is None or key < best[0]:
                    best = (key, row, taken)
        if best is None:
            return None
        _, row, taken = best
        for h in taken:
            self._drop(h)
        pl = self._place(st, row)
        assert pl is not None  # it fitted with exactly these victims gone
        return row, pl, taken

    # ================================================================== the round

    def schedule_round(self, now: float) -> RoundResult:
        """Match up to ``batch_size`` queued orders; see the module docstring."""
        self.round_no += 1
        self._caches = {k: v for k, v in self._caches.items() if k[0] in ("hw", "price", "status")}
        batch = self.queue.pop_many(self.config.batch_size)
        inputs = keccak(_canon([
            self._static_digest.hex(), self.providers_digest().hex(), self.state_digest().hex(), self.round_no,
            repr(float(now)), [self._order_canon(o) for o in batch],
        ]))
        decisions: list[Decision] = []
        new: list[_Held] = []
        requeue: list[Order] = []
        examined_total = 0
        for order in batch:
            st = self._state_for(order, now)
            mask = self._feasible(st)
            if not mask.any():
                if not self._ever(st).any():
                    exc = self._refusal(st)
                    decisions.append(Decision(order.order_id, Outcome.REFUSED, reasons=exc.summary))
                    self.orders.pop(order.order_id, None)
                    continue
                got = self._preempt(st)
                if got is None:
                    decisions.append(Decision(order.order_id, Outcome.PENDING, reasons=self._pending_reasons(st)))
                    requeue.append(order)
                    continue
                row, pl, victims = got
                for v in victims:
                    vo = v.reservation.order
                    decisions.append(Decision(vo.order_id, Outcome.PREEMPTED, v.reservation.placement.provider_id,
                                              reasons=((f"preempted-by:{order.order_id}", 1),)))
                    new = [h for h in new if h.reservation.order.order_id != vo.order_id]
                    requeue.append(vo)
                h = self._reserve(order, row, pl)
                new.append(h)
                decisions.append(Decision(order.order_id, Outcome.RESERVED, pl.provider_id, pl,
                                          preempted=tuple(v.reservation.order.order_id for v in victims)))
                continue
            if self.config.first_fit:
                row = int(np.argmax(mask))
                pl = self._place(st, row)
                if pl is not None:
                    new.append(self._reserve(order, row, pl))
                    decisions.append(Decision(order.order_id, Outcome.RESERVED, pl.provider_id, pl, 0.0))
                    continue
            rows, examined = self._candidates(mask)
            examined_total += examined
            self.next_start = (self.next_start + examined) % max(self.index.n, 1)
            totals, _, ties = self._score(st, rows, detail=False)
            placed = None
            while len(rows):
                k = self._pick(order, totals, ties)
                pl = self._place(st, int(rows[k]))
                if pl is not None:
                    placed = (int(rows[k]), pl, float(totals[k]))
                    break
                # fit() disagrees with the mask (mixed device groups): skip that provider
                rows = np.delete(rows, k)
                totals = np.delete(totals, k)
                ties = [np.delete(t, k) for t in ties]
            if placed is None:
                decisions.append(Decision(order.order_id, Outcome.PENDING, reasons=(("HardwareFit:groups", 1),)))
                requeue.append(order)
                continue
            row, pl, score = placed
            new.append(self._reserve(order, row, pl))
            decisions.append(Decision(order.order_id, Outcome.RESERVED, pl.provider_id, pl, score))
        # Permit: StakeCoversLeases
        index_of = {d.order_id: k for k, d in enumerate(decisions) if d.outcome == Outcome.RESERVED}
        if "StakeCoversLeases" in self.config.permit and self.config.collateral_milli:
            kept = []
            for h in new:
                row = h.row
                need = sum(x.value for x in self._live_on(row)) * self.config.collateral_milli / 1000
                stake = self.index.providers[row].stake
                if stake < need:
                    oid = h.reservation.order.order_id
                    self._drop(h)
                    requeue.append(h.reservation.order)
                    decisions[index_of[oid]] = Decision(oid, Outcome.DENIED, h.reservation.placement.provider_id,
                                                        reasons=((f"StakeCoversLeases:stake-cover", 1),))
                    log.info("order %s denied on %s: stake %d < collateral %.0f", oid, self.index.ids[row], stake,
                             need)
                else:
                    kept.append(h)
            new = kept
        # Bind: one call for the round
        if new:
            results = self.binder.bind(self.round_no, [h.reservation for h in new])
            for h, res in zip(new, results):
                oid = h.reservation.order.order_id
                if res.status == BindStatus.BOUND:
                    self.confirm(oid)
                    d = decisions[index_of[oid]]
                    decisions[index_of[oid]] = Decision(oid, Outcome.BOUND, d.provider_id, d.placement, d.score,
                                                        d.reasons, d.preempted)
                elif res.status == BindStatus.FAILED:
                    self._drop(h)
                    requeue.append(h.reservation.order)
                    decisions[index_of[oid]] = Decision(oid, Outcome.DENIED, h.reservation.placement.provider_id,
                                                        reasons=((f"Bind:{res.reason}", 1),))
        for o in requeue:
            if o.order_id not in self.queue:
                self.queue.push(o)
        result = RoundResult(self.round_no, float(now), tuple(decisions), inputs, examined_total)
        self._event("round", self.round_no, result.digest().hex())
        log.debug("round %d: %d orders, %s", self.round_no, len(batch),
                  dict(Counter(d.outcome.value for d in decisions)))
        return result

    def _live_on(self, row: int) -> list[_Held]:
        return [h for h in self.held.values() if h.row == row]
