"""The unallocation floor: the least share of a cluster's GPU capacity that ANY scheduler must
leave unallocated once a given set of GPU pods has arrived.

The question is bin packing. The bins are the cluster's GPUs, 1000 milli each; the items are
the arrived pods' per-GPU shares: a pod asking a fraction of one GPU is one item of its
share, a pod asking ``k`` devices is ``k`` items of its per-device share. A scheduler, online
or offline, clairvoyant or not, allocates the shares of the pods it placed, and every pod it
placed fits, together with the others on the same GPU, within that GPU's 1000 milli. So what
it allocates is the value of a feasible packing of a subset of the items into the GPUs, and the
most any packing can hold bounds it from above. Everything else a real placement must honour
is RELAXED AWAY, which can only raise that maximum and so only loosen (never invalidate) the
bound: the devices of a multi-GPU pod on one node (here its items may land anywhere, even on
one GPU), the GPU models a pod accepts, host CPU and memory, and which GPU sits on which node.

The maximum packing is bounded by the configuration LP of Gilmore and Gomory (cutting stock):
a configuration is a multiset of items that fits one GPU (``a_t`` items of type ``t``,
``sum a_t s_t <= 1000``); choose ``x_c >= 0`` configurations to

    maximise   sum_c v_c x_c                 (v_c = sum_t a_tc s_t, the milli it packs)
    subject to sum_c x_c <= G                (G GPUs)
               sum_c a_tc x_c <= n_t         (n_t items of type t arrived)

Every integer packing is a feasible integer point, so the LP optimum bounds it. The LP has
one column per configuration, too many to list: column generation solves it over a few and
prices the rest with the duals ``(y_G, y_t) >= 0`` by a bounded knapsack (the most profitable
configuration, profit ``s_t - y_t`` per item, at most ``n_t`` items of type ``t``); a column
is added while its reduced profit ``profit - y_G`` is positive.

The bound reported does not rest on the LP solver's accuracy: by weak duality, for ANY
``y >= 0``, ``G * max(y_G, K(y)) + sum_t n_t y_t`` bounds the LP (and so every packing) from
above, where ``K(y)`` is the knapsack's maximum profit (that ``y_G`` makes the dual feasible
for every configuration). It is computed from the final duals and the exact knapsack, checked
to agree with the primal LP within the tolerance, and rounded down to a multiple of the
packing unit (the gcd of the shares and 1000: every packing's total is one). The knapsack runs
over 1000 / unit capacity cells (at most 1,000), so any milli share in 1..1000 is exact.

``floor(items, gpus).unalloc`` = 1 - bound / capacity: a lower bound on ``unalloc_at_100``
(``bench.inflation``) for every policy on the same arrivals.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
from scipy.optimize import linprog

from marketplace.errors import InputError, MatchingError
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement

log = logging.getLogger(__name__)

#: milli-GPUs of one GPU (the trace's ``gpu_milli`` scale)
GPU_MILLI = 1000
#: a column enters while its reduced profit exceeds this many milli
TOLERANCE = 1e-6
#: column generation stops with an error after this many LP solves (the trace's lists take < 100)
MAX_ITERATIONS = 2000


@dataclass(frozen=True)
class Floor:
    """The bound for one set of arrived items on ``gpus`` GPUs."""

    gpus: int
    #: milli-GPUs the items ask in all
    arrived_milli: int
    #: the most milli any scheduler can allocate (the dual bound, rounded down to the unit)
    placed_milli: int
    #: the primal LP's optimum (placed_milli is within the tolerance of it, or the unit below)
    lp_milli: float
    iterations: int
    columns: int

    @property
    def capacity_milli(self) -> int:
        return self.gpus * GPU_MILLI

    @property
    def unalloc(self) -> float:
        """The least share of the capacity any scheduler leaves unallocated."""
        return 1.0 - self.placed_milli / self.capacity_milli


def items(requirements: Iterable[Requirement]) -> dict[int, int]:
    """The GPU items of some pods: per-GPU share (milli) -> how many (see the module
    docstring). Requirements of other device classes ask no GPU and add nothing."""
    out: Counter[int] = Counter()
    for r in requirements:
        if r.device_class == DeviceClass.GPU:
            out[r.share_milli] += r.count
    return dict(out)


def floor(items: Mapping[int, int], gpus: int, *, max_iterations: int = MAX_ITERATIONS) -> Floor:
    """The unallocation floor of ``items`` (share milli -> count) on ``gpus`` GPUs.
    ``InputError`` (field ``gpus`` or ``items``) for no GPUs, a share outside 1..1000 or a
    negative count; ``MatchingError`` if column generation does not converge within
    ``max_iterations`` LP solves or the LP answers inconsistently."""
    sizes, counts = _checked(items, gpus)
    arrived = int(sizes @ counts) if len(sizes) else 0
    if not len(sizes):
        return Floor(gpus, 0, 0, 0.0, 0, 0)
    unit = math.gcd(GPU_MILLI, *(int(s) for s in sizes))
    weights = sizes // unit
    cells = GPU_MILLI // unit
    copies = np.minimum(counts, cells // weights)
    cols = [np.where(np.arange(len(sizes)) == t, copies[t], 0) for t in range(len(sizes))]
    for it in range(1, max_iterations + 1):
        primal, y_gpu, y_item = _solve(cols, sizes, counts, gpus)
        profit, column = _price(sizes - y_item, weights, copies, cells)
        if profit - y_gpu <= TOLERANCE or any(np.array_equal(column, c) for c in cols):
            bound = gpus * max(y_gpu, profit) + float(counts @ y_item)
            placed = _checked_bound(primal, bound, gpus, arrived, unit)
            log.debug("floor: %d GPUs, %d items of %d types, %d milli arrived: LP %.1f, bound %d after %d "
                      "iterations", gpus, int(counts.sum()), len(sizes), arrived, primal, placed, it)
            return Floor(gpus, arrived, placed, primal, it, len(cols))
        cols.append(column)
    raise MatchingError(f"the unallocation floor's column generation did not converge in {max_iterations} "
                        f"iterations ({len(sizes)} item types, {gpus} GPUs)", iterations=max_iterations)


def _checked(items: Mapping[int, int], gpus: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise InputError(f"the floor needs at least one GPU, not {gpus!r}", field="gpus")
    for share, count in items.items():
        if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= GPU_MILLI:
            raise InputError(f"an item's share must be 1..{GPU_MILLI} milli-GPUs, not {share!r}", field="items")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InputError(f"the count of items of share {share} must be a whole number >= 0, not {count!r}",
                             field="items")
    kept = sorted((s, c) for s, c in items.items() if c > 0)
    return (np.array([s for s, _ in kept], dtype=np.int64).reshape(-1),
            np.array([c for _, c in kept], dtype=np.int64).reshape(-1))


def _solve(cols: list[np.ndarray], sizes: np.ndarray, counts: np.ndarray, gpus: int) -> tuple[float, float, np.ndarray]:
    """The restricted master LP: (its optimum, y_G, y_t), duals clipped at 0 (they are >= 0
    up to the solver's tolerance; any y >= 0 gives a valid bound, see the module docstring)."""
    a = np.array(cols, dtype=float).T  # types x columns
    value = sizes.astype(float) @ a
    a_ub = np.vstack([np.ones(a.shape[1]), a])
    b_ub = np.concatenate([[float(gpus)], counts.astype(float)])
    res = linprog(-value, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    if res.status != 0:
        raise MatchingError(f"the unallocation floor's LP failed: {res.message}", status=int(res.status))
    y = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=float), 0.0)
    return float(-res.fun), float(y[0]), y[1:]


def _price(profit: np.ndarray, weights: np.ndarray, copies: np.ndarray, cells: int) -> tuple[float, np.ndarray]:
    """The bounded knapsack: the configuration of most profit (item ``t`` earns ``profit[t]``,
    weighs ``weights[t]`` of ``cells``, at most ``copies[t]`` of it), and that profit (>= 0:
    the empty configuration). Each type's copies are split in binary chunks (1, 2, 4, ...,
    the rest), so every count up to ``copies[t]`` is a choice of chunks; a 0/1 knapsack over
    the chunks, one vectorised pass each, with a taken-mask per chunk for the way back."""
    best = np.zeros(cells + 1)
    steps: list[tuple[int, int, np.ndarray]] = []
    for t in np.flatnonzero(profit > 0):
        left, chunk = int(copies[t]), 1
        while left > 0:
            k = min(chunk, left)
            left, chunk = left - k, chunk * 2
            w = k * int(weights[t])
            cand = best[:-w] + k * profit[t]
            took = np.zeros(cells + 1, dtype=bool)
            took[w:] = cand > best[w:]
            best = np.where(took, np.concatenate([best[:w], cand]), best)
            steps.append((int(t), k, took))
    column = np.zeros(len(profit), dtype=np.int64)
    c = cells
    for t, k, took in reversed(steps):
        if took[c]:
            column[t] += k
            c -= k * int(weights[t])
    return float(best[cells]), column


def _checked_bound(primal: float, bound: float, gpus: int, arrived: int, unit: int) -> int:
    """The dual bound as a whole number of units, after checking it against the primal LP
    (weak duality; convergence) and the two trivial bounds (capacity, arrived demand)."""
    slack = 1e-6 * max(1.0, primal) + gpus * TOLERANCE
    capacity = gpus * GPU_MILLI
    if not (primal <= bound + slack and bound <= primal + slack + gpus * TOLERANCE):
        raise MatchingError(f"the unallocation floor's LP is inconsistent: primal {primal} vs dual bound {bound}")
    if primal > capacity + slack or primal > arrived + slack:
        raise MatchingError(f"the unallocation floor's LP packs {primal} milli, more than the capacity {capacity} "
                            f"or the arrived {arrived}")
    # every packing's total is a multiple of the unit; 1e-3 unit covers the float error of the bound
    return min(capacity, arrived, unit * math.floor(bound / unit + 1e-3))
