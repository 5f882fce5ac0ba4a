"""The fragmentation score (Weng et al. ATC'23) and packing quality on the real Alibaba trace."""

from __future__ import annotations

import numpy as np
import pytest

from bench.match import alloc_ratio
from marketplace.matching import MatchingConfig
from marketplace.matching.fragmentation import FragmentationModel
from tests.unit.matching_fixtures import nodes, pods, workload

pytestmark = pytest.mark.unit


def _direct(types, R, cpu, mem):
    out = 0.0
    for t in types:
        thr = t.share_milli if t.count else 0
        usable = sum(1 for r in R if r >= thr and r > 0)
        ok = (t.count == 0 or usable >= t.count) and cpu >= t.cpu_milli and mem >= t.memory_mib
        out += t.weight * (sum(r for r in R if r < thr) if ok else sum(R))
    return out


def test_vectorized_fragmentation_equals_the_paper_definition():
    dist = workload(40)
    model = FragmentationModel(dist)
    rng = np.random.default_rng(3)
    parts = sorted({t.share_milli for t in dist.types} | {0, 90, 1000})
    free = rng.choice(parts, size=(200, 8)).astype(np.int32)
    cpu = rng.integers(0, 100_000, 200)
    mem = rng.integers(0, 400_000, 200)
    got = model.node_frag(free, cpu, mem)
    want = [_direct(dist.types, free[i], cpu[i], mem[i]) for i in range(200)]
    assert np.allclose(got, want)
    # an empty 8-GPU node with plenty of CPU is not fragmented; a node with 0.3 GPU left is
    assert model.node_frag(np.full((1, 8), 1000, np.int32), np.array([96000]), np.array([393216]))[0] == 0
    assert model.node_frag(np.array([[300, 0, 0, 0, 0, 0, 0, 0]], np.int32), np.array([96000]),
                           np.array([393216]))[0] > 0


def test_packing_beats_spreading_on_the_real_trace():
    cluster = nodes()[:300]
    packed, _ = alloc_ratio(cluster, pods(), workload(40))
    spread, _ = alloc_ratio(cluster, pods(), workload(40), MatchingConfig(score=(("LoadBalance", 1.0),)))
    assert packed > spread + 0.3


@pytest.mark.xfail(reason="on the first-failure metric, first fit in id order keeps whole nodes free and "
                          "still wins (0.955 vs 0.94 here, 0.93 vs 0.90 on the full cluster); see docs/matching.md")
def test_fragmentation_beats_first_fit_on_the_real_trace():
    cluster = nodes()[:300]
    ours, _ = alloc_ratio(cluster, pods(), workload(40))
    base, _ = alloc_ratio(cluster, pods(), workload(40), MatchingConfig(first_fit=True))
    assert ours > base
