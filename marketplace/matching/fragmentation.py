"""GPU fragmentation of a node, and how much a placement adds to it (Weng et al., ATC'23).

"Beware of Fragmentation" (Weng et al., USENIX ATC'23, the paper behind the Alibaba trace)
measures a node's fragmentation *with respect to the workload*: for a task type m, the free
accelerator capacity of node n that m cannot use is fragmented:

    F_n(m) = sum_g R_g                      if m cannot run on n at all (too few free devices,
                                            too little free CPU or memory): every free bit is stranded
    F_n(m) = sum_g R_g * [R_g < d_m]        otherwise: devices whose free part is smaller than
                                            m's per-device demand d_m (its share, 1000 for whole devices)

and the node's expected fragmentation over the workload's distribution of task types M
(popularity p_m) is ``F_n(M) = sum_m p_m F_n(m)``. Fragmentation Gradient Descent places a
task where it increases F the least: ``delta = F_n'(M) - F_n(M)``. ``Fragmentation`` in
``plugins.py`` scores ``-delta``. Task types with no accelerator (CPU-only pods) count their
node as fragmented only when they cannot run there (they use no device part).

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
                          top: int = 12) -> WorkloadDistribution:
        """The ``top`` most popular (count, share) shapes of ``reqs``; each shape's CPU and memory
        are the lower medians of its members (the paper's types are the trace's pod shapes)."""
        members: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r in reqs:
            if r.device_class == device_class:
                key = (r.count, r.share_milli)
                cpu = r.cpu_milli
            elif r.device_class == DeviceClass.CPU:
                key = (0, 0)
                cpu = r.count * r.share_milli
            else:
                continue
            members.setdefault(key, []).append((cpu, r.min_system_memory_mib or 0))
        freq = Counter({k: len(v) for k, v in members.items()})
        kept = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        total = sum(n for _, n in kept)
        types = []
        for (count, share), n in kept:
            cpus = sorted(c for c, _ in members[(count, share)])
            mems = sorted(m for _, m in members[(count, share)])
            mid = (len(cpus) - 1) // 2
            types.append(TaskType(count, share, cpus[mid], mems[mid], n / total))
        return cls(device_class, tuple(types))

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
        stranded = np.where(self._none, 0.0, sums[:, self._col])
        usable = cnts[:, -1:] - cnts[:, self._col]
        gpu_ok = self._none | (usable >= self._cnt)
        host = gpu_ok & (cpu_free[:, None] >= self._cpu) & (mem_free[:, None] >= self._mem)
        return np.where(host, stranded, total) @ self._w
