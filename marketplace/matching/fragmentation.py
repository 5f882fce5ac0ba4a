"""GPU fragmentation of a node, and how much a placement adds to it (Weng et al., ATC'23).

"Beware of Fragmentation" (Weng et al., USENIX ATC'23, the paper behind the Alibaba trace)
measures a node's fragmentation *with respect to the workload*: for a task type m, the free
accelerator capacity of node n that m cannot use is fragmented:

    F_n(m) = sum_g R_g                      if m cannot run on n at all (too few devices with a
                                            free part >= d_m, or too little free CPU): every
                                            free bit is stranded for m
    F_n(m) = sum_g R_g * [R_g < d_m]        otherwise: devices whose free part is smaller than
                                            m's per-device demand d_m (its share, 1000 for whole devices)
    F_n(m) = sum_g R_g                      for a task type with no accelerator (a CPU-only
                                            task can use no device part at all)

and the node's expected fragmentation over the workload's distribution of task types M
(popularity p_m) is ``F_n(M) = sum_m p_m F_n(m)``. Fragmentation Gradient Descent places a
task where it increases F the least: ``delta = F_n'(M) - F_n(M)``; ``Fragmentation`` in
``plugins/scores.py`` scores ``-delta``. This follows the authors' simulator
(hkust-adsl/kubernetes-scheduler-simulator, ``NodeGpuShareFragAmountScore``: every class but
"Q3 satisfied" counts, including a CPU-only task's "XL"). Task types are the trace's own
(count, share, CPU) shapes, weighted by their share of the device demand (the paper weights
them by pod count; ``from_requirements(weight="pods")`` keeps that); like the paper, the measure
has CPU and GPU dimensions only (``memory_mib`` of a type is checked when a caller gives one;
``from_requirements`` leaves it 0).

Invariants: everything here is a pure, vectorized function of integer arrays (milli-devices,
milli-CPU, MiB); the distribution is built deterministically (types sorted by popularity,
then by their fields), so equal workloads give equal scores.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement, model_matches


@dataclass(frozen=True, slots=True)
class TaskType:
    """One kind of task in the workload: ``count`` devices of ``share_milli`` each (0: none),
    of one of ``models`` (empty: any model; the trace's ``gpu_spec``)."""

    count: int
    share_milli: int
    cpu_milli: int
    memory_mib: int
    weight: float
    models: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WorkloadDistribution:
    """The target workload: task types and their popularity (weights sum to 1)."""

    device_class: DeviceClass
    types: tuple[TaskType, ...]

    @classmethod
    def from_requirements(cls, reqs: Iterable[Requirement], *, device_class: DeviceClass = DeviceClass.GPU,
                          top: int | None = None, weight: str = "demand",
                          coverage: float | None = None, memory: bool = False) -> WorkloadDistribution:
        """The workload's task types: distinct (device count, share, CPU, models) shapes of ``reqs``.

        ``weight="demand"`` (the default) weighs each type by its share of the workload's device
        demand (frequency x count x share): fragmentation then measures the expected *capacity*
        that arriving demand cannot use, so a rare 8-GPU pod weighs eight times a one-GPU pod,
        and CPU-only types, which use no device, weigh nothing. ``weight="pods"`` weighs types by
        pod count, as the paper's "typical pods" do. ``top`` keeps only the heaviest types,
        ``coverage`` the heaviest until they hold that share of the weight (the simulator's
        ``podPopularityThreshold``, 0.95 in the paper's runs); weights are renormalized.
        CPU-only requirements are type (0, 0, logical CPUs * 1000)."""
        if weight not in ("demand", "pods"):
            raise ValueError(f"weight must be 'demand' or 'pods', not {weight!r}")
        freq: Counter[tuple] = Counter()
        mems: dict[tuple, list[int]] = {}
        for r in reqs:
            if r.device_class == device_class:
                key = (r.count, r.share_milli, r.cpu_milli, tuple(sorted(r.models)))
                freq[key] += r.count * r.share_milli if weight == "demand" else 1
            elif r.device_class == DeviceClass.CPU:
                key = (0, 0, r.count * r.share_milli, ())
                freq[key] += 0 if weight == "demand" else 1
            else:
                continue
            mems.setdefault(key, []).append(r.min_system_memory_mib or 0)
        kept = sorted(((k, n) for k, n in freq.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))
        if top is not None:
            kept = kept[:top]
        if coverage is not None:
            whole, acc, cut = sum(n for _, n in kept), 0, 0
            while cut < len(kept) and acc < coverage * whole:
                acc += kept[cut][1]
                cut += 1
            kept = kept[:cut]
        total = sum(n for _, n in kept)
        types = tuple(TaskType(k[0], k[1], k[2], int(np.median(mems[k])) if memory else 0, n / total, frozenset(k[3]))
                      for k, n in kept)
        return cls(device_class, types)

    @classmethod
    def of_history(cls, reqs: Iterable[Requirement], *, device_class: DeviceClass = DeviceClass.GPU
                   ) -> WorkloadDistribution:
        """The task types the project's policy weighs, from the requirements of past orders."""
        return cls.from_requirements(reqs, device_class=device_class, weight="pods", memory=True)

    def arrays(self) -> tuple[np.ndarray, ...]:
        t = self.types
        return (np.array([x.count for x in t], dtype=np.int64), np.array([x.share_milli for x in t], dtype=np.int64),
                np.array([x.cpu_milli for x in t], dtype=np.int64), np.array([x.memory_mib for x in t], dtype=np.int64),
                np.array([x.weight for x in t], dtype=np.float64))

    def canonical(self) -> list:
        # a type's models only when it names some: the canonical form of a workload without
        # model constraints (and so every recorded round digest) is what it was before them
        return [int(self.device_class)] + [[x.count, x.share_milli, x.cpu_milli, x.memory_mib, repr(x.weight)]
                                           + ([sorted(x.models)] if x.models else []) for x in self.types]


class FragmentationModel:
    """``F_n(M)`` for many nodes at once, from their free device parts, CPU and memory.

    The types are grouped by their per-device demand (the T distinct thresholds t_c, sorted).
    Within a group c every type sees the same stranded milli s_c (free parts below t_c) and
    the same usable device count u_c (parts at or above t_c); whether type m runs then depends
    only on (u_c >= count_m, cpu >= cpu_m, memory >= memory_m). So

        F_n(M) = total * W_none + sum_c ( s_c * W_run[c](u_c, cpu, mem) + total * W_not[c](u_c, cpu, mem) )

    where W_run[c] sums the weights of group c's types that run, W_not the others, and W_none
    the CPU-only types' weights (they strand everything) and those of the types that may not
    use the node's device model at all (the paper's "no access": their ``models`` exclude it).
    The W tables are precomputed once per distribution and per *access class* (the set of
    types a device model admits; ``access_class``; class 0 admits every type) over (cpu
    level, memory level, c, u), so a node costs O(G log G + T), not O(M*G).

    Invariants: the value of a node depends on its own (free parts, CPU, memory, access
    class) only, bit for bit: the batch path (``node_frag``) and the one-node path
    (``node_frag1``) evaluate the same elementwise expression in the same order (no BLAS, no
    reduction whose order depends on the batch or the CPU), so a value computed in any batch
    may stand for any other computation of the same state, and replay on another machine
    gives the same bits.
    """

    def __init__(self, dist: WorkloadDistribution) -> None:
        self.dist = dist
        cnt, share, cpu, mem, w = dist.arrays()
        dev = cnt > 0
        self._t = np.unique(share[dev])  # thresholds t_c, sorted
        self._tl: list[int] = self._t.tolist()
        self._col = np.searchsorted(self._t, share)
        self._cpu_lv = np.unique(cpu)
        self._mem_lv = np.unique(mem)
        self._cpu_l: list[int] = self._cpu_lv.tolist()
        self._mem_l: list[int] = self._mem_lv.tolist()
        # u >= the largest count is the same as u = that count
        self._umax = int(cnt.max()) if len(cnt) else 0
        t, nc, nm, nu = len(self._t), len(self._cpu_lv) + 1, len(self._mem_lv) + 1, self._umax + 1
        # level index of a node = how many levels are <= its free amount (0: below every type)
        ci = np.arange(nc)[None, :] > np.searchsorted(self._cpu_lv, cpu)[:, None]        # (M, nc)
        mi = np.arange(nm)[None, :] > np.searchsorted(self._mem_lv, mem)[:, None]        # (M, nm)
        ui = np.arange(nu)[None, :] >= cnt[:, None]                                      # (M, nu)
        ci = ci & dev[:, None]
        self._cm = (self._col[:, None] == np.arange(t)[None, :]) & dev[:, None]          # (M, T)
        self._runs = ci[:, :, None, None, None] & mi[:, None, :, None, None] & self._cm[:, None, None, :, None] \
            & ui[:, None, None, None, :]                                                 # (M, nc, nm, T, nu)
        self._w, self._dev = w, dev
        self._cols = np.arange(t)[None, :]
        #: per access class: (W_run, W_not, W_none, node_frag1's tables by [cpu][mem] -> (by u, by u))
        self._tables: list[tuple] = []
        self._classes: dict[tuple[bool, ...], int] = {}
        self._of_models: dict[tuple[str, ...], int] = {}
        self.access_class(())
        #: node_frag1's values by (access class, cpu level, memory level, sorted parts)
        self._memo1: dict[tuple, float] = {}
        # width of a row's band in node_frag's batched searchsorted: above any part or threshold
        self._band = 1 << 40

    def access_class(self, models: tuple[str, ...]) -> int:
        """The access class of a node whose devices (of the distribution's class) are of
        ``models`` (empty: the class that admits every type): the types whose ``models``
        admit one of them may use it; the others see all its free capacity as fragment."""
        hit = self._of_models.get(models)
        if hit is not None:
            return hit
        acc = tuple(not t.models or not models or any(model_matches(t.models, m) for m in models)
                    for t in self.dist.types)
        k = self._classes.get(acc)
        if k is None:
            k = self._classes[acc] = len(self._tables)
            self._tables.append(self._build(np.array(acc, dtype=bool)))
        self._of_models[models] = k
        return k

    def _build(self, acc: np.ndarray) -> tuple:
        w, dev = self._w, self._dev
        use = dev & acc
        wm = np.where(use, w, 0.0)[:, None, None, None, None]
        # sums over types in type order, row by row: the same bits on every machine
        wrun = np.add.reduce(np.where(self._runs, wm, 0.0), axis=0)
        group = np.add.reduce(np.where(self._cm & use[:, None], w[:, None], 0.0), axis=0)    # (T,)
        wnot = group[None, None, :, None] - wrun
        wnone = float(np.add.reduce(np.where(use, 0.0, w))) if len(w) else 0.0
        nc, nm = wrun.shape[0], wrun.shape[1]
        by_u = [[(np.ascontiguousarray(wrun[a, b].T).tolist(), np.ascontiguousarray(wnot[a, b].T).tolist())
                 for b in range(nm)] for a in range(nc)]
        return wrun, wnot, wnone, by_u

    def node_frag(self, free: np.ndarray, cpu_free: np.ndarray, mem_free: np.ndarray,
                  acc: np.ndarray | int = 0) -> np.ndarray:
        """Expected fragmentation (milli-devices) of each row: ``free`` (K, G), cpu/mem (K,),
        ``acc`` the rows' access classes (one int for all)."""
        k = free.shape[0]
        if not self.dist.types or k == 0:
            return np.zeros(k)
        if not np.isscalar(acc):
            acc = np.asarray(acc)
            first = int(acc[0])
            if not (acc == first).all():
                out = np.empty(k)
                for a in np.unique(acc).tolist():
                    sel = np.flatnonzero(acc == a)
                    out[sel] = self.node_frag(free[sel], np.asarray(cpu_free)[sel], np.asarray(mem_free)[sel], a)
                return out
            acc = first
        if k <= 3:  # a few nodes: the plain-Python path is faster than a dozen numpy calls (same bits)
            return np.array([self.node_frag1(r, c, m, acc) for r, c, m in
                             zip(free.tolist(), np.asarray(cpu_free).tolist(), np.asarray(mem_free).tolist())])
        wrun_t, wnot_t, wnone, _ = self._tables[acc]
        g = free.shape[1]
        ps = np.sort(free.astype(np.int64), axis=1)
        cs = np.zeros((k, g + 1), dtype=np.int64)
        np.cumsum(ps, axis=1, out=cs[:, 1:])
        # per row, how many parts are below each threshold: one searchsorted over all rows at
        # once (each row shifted into its own band of the number line)
        band = np.arange(k, dtype=np.int64)[:, None] * self._band
        below = np.searchsorted((ps + band).ravel(), (self._t[None, :] + band).ravel()).reshape(k, -1)
        below -= np.arange(k, dtype=np.int64)[:, None] * g
        stranded = np.take_along_axis(cs, below, axis=1)                                 # (K, T), exact ints
        usable = np.minimum(g - below, self._umax)
        ci = np.searchsorted(self._cpu_lv, cpu_free, side="right")[:, None]
        mi = np.searchsorted(self._mem_lv, mem_free, side="right")[:, None]
        wrun = wrun_t[ci, mi, self._cols, usable]
        wnot = wnot_t[ci, mi, self._cols, usable]
        total = cs[:, -1].astype(np.float64)
        # the terms in node_frag1's order, summed strictly left to right (cumsum is sequential)
        terms = np.empty((k, 2 * len(self._tl) + 1))
        terms[:, 0] = total * wnone
        np.multiply(stranded, wrun, out=terms[:, 1::2])
        np.multiply(total[:, None], wnot, out=terms[:, 2::2])
        return np.cumsum(terms, axis=1)[:, -1]

    def node_frag1(self, parts: list[int], cpu_free: int, mem_free: int, acc: int = 0) -> float:
        """``node_frag`` of one node, in plain Python (the single-node hot path): the same
        expression as ``node_frag``, so the same bits."""
        if not self.dist.types:
            return 0.0
        ps = sorted(parts)
        ci = bisect_right(self._cpu_l, cpu_free)
        mi = bisect_right(self._mem_l, mem_free)
        # the value is a function of (class, levels, multiset of parts): many nodes share one
        key = (acc, ci, mi, *ps)
        hit = self._memo1.get(key)
        if hit is not None:
            return hit
        _, _, wnone, by_u = self._tables[acc]
        g = len(ps)
        total = float(sum(ps))
        # per (cpu level, memory level): for each usable count u, the W_run and W_not rows over c
        wr_u, wn_u = by_u[ci][mi]
        umax = self._umax
        u = g if g < umax else umax
        wr, wn = wr_u[u], wn_u[u]
        acc_sum = total * wnone
        k = 0
        s = 0.0
        for c, t in enumerate(self._tl):
            if k < g and ps[k] < t:
                while k < g and ps[k] < t:
                    s += ps[k]
                    k += 1
                u = g - k
                if u > umax:
                    u = umax
                wr, wn = wr_u[u], wn_u[u]
            acc_sum = acc_sum + s * wr[c] + total * wn[c]
        if len(self._memo1) >= 200_000:
            self._memo1.clear()
        self._memo1[key] = acc_sum
        return acc_sum
