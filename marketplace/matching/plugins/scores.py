"""The Score plugins (raw value per candidate provider, higher is better) and NormalizeScore.

A score plugin returns raw values over the candidate rows; the framework normalizes each
plugin's raws to 0..100 with the policy's NormalizeScore plugin (``MinMax``: min-max over
the candidates, all equal -> 100, non-finite -> 0) and takes the weighted mean. Placement
effects (FGD delta, best-fit raw) come from the shape's ``PlacementMemo``
(``placement.PlacementEffects``); a plugin whose raw reads provider facts alone can say that
it is the same on every provider (``constant``), and the framework then adds its normalized
level without a min/max over the candidates.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np

from marketplace.matching.framework import CycleState, Lifetime, NormalizeScorePlugin, ScorePlugin, StateKey
from marketplace.matching.placement import PlacementEffects
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

#: the price column as a raw score (-price; no price: -inf)
PRICE_RAW: StateKey[np.ndarray] = StateKey("Price.raw", Lifetime.MARKET)
#: (the raw value,) when it is the same on every provider, else (None,)
PRICE_CONST: StateKey[tuple] = StateKey("Price.constant", Lifetime.MARKET)
RELIABILITY_CONST: StateKey[tuple] = StateKey("Reliability.constant", Lifetime.MARKET)
#: the path latency (ms) that weighs as much as a fully loaded provider in ``LoadLatency``
LOAD_LATENCY_SCALE_MS = 50.0


def _constant(st: CycleState, key: StateKey[tuple], full: Callable[[], np.ndarray]) -> float | None:
    hit = st.shared.get(key, st.ix.version)
    if hit is None:
        arr = full()
        same = len(arr) > 0 and bool((arr == arr[0]).all())
        hit = st.shared.put(key, st.ix.version, (float(arr[0]),) if same else (None,))
    return hit[0]


class Fragmentation(ScorePlugin):
    """-(F_n'(M) - F_n(M)): the fragmentation gradient of the placement (fragmentation.py)."""

    name = "Fragmentation"
    needs_fragmentation = True

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return -effects.delta


class BestFit(ScorePlugin):
    """Share of the node's capacity of the requested class in use after the placement."""

    name = "BestFit"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return effects.fit


class SmallerNode(ScorePlugin):
    """The smaller the provider (accelerators, then CPU, then memory), the better: a tie-break
    that keeps the large nodes whole for the orders only they can hold (an 8-GPU order needs an
    idle 8-GPU node; a one-GPU order fits anywhere). Accelerators are the order's class, or for
    a CPU-only order the fragmentation model's (GPUs): its CPUs are then taken where the fewest
    devices can be stranded by their lack (on the trace: 0.062 -> 0.045 GPUs unallocated at
    100 % load on a held-out seed, against ordering a CPU order by CPU capacity)."""

    name = "SmallerNode"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        ix = st.ix
        cls = st.req.device_class
        if cls == DeviceClass.CPU:
            cls = ix.frag_class or DeviceClass.GPU
        cap = ix.cap_total.get(cls)
        acc = cap[rows].astype(np.float64) if cap is not None else np.zeros(len(rows))
        # lexicographic in one float: milli-devices < 2^20, milli-CPUs < 2^24, GiB < 2^16
        return -(acc * 2.0 ** 40 + ix.cpu_cap[rows] * 2.0 ** 16 + ix.mem_cap[rows] // 1024)


class Price(ScorePlugin):
    """The lower the provider's published price, the better (no price: the worst)."""

    name = "Price"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return self._full(st)[rows]

    def _full(self, st: CycleState) -> np.ndarray:
        full = st.shared.get(PRICE_RAW, st.ix.version)
        if full is None:
            p = st.ix.price
            full = st.shared.put(PRICE_RAW, st.ix.version, np.where(np.isnan(p), -np.inf, -p))
        return full

    def constant(self, st: CycleState) -> float | None:
        return _constant(st, PRICE_CONST, lambda: self._full(st))


class PathLatency(ScorePlugin):
    """The shorter the path from the buyer's node to the provider's, the better."""

    name = "PathLatency"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return -st.latency_of(rows)


class LoadBalance(ScorePlugin):
    """Spread: the lower of the LSA load and the class's share in use, the better."""

    name = "LoadBalance"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return -load_share(st, rows)


def load_share(st: CycleState, rows: np.ndarray) -> np.ndarray:
    """Per row: the larger of the LSA's load and the share of the order's class in use."""
    ix = st.ix
    cs = ix.slots.get(st.req.device_class)
    if cs is None:
        used = 1.0 - ix.cpu_free[rows] / np.maximum(ix.cpu_cap[rows], 1)
    else:
        cap = cs.cap[rows].sum(axis=1)
        used = 1.0 - cs.free[rows].sum(axis=1) / np.maximum(cap, 1)
    return np.maximum(ix.load[rows], used)


class LoadLatency(ScorePlugin):
    """Spread by advertised load and path latency (the convergence layer's load balancing): the
    larger of the LSA's load and the class's share in use, plus the path latency from the buyer
    over ``LOAD_LATENCY_SCALE_MS``; the lower, the better. So among providers the other scores
    rank alike, a new order goes to the least loaded one unless it is more than that scale
    farther: a provider 50 ms farther must be fully idle to beat a fully loaded near one. An
    unknown latency (no buyer node) counts as none, so the load alone decides."""

    name = "LoadLatency"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        load = load_share(st, rows)
        latency = st.latency_of(rows)
        latency = np.where(np.isfinite(latency), latency, 0.0)
        return -(load + latency / LOAD_LATENCY_SCALE_MS)


class Reliability(ScorePlugin):
    """The provider's delivery record (0..1), as the edge computes it."""

    name = "Reliability"

    def score(self, st: CycleState, rows: np.ndarray, effects: PlacementEffects) -> np.ndarray:
        return st.ix.reliability[rows]

    def constant(self, st: CycleState) -> float | None:
        return _constant(st, RELIABILITY_CONST, lambda: st.ix.reliability)


# ============================================================================ normalize


class MinMax(NormalizeScorePlugin):
    """Min-max to 0..100 over the candidates (kube-scheduler's DefaultNormalizeScore)."""

    name = "MinMax"

    def normalize(self, raw: np.ndarray) -> np.ndarray:
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

    def level(self, constant: float) -> float:
        return 100.0 if math.isfinite(constant) else 0.0


#: the score plugins this module provides
SCORES: tuple[type[ScorePlugin], ...] = (Fragmentation, BestFit, SmallerNode, Price, PathLatency, LoadBalance,
                                         LoadLatency, Reliability)
