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
``plugins.py`` scores ``-delta``. This follows the authors' simulator
(hkust-adsl/kubernetes-scheduler-simulator, ``NodeGpuShareFragAmountScore``: every class but
"Q3 satisfied" counts, including a CPU-only task's "XL"). Task types are the trace's own
(count, share, CPU) shapes, weighted by how often they occur; like the paper, the measure
has CPU and GPU dimensions only (``memory_mib`` of a type is checked when a caller gives one;
``from_requirements`` leaves it 0).

Invariants: everything here is a pure, vectorized function of integer arrays (milli-devices,
milli-CPU, MiB); the distribution is built deterministically (types sorted by popularity,
then by their fields), so equal workloads give equal scores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement


@dataclass(frozen=True, slots=True)
class TaskType:
    """One kind of task in the workload: ``count`` devices of ``share_milli`` each (0: none)."""

    count: int
    share_milli: int
    cpu_milli: int
    memory_mib: int
    weight: float


@dataclass(frozen=True, slots=True)
class WorkloadDistribution:
    """The target workload: task types and their popularity (weights sum to 1)."""

    device_class: DeviceClass
    types: tuple[TaskType, ...]

    @classmethod
    def from_requirements(cls, reqs: Iterable[Requirement], *, device_class: DeviceClass = DeviceClass.GPU,
                          top: int | None = None) -> WorkloadDistribution:
        """The workload's task types: distinct (device count, share, CPU) shapes of ``reqs``
        with their frequencies (the paper's "typical pods"); ``top`` keeps only the most
        popular ones (weights renormalized), None keeps all. CPU-only requirements are type
        (0, 0, logical CPUs * 1000)."""
        freq: Counter[tuple[int, int, int]] = Counter()
        for r in reqs:
            if r.device_class == device_class:
                freq[(r.count, r.share_milli, r.cpu_milli)] += 1
            elif r.device_class == DeviceClass.CPU:
                freq[(0, 0, r.count * r.share_milli)] += 1
        kept = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
        if top is not None:
            kept = kept[:top]
        total = sum(n for _, n in kept)
        types = tuple(TaskType(count, share, cpu, 0, n / total) for (count, share, cpu), n in kept)
        return cls(device_class, types)

    def arrays(self) -> tuple[np.ndarray, ...]:
        t = self.types
        return (np.array([x.count for x in t], dtype=np.int64), np.array([x.share_milli for x in t], dtype=np.int64),
                np.array([x.cpu_milli for x in t], dtype=np.int64), np.array([x.memory_mib for x in t], dtype=np.int64),
                np.array([x.weight for x in t], dtype=np.float64))

    def canonical(self) -> list:
        return [int(self.device_class)] + [[x.count, x.share_milli, x.cpu_milli, x.memory_mib, repr(x.weight)]
                                           for x in self.types]


class FragmentationModel:
    """``F_n(M)`` for many nodes at once, from their free device parts, CPU and memory.

    Cost is O(K*G + K*M), not O(K*M*G): the distinct per-device demands T (sorted) cut the
    free parts into buckets; per row, a bincount gives the free milli and the device count
    in each bucket, and their running sums give, for every threshold at once, the stranded
    milli (parts below it) and the usable devices (parts at or above it).
    """

    def __init__(self, dist: WorkloadDistribution) -> None:
        self.dist = dist
        cnt, share, cpu, mem, w = dist.arrays()
        demand = np.where(cnt > 0, share, 0)
        self._t = np.unique(demand[demand > 0])  # thresholds, sorted
        # column of each type in the cumulative tables; CPU-only types read nothing stranded
        self._col = np.searchsorted(self._t, demand).astype(np.int64)
        self._none = (cnt == 0)[None, :]
        self._cnt = cnt[None, :]
        self._cpu = cpu[None, :]
        self._mem = mem[None, :]
        self._w = w

    def node_frag(self, free: np.ndarray, cpu_free: np.ndarray, mem_free: np.ndarray) -> np.ndarray:
        """Expected fragmentation (milli-devices) of each row: ``free`` (K, G), cpu/mem (K,)."""
        k = free.shape[0]
        if not self.dist.types or k == 0:
            return np.zeros(k)
        nb = len(self._t) + 1
        bucket = np.searchsorted(self._t, free, side="right")  # thresholds <= part
        flat = (np.arange(k)[:, None] * nb + bucket).ravel()
        sums = np.bincount(flat, weights=free.ravel().astype(np.float64), minlength=k * nb).reshape(k, nb)
        cnts = np.bincount(flat, weights=(free > 0).ravel().astype(np.float64), minlength=k * nb).reshape(k, nb)
        np.cumsum(sums, axis=1, out=sums)
        np.cumsum(cnts, axis=1, out=cnts)
        total = sums[:, -1:]
        # parts below threshold t are those in buckets 0..t
        stranded = sums[:, self._col]
        usable = cnts[:, -1:] - cnts[:, self._col]
        # a CPU-only type can use no device part: all free milli is stranded for it (the paper's "XL")
        runs = ~self._none & (usable >= self._cnt) & (cpu_free[:, None] >= self._cpu) & (mem_free[:, None] >= self._mem)
        return np.where(runs, stranded, total) @ self._w
