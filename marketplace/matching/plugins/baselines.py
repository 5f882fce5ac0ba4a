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
