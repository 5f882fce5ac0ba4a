"""The published schedulers the FGD paper compares against, as Score plugins (issue 19).

Weng et al. (ATC'23) evaluate FGD against five baselines in their simulator
(hkust-adsl/kubernetes-scheduler-simulator, ``pkg/simulator/plugin``); each is a Score
plugin here, computing the simulator's integer score 0..100 from the same node figures, so
that ties (which kube-scheduler breaks at random, the framework by keccak(seed, order id))
are the simulator's ties:

    Random         a pseudo-random score per (order, provider): random fit
    DotProduct     Tetris: 100 * (1 - <free, ask> / 2), free and ask normalized by the largest
                   node's CPU and GPU ("merge" dimensions, "max" norm): the least free node
                   along the order's own demand wins
    CpuGpuBestFit  100 * (1 - (free CPU after / max CPU + free GPU after / max GPU) / 2)
    GpuPacking     a used GPU's free part first (100 - its free share / 10, at least 50), then
                   whole GPUs of a used node (50 - how many, at least 33), then an idle node
                   (33 - its GPUs)
    GpuClustering  nodes that hold only leases of the order's kind (a GPU fraction, or n whole
                   GPUs) first, then mixed nodes with that kind, then idle nodes, then others;
                   within a band, the fewer free GPUs the better
    FGDScore       the paper's FGD: 100 * sigmoid(-(F after - F before) / 1000), on the
                   fragmentation model (``Fragmentation``'s delta, quantized as the simulator
                   quantizes it)

"Largest node" is the index's largest CPU and per-node accelerator capacity (128 CPUs and
8 GPUs on the trace, the simulator's ``MaxSpecCpu``/``MaxSpecGpu``). A CPU-only order scores
0 on every provider under GpuPacking and GpuClustering, as in the simulator.

Invariants: every raw value is a deterministic integer function of the order, the row's
free capacity and its leases (``ProviderIndex.kinds``), so equal inputs tie exactly.
"""

from __future__ import annotations

import logging

import numpy as np
from eth_utils import keccak

from marketplace.matching.framework import CycleState, Lifetime, ScorePlugin, StateKey
from marketplace.matching.placement import PlacementEffects
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

#: (largest CPU milli, largest per-node accelerator milli) of the index
LARGEST: StateKey[tuple[float, float]] = StateKey("Baselines.largest", Lifetime.MARKET)


def _accel(st: CycleState) -> DeviceClass:
    """The accelerator class a score weighs: the order's, or the GPUs for a CPU-only order (the
    simulator's node vector is always (CPU, GPU))."""
    cls = st.req.device_class
    return DeviceClass.GPU if cls == DeviceClass.CPU else cls


def _largest(st: CycleState) -> tuple[float, float]:
    cls = _accel(st)
    hit = st.shared.get(LARGEST, (st.ix.version, cls))
    if hit is None:
        ix = st.ix
        cap = ix.cap_total.get(cls)
        hit = st.shared.put(LARGEST, (ix.version, cls),
                            (float(max(int(ix.cpu_cap.max(initial=0)), 1)),
                             float(max(int(cap.max(initial=0)) if cap is not None else 0, 1))))
    return hit


def _asks(st: CycleState) -> tuple[int, int]:
    """(CPU milli, accelerator milli) the order asks."""
    req = st.req
    if req.device_class == DeviceClass.CPU:
        return req.count * req.share_milli, 0
    return req.cpu_milli, req.count * req.share_milli


def _free(st: CycleState, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(free CPU milli, free accelerator milli of the order's class) of ``rows``."""
    ix = st.ix
    cs = ix.slots.get(_accel(st))
    gpu = cs.free[rows].sum(axis=1, dtype=np.int64) if cs is not None else np.zeros(len(rows), dtype=np.int64)
    return ix.cpu_free[rows], gpu


class Random(ScorePlugin):
    """Random fit: a pseudo-random score per (seed, order, provider)."""

    name = "Random"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        h = np.uint64(int.from_bytes(keccak(st.order.order_id.encode())[:8], "big"))
        # splitmix64 of (provider row, order hash): uint64 arithmetic wraps, as intended
        with np.errstate(over="ignore"):
            z = (rows.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) ^ h
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        return (z >> np.uint64(11)).astype(np.float64)


class DotProduct(ScorePlugin):
    """Tetris' alignment score (see the module docstring)."""

    name = "DotProduct"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        max_cpu, max_gpu = _largest(st)
        ask_cpu, ask_gpu = _asks(st)
        cpu, gpu = _free(st, rows)
        dot = (cpu / max_cpu) * (ask_cpu / max_cpu) + (gpu / max_gpu) * (ask_gpu / max_gpu)
        return np.floor(100.0 * (1.0 - dot / 2.0))


class CpuGpuBestFit(ScorePlugin):
    """Best fit over CPU and GPU, half each (see the module docstring)."""

    name = "CpuGpuBestFit"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        max_cpu, max_gpu = _largest(st)
        ask_cpu, ask_gpu = _asks(st)
        cpu, gpu = _free(st, rows)
        left = (cpu - ask_cpu) / max_cpu * 0.5 + (gpu - ask_gpu) / max_gpu * 0.5
        return np.floor((1.0 - left) * 100.0)


class GpuPacking(ScorePlugin):
    """Used GPUs first, then used nodes, then idle nodes (see the module docstring)."""

    name = "GpuPacking"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        req = st.req
        cs = st.ix.slots.get(req.device_class)
        if req.device_class == DeviceClass.CPU or cs is None:
            return np.zeros(len(rows))
        free = cs.free[rows].astype(np.int64)
        devices = cs.total[rows].astype(np.int64)
        full = cs.n_full[rows].astype(np.int64)
        # the devices the order takes: the least free parts that fit (padding slots have cap 0)
        keyed = np.where(free >= req.share_milli, free, 1 << 40)
        chosen = np.sort(keyed, axis=1)[:, :req.count]
        whole = (chosen == 1000).sum(axis=1)
        shared = np.where(chosen < 1000, chosen * 100 // 1000, 0).sum(axis=1)
        return np.where(full == devices, np.maximum(33 - full, full),
                        np.where(whole > 0, np.maximum(50 - whole, 33), np.maximum(100 - shared // 10, 50)))\
            .astype(np.float64)


class GpuClustering(ScorePlugin):
    """Nodes holding the order's kind of lease first (see the module docstring)."""

    name = "GpuClustering"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        req = st.req
        ix = st.ix
        if req.device_class == DeviceClass.CPU:
            return np.zeros(len(rows))
        _, max_gpu = _largest(st)
        _, gpu = _free(st, rows)
        base = 25 * (int(max_gpu) - gpu) // int(max_gpu)
        kind = 0 if req.count == 1 and req.share_milli < 1000 else req.count
        same = ix.kinds.get(kind)
        has = same[rows] > 0 if same is not None else np.zeros(len(rows), dtype=bool)
        n = ix.n_kinds[rows]
        band = np.where(has, np.where(n == 1, 75, 50), np.where(n == 0, 25, 0))
        return (base + band).astype(np.float64)


class FGDScore(ScorePlugin):
    """The paper's FGD score, quantized as its simulator does (see the module docstring)."""

    name = "FGDScore"
    needs_fragmentation = True

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.floor(100.0 / (1.0 + np.exp(effects.delta / 1000.0)))


class NodeOrder(ScorePlugin):
    """The lower the provider's row (id order), the better: a consistent tie-break."""

    name = "NodeOrder"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return -rows.astype(np.float64)


#: the score plugins this module provides
BASELINES: tuple[type[ScorePlugin], ...] = (Random, DotProduct, CpuGpuBestFit, GpuPacking, GpuClustering, FGDScore,
                                            NodeOrder)


class _FragTol(ScorePlugin):
    """EXPERIMENT: -round(delta / tol) with tol from env FT."""

    name = "FragTol"
    needs_fragmentation = True

    def score(self, st, rows, effects):
        import os
        tol = float(os.environ.get("FT", "1"))
        return -np.floor(effects.delta / tol + 0.5)


BASELINES = BASELINES + (_FragTol,)


class _PackFrag(ScorePlugin):
    """EXPERIMENT: count-based, CPU/memory-aware fragmentation. env PF_W: 'pods'|'demand'; PF_MEM=1 use memory."""

    name = "PackFrag"
    needs_fragmentation = True

    def _types(self, st):
        import os
        from collections import defaultdict
        cache = getattr(self, "_cache", None)
        if cache is not None:
            return cache
        dist = st.ix.frag_model.dist
        t = dist.types
        self._cache = (np.array([x.count for x in t]), np.array([x.share_milli for x in t]),
                       np.array([x.cpu_milli for x in t]), np.array([x.memory_mib for x in t]),
                       np.array([x.weight for x in t]))
        return self._cache

    def measure(self, st, free, cpu, mem):
        import os
        cnt, share, tcpu, tmem, w = self._types(st)
        R, G = free.shape
        dev = cnt > 0
        total = free.sum(axis=1).astype(np.float64)
        sh = np.maximum(share, 1)
        # GPU pods that fit: fractional one-device types: sum floor(part/t); whole/multi: floor(#parts>=t / count)
        per = (free[:, None, :] // sh[None, :, None]).sum(axis=2)           # (R, T) for count 1
        ge = (free[:, None, :] >= sh[None, :, None]).sum(axis=2) // np.maximum(cnt, 1)[None, :]
        kg = np.where((cnt == 1)[None, :], per, ge)
        if os.environ.get("PF_MODE") == "cap":
            # FGD's usable (parts >= t when the type runs), capped by what CPU and memory let run
            usable_gpu = np.where(free[:, None, :] >= sh[None, :, None], free[:, None, :], 0).sum(axis=2)
            runs = ge >= 1
            kc = np.where(tcpu[None, :] > 0, cpu[:, None] // np.maximum(tcpu, 1)[None, :], 1 << 30)
            km = np.where(tmem[None, :] > 0, mem[:, None] // np.maximum(tmem, 1)[None, :], 1 << 30)
            kk = np.minimum(kc, km)
            usable = np.where(runs & (kk >= 1), np.minimum(usable_gpu, kk * (cnt * share)[None, :]), 0)
            usable = np.where(dev[None, :], usable, 0)
            frag = total[:, None] - usable
            return (frag * w[None, :]).sum(axis=1)
        kc = np.where(tcpu[None, :] > 0, cpu[:, None] // np.maximum(tcpu, 1)[None, :], 1 << 30)
        use_mem = os.environ.get("PF_MEM", "1") == "1"
        km = np.where((tmem[None, :] > 0) & use_mem, mem[:, None] // np.maximum(tmem, 1)[None, :], 1 << 30)
        k = np.minimum(np.minimum(kg, kc), km)
        usable = np.where(dev[None, :], np.minimum(k * (cnt * share)[None, :], total[:, None]), 0)
        frag = total[:, None] - usable
        return (frag * w[None, :]).sum(axis=1)

    def score(self, st, rows, effects):
        ix = st.ix
        req = st.req
        cls = ix.frag_class
        cs = ix.slots[cls]
        free = cs.free[rows].astype(np.int64)
        cpu = ix.cpu_free[rows].astype(np.int64)
        mem = ix.mem_free[rows].astype(np.int64)
        before = self.measure(st, free, cpu, mem)
        after_free = free.copy()
        if req.device_class == cls:
            slots = effects.memo.slots[effects.sid]
            for c in range(slots.shape[1]):
                after_free[np.arange(len(rows)), slots[:, c]] -= req.share_milli
            cpu = cpu - req.cpu_milli
        else:
            cpu = cpu - req.count * req.share_milli
        mem = mem - (req.min_system_memory_mib or 0)
        after = self.measure(st, after_free, cpu, mem)
        import os
        tol = float(os.environ.get("FT", "1"))
        return -np.floor((after - before) / tol + 0.5)


BASELINES = BASELINES + (_PackFrag,)


class _SumSquares(ScorePlugin):
    """EXPERIMENT: Sum-of-Squares bin packing over GPU gaps (Csirik et al.): -delta sum N(g)^2."""

    name = "SumSquares"

    def score(self, st, rows, effects):
        req = st.req
        ix = st.ix
        cs = ix.slots.get(req.device_class)
        if cs is None or req.count != 1 or req.share_milli >= 1000:
            return np.zeros(len(rows))
        s = req.share_milli
        allf = cs.free[cs.cap > 0]
        hist = np.bincount(allf, minlength=1001).astype(np.float64)
        hist[0] = 0.0
        hist[1000] = 0.0
        free = cs.free[rows].astype(np.int64)
        elig = free >= s
        g = np.where(elig, free, 1000)
        d = np.where(g < 1000, -2 * hist[g] + 1, 0.0) + np.where(g - s > 0, 2 * hist[np.maximum(g - s, 0)] + 1, 0.0)
        d = np.where(elig, d, np.inf)
        return -d.min(axis=1)


BASELINES = BASELINES + (_SumSquares,)


class _ModelBalance(ScorePlugin):
    """EXPERIMENT: keep each model's free capacity at least its exclusive share of the demand."""

    name = "ModelBalance"

    def _setup(self, st):
        cache = getattr(self, "_c", None)
        ix = st.ix
        if cache is not None and cache[0] is ix:
            return cache
        cls = ix.frag_class or DeviceClass.GPU
        models = []
        mid = np.zeros(ix.n, dtype=np.int64)
        names = {}
        for g, view in enumerate(ix.group_views):
            ms = tuple(sorted({d.model for d in view.descriptor.of_class(cls)}))
            if ms not in names:
                names[ms] = len(names)
                models.append(ms)
            mid[ix.group == g] = names[ms]
        cs = ix.slots[cls]
        capm = np.bincount(mid, weights=cs.cap.sum(axis=1).astype(np.float64), minlength=len(models))
        need = np.zeros(len(models))
        from marketplace.resources.requirement import model_matches
        dist = ix.frag_model.dist if ix.frag_model is not None else None
        if dist is not None:
            dem = np.array([t.weight * t.count * t.share_milli for t in dist.types])
            dem = dem / max(dem.sum(), 1e-12)
            for t, d in zip(dist.types, dem):
                if not t.models or d == 0:
                    continue
                acc = np.array([any(model_matches(t.models, m) for m in ms) for ms in models], dtype=bool)
                if not acc.any():
                    continue
                need[acc] += d * capm[acc] / capm[acc].sum()
        self._c = (ix, mid, need, cls)
        return self._c

    def score(self, st, rows, effects):
        import os
        ix, mid, need, cls = self._setup(st)
        req = st.req
        if req.device_class != cls:
            return np.zeros(len(rows))
        cs = ix.slots[cls]
        freem = np.bincount(mid, weights=cs.free.sum(axis=1).astype(np.float64), minlength=len(need))
        total = freem.sum()
        kappa = float(os.environ.get("MB_K", "1.0"))
        d = req.count * req.share_milli
        m = mid[rows]
        after = freem[m] - d - kappa * need[m] * (total - d)
        return np.minimum(after, 0.0) / 1000.0


BASELINES = BASELINES + (_ModelBalance,)


class _SmallFirst(ScorePlugin):
    """EXPERIMENT: consolidation order: smaller nodes first (GPUs, then CPUs, then memory)."""

    name = "SmallFirst"

    def score(self, st, rows, effects):
        ix = st.ix
        cap = ix.cap_total.get(DeviceClass.GPU)
        g = cap[rows] if cap is not None else 0
        return -(g.astype(np.float64) * 1e9 + ix.cpu_cap[rows] * 1e3 + ix.mem_cap[rows] / 1024.0)


class _BigFirst(_SmallFirst):
    name = "BigFirst"

    def score(self, st, rows, effects):
        return -super().score(st, rows, effects)


BASELINES = BASELINES + (_SmallFirst, _BigFirst)
