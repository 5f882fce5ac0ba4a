"""The plugins of the matching pipeline: filters, scores, permits (by extension point).

Every filter has two faces that must agree:
- ``mask(st)``: a vectorized verdict over ALL providers (bool array, True = passes; ``None``
  when the order asks nothing of this filter, so every provider passes). This is the hot path.
- ``check(st, i)``: the verdict on provider ``i`` as a ``Rejection`` (plugin, status code,
  stable reason code, message with numbers), or ``None``. This is what ``explain`` shows.
and ``ever(st)`` says which providers could EVER pass (``None``: every failure of this filter
is resolvable). An order whose ``ever`` masks leave no provider is refused at once.

Hardware checks (device class and count, VRAM and memory, precision, FLOPS, features,
share, host CPU) are delegated to ``marketplace.resources.fit.fit``: its static verdict is
computed once per distinct hardware shape and broadcast, and its ``free=`` verdict explains
the capacity filter. Scores return raw values over candidate rows (higher is better);
``normalize`` maps them to 0..100 (min-max over the candidates; all equal -> 100).

Reason codes (stable; docs/matching.md lists them): HardwareFit passes fit's codes through
(device-class, count, share, vram, memory, precision, flops, features, cpu); FreeCapacity:
free, system-memory-free; DomainLatency: domain, latency, unreachable, no-buyer-node;
PriceCeiling: price, no-price; ProviderStatus: retired, draining, offline, stake;
ProviderLoad: overloaded, stale-lsa; StakeCoversLeases: stake-cover.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import ClassVar

import numpy as np

from marketplace.matching.config import MatchingConfig
from marketplace.matching.index import STATUS_CODE, ProviderIndex
from marketplace.matching.model import Code, Order, ProviderStatus, Rejection
from marketplace.resources.fit import TRANSIENT_CODES, fit
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement

log = logging.getLogger(__name__)

ACTIVE = STATUS_CODE[ProviderStatus.ACTIVE]
RETIRED = STATUS_CODE[ProviderStatus.RETIRED]


def hardware_key(req: Requirement) -> tuple:
    """The part of a requirement that depends on hardware only (what fit judges statically)."""
    return (req.device_class, req.count, req.share_milli, req.min_memory_mib, req.min_system_memory_mib,
            req.precision, req.min_flops, req.features, req.cpu_milli)


# process-wide interning of the two requirement keys (they only ever grow by distinct asks):
# caches are keyed by small ints, cheap to hash, instead of tuples of enums and sets
_HW_IDS: dict[tuple, int] = {}
_SHAPE_IDS: dict[tuple, int] = {}
#: fresh ids (next() is atomic, so two keys never get one id even across threads)
_NEXT_ID = itertools.count()
#: id(requirement) -> (requirement, hardware id, shape id, shape id without memory); the entry
#: keeps the object alive, so an id is never reused while cached
_REQ_IDS: dict[int, tuple] = {}


def req_ids(req: Requirement) -> tuple[int, int, int]:
    """(interned ``hardware_key``, interned ``shape_key``, interned ``shape_key`` with the
    memory ask left out) of ``req``; the two shape kinds never share an id."""
    hit = _REQ_IDS.get(id(req))
    if hit is not None and hit[0] is req:
        return hit[1], hit[2], hit[3]
    hw = _HW_IDS.setdefault(hardware_key(req), next(_NEXT_ID))
    key = shape_key(req)
    sh = _SHAPE_IDS.setdefault(key, next(_NEXT_ID))
    nomem = _SHAPE_IDS.setdefault(key[:4] + (None,), next(_NEXT_ID))
    if len(_REQ_IDS) >= 65536:
        _REQ_IDS.clear()
    _REQ_IDS[id(req)] = (req, hw, sh, nomem)
    return hw, sh, nomem


def memo_key(ix: ProviderIndex, req: Requirement) -> int:
    """The PlacementMemo of ``req`` in ``ix``: per shape, and per shape without the memory ask
    when the fragmentation model does not read memory (``ProviderIndex.memo_ignores_memory``):
    then a placement's FGD delta, best-fit raw and chosen devices do not depend on it on any
    provider that can hold the order (the memo is only read for such providers)."""
    ids = req_ids(req)
    return ids[2] if ix.memo_ignores_memory else ids[1]


class CycleState:
    """Per-order scratch data shared by the plugins of one scheduling cycle (k8s CycleState)."""

    __slots__ = ("order", "req", "ix", "config", "now", "hw_key", "shape", "caches", "_dist")

    def __init__(self, order: Order, ix: ProviderIndex, config: MatchingConfig, now: float, caches: dict) -> None:
        self.order = order
        self.req = order.requirement
        self.ix = ix
        self.config = config
        self.now = now
        #: interned hardware_key / shape_key of the requirement (req_ids)
        self.hw_key = req_ids(order.requirement)[0]
        self.shape = memo_key(ix, order.requirement)
        self.caches = caches
        self._dist: np.ndarray | None = None

    def distances(self) -> np.ndarray | None:
        """Latency (ms) from the buyer's node to every topology node, or None if unknown."""
        if self._dist is None and self.order.buyer_node is not None and self.ix.routing is not None:
            self._dist = self.ix.routing.distances_from(self.order.buyer_node)
        return self._dist

    def latency_of(self, rows: np.ndarray) -> np.ndarray:
        """Path latency from the buyer to each row's attachment node (inf: unknown/unreachable)."""
        dist = self.distances()
        if dist is None:
            return np.full(len(rows), np.inf)
        ix = self.ix
        if ix.attach_all:  # every provider names its node (the common case): one gather
            return dist[ix.attach[rows]]
        att = ix.attach[rows]
        return np.where(att >= 0, dist[np.maximum(att, 0)], np.inf)


# ============================================================================ filters


class FilterPlugin:
    name: ClassVar[str]
    #: depends on free capacity (never cached across orders)
    dynamic: ClassVar[bool] = False

    def mask(self, st: CycleState) -> np.ndarray | None:
        raise NotImplementedError

    def ever(self, st: CycleState) -> np.ndarray | None:
        return None

    def check(self, st: CycleState, i: int) -> Rejection | tuple[Rejection, ...] | None:
        raise NotImplementedError

    def _reject(self, st: CycleState, i: int, code: Code, reason: str, message: str) -> Rejection:
        return Rejection(st.ix.ids[i], self.name, code, reason, message)


class HardwareFit(FilterPlugin):
    """Static hardware fit (fit() with the node empty), once per hardware shape."""

    name = "HardwareFit"

    def _groups(self, st: CycleState) -> tuple[np.ndarray, list]:
        key = ("hw", st.hw_key, st.ix.version)
        hit = st.caches.get(key)
        if hit is None:
            req = st.req
            verdicts = [fit(req, v) for v in st.ix.group_views]
            ok = np.array([f.ok for f in verdicts], dtype=bool)
            hit = st.caches[key] = (ok, verdicts, ok[st.ix.group])
        return hit[0], hit[1], hit[2]  # type: ignore[return-value]

    def mask(self, st: CycleState) -> np.ndarray:
        return self._groups(st)[2]

    def ever(self, st: CycleState) -> np.ndarray:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        f = self._groups(st)[1][st.ix.group[i]]
        if f.ok:
            return None
        return tuple(self._reject(st, i, Code.UNRESOLVABLE, r.code, r.message) for r in f.reasons)


class FreeCapacity(FilterPlugin):
    """Free devices (whole or fractional share), free host CPU and free memory, now."""

    name = "FreeCapacity"
    dynamic = True

    def mask(self, st: CycleState) -> np.ndarray:
        ix, req = st.ix, st.req
        if req.device_class == DeviceClass.CPU:
            m = ix.cpu_free >= req.count * req.share_milli
        else:
            cs = ix.slots.get(req.device_class)
            if cs is None:
                return np.zeros(ix.n, dtype=bool)
            if req.count == 1:
                m = cs.max_free >= req.share_milli
            elif req.share_milli >= 1000:
                m = cs.n_full >= req.count
            else:
                m = (cs.free >= req.share_milli).sum(axis=1) >= req.count
            if req.cpu_milli:
                m &= ix.cpu_free >= req.cpu_milli
        if req.min_system_memory_mib:
            m &= ix.mem_free >= req.min_system_memory_mib
        return m

    def check(self, st: CycleState, i: int):
        ix = st.ix
        f = fit(st.req, ix.views[i], free=ix.free_for_fit(i), free_memory_mib=int(ix.mem_free[i]))
        out = tuple(self._reject(st, i, Code.UNSCHEDULABLE, r.code, r.message)
                    for r in f.reasons if r.code in TRANSIENT_CODES)
        return out or None


class DomainLatency(FilterPlugin):
    """The order's domain, and its latency bound over the routing layer's shortest paths."""

    name = "DomainLatency"

    def mask(self, st: CycleState) -> np.ndarray | None:
        req = st.req
        if req.domain is None and req.max_latency_ms is None:
            return None
        key = ("lat", st.order.buyer_node, req.domain, req.max_latency_ms, st.ix.version)
        hit = st.caches.get(key)
        if hit is None:
            ix = st.ix
            m = np.ones(ix.n, dtype=bool)
            if req.domain is not None:
                m &= ix.domain == req.domain
            if req.max_latency_ms is not None:
                m &= st.latency_of(np.arange(ix.n)) <= req.max_latency_ms
            hit = st.caches[key] = m
        return hit

    def ever(self, st: CycleState) -> np.ndarray | None:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        req, ix = st.req, st.ix
        out = []
        if req.domain is not None and ix.domain[i] != req.domain:
            where = "no domain" if ix.domain[i] < 0 else f"domain {int(ix.domain[i])}"
            out.append(self._reject(st, i, Code.UNRESOLVABLE, "domain", f"needs domain {req.domain}, provider is in {where}"))
        if req.max_latency_ms is not None:
            if st.order.buyer_node is None or ix.routing is None:
                out.append(self._reject(st, i, Code.UNRESOLVABLE, "no-buyer-node",
                                        f"needs <= {req.max_latency_ms:g} ms but the order names no buyer node"))
            else:
                lat = float(st.latency_of(np.array([i]))[0])
                if ix.attach[i] < 0:
                    out.append(self._reject(st, i, Code.UNRESOLVABLE, "unreachable",
                                            "provider names no attachment node, so no path latency is known"))
                elif lat == np.inf:
                    out.append(self._reject(st, i, Code.UNRESOLVABLE, "unreachable",
                                            f"no path from {st.order.buyer_node} to "
                                            f"{ix.providers[i].attach_node}"))
                elif lat > req.max_latency_ms:
                    out.append(self._reject(st, i, Code.UNRESOLVABLE, "latency",
                                            f"needs <= {req.max_latency_ms:g} ms, path {st.order.buyer_node} -> "
                                            f"{ix.providers[i].attach_node} has {lat:.3f} ms"))
        return tuple(out) or None


class PriceCeiling(FilterPlugin):
    name = "PriceCeiling"

    def mask(self, st: CycleState) -> np.ndarray | None:
        if st.req.max_price is None:
            return None
        key = ("price", st.req.max_price, st.ix.version)
        hit = st.caches.get(key)
        if hit is None:
            with np.errstate(invalid="ignore"):
                hit = st.caches[key] = st.ix.price <= float(st.req.max_price)
        return hit

    def ever(self, st: CycleState) -> np.ndarray | None:
        return self.mask(st)

    def check(self, st: CycleState, i: int):
        cap = st.req.max_price
        if cap is None:
            return None
        price = st.ix.providers[i].price
        if price is None:
            return self._reject(st, i, Code.UNRESOLVABLE, "no-price", f"pays at most {cap} per unit-hour, "
                                "provider publishes no price")
        if price > cap:
            return self._reject(st, i, Code.UNRESOLVABLE, "price", f"pays at most {cap} per unit-hour, asks {price}")
        return None


class ProviderStatusFilter(FilterPlugin):
    """Registration status (active only) and stake (at least ``min_stake``)."""

    name = "ProviderStatus"

    def mask(self, st: CycleState) -> np.ndarray:
        key = ("status", st.ix.version)
        hit = st.caches.get(key)
        if hit is None:
            hit = st.caches[key] = (st.ix.status == ACTIVE) & (st.ix.stake >= st.config.min_stake)
        return hit

    def ever(self, st: CycleState) -> np.ndarray:
        return st.ix.status != RETIRED

    def check(self, st: CycleState, i: int):
        p = st.ix.providers[i]
        out = []
        if p.status == ProviderStatus.RETIRED:
            out.append(self._reject(st, i, Code.UNRESOLVABLE, "retired", "provider has left the market"))
        elif p.status != ProviderStatus.ACTIVE:
            out.append(self._reject(st, i, Code.UNSCHEDULABLE, p.status.value,
                                    f"provider is {p.status.value}, takes no new leases now"))
        if p.stake < st.config.min_stake:
            out.append(self._reject(st, i, Code.UNSCHEDULABLE, "stake",
                                    f"stake {p.stake} is below the minimum {st.config.min_stake}"))
        return tuple(out) or None


class ProviderLoad(FilterPlugin):
    """Load from the provider's latest LSA (at most ``max_load``), and that LSA's age."""

    name = "ProviderLoad"

    def mask(self, st: CycleState) -> np.ndarray:
        cfg = st.config
        key = ("load", st.ix.version, st.now if cfg.max_lsa_age_s is not None else None)
        hit = st.caches.get(key)
        if hit is None:
            m = st.ix.load <= cfg.max_load
            if cfg.max_lsa_age_s is not None:
                with np.errstate(invalid="ignore"):
                    m &= (st.now - st.ix.lsa_at) <= cfg.max_lsa_age_s
            hit = st.caches[key] = m
        return hit

    def check(self, st: CycleState, i: int):
        p, cfg = st.ix.providers[i], st.config
        out = []
        if p.load > cfg.max_load:
            out.append(self._reject(st, i, Code.UNSCHEDULABLE, "overloaded",
                                    f"latest LSA reports load {p.load:.2f}, above {cfg.max_load:.2f}"))
        if cfg.max_lsa_age_s is not None:
            if p.lsa_at is None:
                out.append(self._reject(st, i, Code.UNSCHEDULABLE, "stale-lsa", "no LSA heard from the provider"))
            elif st.now - p.lsa_at > cfg.max_lsa_age_s:
                out.append(self._reject(st, i, Code.UNSCHEDULABLE, "stale-lsa",
                                        f"latest LSA is {st.now - p.lsa_at:.1f} s old, limit {cfg.max_lsa_age_s:g} s"))
        return tuple(out) or None


# ============================================================================ placement


def shape_key(req: Requirement) -> tuple:
    """What a placement's effect on a provider state depends on (simulate's inputs)."""
    return (req.device_class, req.count, req.share_milli, req.cpu_milli, req.min_system_memory_mib or 0)


_INT32_MAX = int(np.iinfo(np.int32).max)
#: up to this many new states per fill are simulated one by one (PlacementMemo._fill_one)
FEW_MISSES = 32


class PlacementMemo:
    """Per requirement shape: FGD delta, best-fit raw and chosen devices of each provider STATE.

    State ids are interned (index.py): equal (hardware, free parts, CPU, memory) -> equal id,
    and ids are never reused, so a value computed for a state stays right for as long as the
    fragmentation model is unchanged (``ProviderIndex.set_fragmentation`` drops all memos).
    Arrays are indexed by state id and filled on demand, so scoring a candidate whose state
    was seen before is an array read, not a simulation. ``after`` keeps the node's
    fragmentation after the simulated placement (unrounded): when the round reserves exactly
    that placement, the index takes it as the new state's value instead of recomputing it
    (the value of a state does not depend on how it was computed, fragmentation.py).

    Most orders find one new state among their candidates (the provider the previous order
    took): that case is simulated in plain Python (``_fill_one``), the same arithmetic as the
    batch path (``simulate``) on one row."""

    __slots__ = ("known", "delta", "fit", "slots", "after", "count")

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.known = np.zeros(0, dtype=bool)
        self.delta = np.zeros(0)
        self.fit = np.zeros(0)
        self.after = np.zeros(0)
        self.slots = np.zeros((0, count), dtype=np.int64)

    def _grow(self, size: int) -> None:
        new = max(size, 2 * len(self.known), 64)
        for name, fill in (("known", False), ("delta", 0.0), ("fit", 0.0), ("after", 0.0), ("slots", -1)):
            old = getattr(self, name)
            arr = np.full((new,) + old.shape[1:], fill, dtype=old.dtype)
            arr[: len(old)] = old
            setattr(self, name, arr)

    def fill(self, ix: ProviderIndex, req: Requirement, rows: np.ndarray) -> np.ndarray:
        """The state ids of ``rows``, after computing the values of states not seen before."""
        sid = ix.state[rows]
        if not len(sid):
            return sid
        if ix.n_states > len(self.known):  # every id in use is below n_states
            self._grow(ix.n_states)
        kn = self.known[sid]
        nm = len(kn) - int(np.count_nonzero(kn))
        if nm == 1:
            k = int(kn.argmin())
            self._fill_one(ix, req, int(rows[k]), int(sid[k]))
        elif nm <= FEW_MISSES:
            # a handful of new states: one plain-Python simulation each beats the batch's fixed cost
            known = self.known
            for k in np.flatnonzero(~kn).tolist():
                s = int(sid[k])
                if not known[s]:  # two rows in one new state: simulated once
                    self._fill_one(ix, req, int(rows[k]), s)
        elif nm:
            miss = ~kn
            uniq, first = np.unique(sid[miss], return_index=True)
            reps = rows[miss][first]
            free, order, cpu, mem, after = simulate(ix, req, reps, with_frag=True)
            if ix.frag_model is None:
                delta = np.zeros(len(reps))
            else:
                # rounded to a micro-milli so that equal increases tie exactly (float sums differ in the last bits)
                delta = np.round(after - ix.frag[reps], 6)
            if free is None:
                fit = 1.0 - cpu / np.maximum(ix.cpu_cap[reps], 1)
            else:
                cap = ix.slots[req.device_class].cap[reps].sum(axis=1)
                fit = 1.0 - free.sum(axis=1) / np.maximum(cap, 1)
            self.delta[uniq] = delta
            self.fit[uniq] = fit
            self.after[uniq] = after
            if order is not None and order.shape[1] == self.count:
                self.slots[uniq] = order
            self.known[uniq] = True
        return sid

    def _fill_one(self, ix: ProviderIndex, req: Requirement, row: int, sid: int) -> None:
        """``fill`` for one new state, in plain Python: ``simulate`` and ``frag_of`` on one row."""
        mem = int(ix.mem_free[row]) - (req.min_system_memory_mib or 0)
        cls = req.device_class
        if cls == DeviceClass.CPU:
            cpu = int(ix.cpu_free[row]) - req.count * req.share_milli
            fit = 1.0 - cpu / max(int(ix.cpu_cap[row]), 1)
            after = ix.frag1(row, None, cpu, mem)
        else:
            free = ix.slots[cls].free[row].tolist()
            cpu = int(ix.cpu_free[row]) - req.cpu_milli
            share = req.share_milli
            count = req.count
            if count == 1 and share < 1000 and ix.frag_class == cls:
                j, after = ix.fgd_slot1(free, cpu, mem, share)
                free[j] -= share
                self.slots[sid, 0] = j
            else:
                # best fit: least free part that fits, then lowest index (simulate's stable argsort)
                fits = sorted((v, j) for j, v in enumerate(free) if v >= share)
                if len(fits) >= count:
                    order = [j for _, j in fits[:count]]
                else:
                    big = _INT32_MAX
                    order = sorted(range(len(free)), key=lambda j: (free[j] if free[j] >= share else big, j))[:count]
                for j in order:
                    free[j] -= share
                after = ix.frag1(row, free if cls == ix.frag_class else None, cpu, mem)
                if len(order) == self.count:
                    self.slots[sid] = order
            fit = 1.0 - sum(free) / max(int(ix.cap_total[cls][row]), 1)
        # np.round(x, 6) is rint(x * 1e6) / 1e6; Python's round(float) is also half-to-even
        self.delta[sid] = 0.0 if ix.frag_model is None else round((after - float(ix.frag[row])) * 1e6) / 1e6
        self.fit[sid] = fit
        self.after[sid] = after
        self.known[sid] = True


class Sim:
    """The candidates' placement effects (FGD delta, best-fit raw), read from the shape's memo."""

    __slots__ = ("sid", "memo")

    def __init__(self, ix: ProviderIndex, req: Requirement, rows: np.ndarray) -> None:
        key = memo_key(ix, req)
        memo = ix.memos.get(key)
        if memo is None:
            memo = ix.memos[key] = PlacementMemo(req.count if req.device_class != DeviceClass.CPU else 1)
        self.memo = memo
        self.sid = memo.fill(ix, req, rows)

    @property
    def delta(self) -> np.ndarray:
        return self.memo.delta[self.sid]

    @property
    def fit(self) -> np.ndarray:
        return self.memo.fit[self.sid]


def simulate(ix: ProviderIndex, req: Requirement, rows: np.ndarray, *, with_frag: bool = False):
    """Free state of ``rows`` after placing ``req`` by the placement rule (best fit in node).

    Returns (free after (K, G) of the request's class or None, slot order (K, count) or None,
    cpu after, memory after), and with ``with_frag`` also each row's fragmentation after."""
    mem = ix.mem_free[rows] - (req.min_system_memory_mib or 0)
    if req.device_class == DeviceClass.CPU:
        cpu = ix.cpu_free[rows] - req.count * req.share_milli
        if with_frag:
            return None, None, cpu, mem, ix.frag_of(rows, cpu=cpu, mem=mem)
        return None, None, cpu, mem
    cs = ix.slots[req.device_class]
    free = cs.free[rows].copy()
    cpu = ix.cpu_free[rows] - req.cpu_milli
    after = None
    if req.count == 1 and req.share_milli < 1000 and ix.frag_class == req.device_class:
        # a fractional device: FGD also picks the device inside the node (index.fgd_slot), whose
        # fragmentation after is the node's
        slot, after = ix.fgd_slot(free, free >= req.share_milli, cpu, mem, req.share_milli, with_frag=True)
        order = slot[:, None]
    else:
        # best fit inside the node: the devices with the least free part that still fits, lowest index first
        keyed = np.where(free >= req.share_milli, free, np.iinfo(np.int32).max)
        order = np.argsort(keyed, axis=1, kind="stable")[:, : req.count]
    np.subtract.at(free, (np.arange(len(rows))[:, None], order), req.share_milli)
    if not with_frag:
        return free, order, cpu, mem
    if after is None:
        after = ix.frag_of(rows, free=free if req.device_class == ix.frag_class else None, cpu=cpu, mem=mem)
    return free, order, cpu, mem, after


# ============================================================================ scores


class ScorePlugin:
    name: ClassVar[str]

    def score(self, st: CycleState, rows: np.ndarray, sim: Sim) -> np.ndarray:
        raise NotImplementedError

    def constant(self, st: CycleState) -> float | None:
        """The raw value when it is the same on EVERY provider (then on any candidate set),
        else None. Only plugins whose raw reads provider facts alone can say so."""
        return None

    @staticmethod
    def _const_of(st: CycleState, key: tuple, full) -> float | None:
        hit = st.caches.get(key)
        if hit is None:
            arr = full()
            same = len(arr) > 0 and bool((arr == arr[0]).all())
            hit = st.caches[key] = (float(arr[0]),) if same else (None,)
        return hit[0]

    @staticmethod
    def normalize(raw: np.ndarray) -> np.ndarray:
        """NormalizeScore: min-max to 0..100 over the candidates; non-finite -> 0; all equal -> 100."""
        lo, hi = float(raw.min()), float(raw.max())
        if lo == hi:  # all equal (e.g. no provider publishes a price): nothing to rank by
            return np.full(len(raw), 100.0 if math.isfinite(lo) else 0.0)
        if math.isfinite(lo) and math.isfinite(hi):  # the common case: one pass each
            if hi - lo <= 1e-12:
                return np.full(len(raw), 100.0)
            out = np.subtract(raw, lo)
            out *= 100.0 / (hi - lo)
            # clip to 0..100 (rounding may step just outside), in place
            np.maximum(out, 0.0, out=out)
            return np.minimum(out, 100.0, out=out)
        finite = np.isfinite(raw)
        if not finite.any():
            return np.zeros(len(raw))
        lo, hi = raw[finite].min(), raw[finite].max()
        if hi - lo <= 1e-12:
            return np.where(finite, 100.0, 0.0)
        return np.where(finite, np.clip((raw - lo) * (100.0 / (hi - lo)), 0.0, 100.0), 0.0)


class Fragmentation(ScorePlugin):
    """-(F_n'(M) - F_n(M)): the fragmentation gradient of the placement (fragmentation.py)."""

    name = "Fragmentation"

    def score(self, st: CycleState, rows: np.ndarray, sim) -> np.ndarray:
        return -sim.delta


class BestFit(ScorePlugin):
    """Share of the node's capacity of the requested class in use after the placement."""

    name = "BestFit"

    def score(self, st: CycleState, rows: np.ndarray, sim) -> np.ndarray:
        return sim.fit


class Price(ScorePlugin):
    name = "Price"

    def score(self, st: CycleState, rows: np.ndarray, sim) -> np.ndarray:
        return self._full(st)[rows]

    def _full(self, st: CycleState) -> np.ndarray:
        key = ("price", "raw", st.ix.version)
        full = st.caches.get(key)
        if full is None:
            p = st.ix.price
            full = st.caches[key] = np.where(np.isnan(p), -np.inf, -p)
        return full

    def constant(self, st: CycleState) -> float | None:
        return self._const_of(st, ("price", "const", st.ix.version), lambda: self._full(st))


class PathLatency(ScorePlugin):
    name = "PathLatency"

    def score(self, st: CycleState, rows: np.ndarray, sim) -> np.ndarray:
        return -st.latency_of(rows)


class LoadBalance(ScorePlugin):
    """Spread: the lower of the LSA load and the class's share in use, the better."""

    name = "LoadBalance"

    def score(self, st: CycleState, rows: np.ndarray, sim) -> np.ndarray:
        ix = st.ix
        cs = ix.slots.get(st.req.device_class)
        if cs is None:
            used = 1.0 - ix.cpu_free[rows] / np.maximum(ix.cpu_cap[rows], 1)
        else:
            cap = cs.cap[rows].sum(axis=1)
            used = 1.0 - cs.free[rows].sum(axis=1) / np.maximum(cap, 1)
        return -np.maximum(ix.load[rows], used)


class Reliability(ScorePlugin):
    name = "Reliability"

    def score(self, st: CycleState, rows: np.ndarray, sim) -> np.ndarray:
        return st.ix.reliability[rows]

    def constant(self, st: CycleState) -> float | None:
        return self._const_of(st, ("status", "reliability-const", st.ix.version), lambda: st.ix.reliability)


FILTERS: dict[str, type[FilterPlugin]] = {
    c.name: c for c in (HardwareFit, FreeCapacity, DomainLatency, PriceCeiling, ProviderStatusFilter, ProviderLoad)
}
SCORES: dict[str, type[ScorePlugin]] = {
    c.name: c for c in (Fragmentation, BestFit, Price, PathLatency, LoadBalance, Reliability)
}
