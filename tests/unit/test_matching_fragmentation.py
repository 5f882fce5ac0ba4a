"""The fragmentation score (Weng et al. ATC'23) and packing quality on the real Alibaba trace."""

from __future__ import annotations

import numpy as np
import pytest

from bench.match import alloc_ratio
from marketplace.matching import MatchingConfig
from marketplace.matching.fragmentation import FragmentationModel, WorkloadDistribution
from tests.unit.matching_fixtures import nodes, pods, workload

pytestmark = pytest.mark.unit


def _direct(types, R, cpu, mem):
    out = 0.0
    for t in types:
        if t.count == 0:  # a CPU-only task uses no device part: all of it is stranded for it ("XL")
            out += t.weight * sum(R)
            continue
        thr = t.share_milli
        usable = sum(1 for r in R if r >= thr and r > 0)
        ok = (t.count == 0 or usable >= t.count) and cpu >= t.cpu_milli and mem >= t.memory_mib
        out += t.weight * (sum(r for r in R if r < thr) if ok else sum(R))
    return out


def test_vectorized_fragmentation_equals_the_paper_definition():
    # pod-count weights, so CPU-only task types are in the distribution too (demand gives them 0)
    dist = WorkloadDistribution.from_requirements([p.requirement for p in pods()], top=40, weight="pods")
    model = FragmentationModel(dist)
    rng = np.random.default_rng(3)
    parts = sorted({t.share_milli for t in dist.types} | {0, 90, 1000})
    free = rng.choice(parts, size=(200, 8)).astype(np.int32)
    cpu = rng.integers(0, 100_000, 200)
    mem = rng.integers(0, 400_000, 200)
    got = model.node_frag(free, cpu, mem)
    want = [_direct(dist.types, free[i], cpu[i], mem[i]) for i in range(200)]
    assert np.allclose(got, want)
    # an empty 8-GPU node with plenty of CPU is fragmented only for the CPU-only task types
    # (they use no GPU: the paper's "XL"); a node with 0.3 GPU left is fragmented for more
    cpu_only = sum(t.weight for t in dist.types if t.count == 0)
    assert cpu_only > 0
    empty = model.node_frag(np.full((1, 8), 1000, np.int32), np.array([96000]), np.array([393216]))[0]
    assert np.isclose(empty, 8000 * cpu_only)
    assert model.node_frag(np.array([[300, 0, 0, 0, 0, 0, 0, 0]], np.int32), np.array([96000]),
                           np.array([393216]))[0] > 300 * cpu_only


def test_packing_beats_spreading_on_the_real_trace():
    cluster = nodes()[:300]
    packed, _ = alloc_ratio(cluster, pods(), workload(40))
    spread, _ = alloc_ratio(cluster, pods(), workload(40), MatchingConfig(score=(("LoadBalance", 1.0),)))
    assert packed > spread + 0.3


def test_fgd_beats_first_fit_at_the_first_failure_on_the_trace_cluster():
    """The issue's metric on the trace's own 1,213 nodes and order, stopping at the first order
    that cannot be placed: demand-weighted FGD has allocated more GPU than first fit (0.931 vs
    0.926). On a 300-node slice it is level with first fit (docs/matching.md), never far below."""
    ours, placed = alloc_ratio(nodes(), pods(), workload(None))
    base, base_placed = alloc_ratio(nodes(), pods(), workload(None), MatchingConfig(policy="first-fit"))
    assert ours > base and placed > base_placed, (ours, base, placed, base_placed)
    cluster = nodes()[:300]
    ours, _ = alloc_ratio(cluster, pods(), workload(None))
    base, _ = alloc_ratio(cluster, pods(), workload(None), MatchingConfig(policy="first-fit"))
    assert ours >= base - 0.02


def test_task_types_weigh_by_device_demand_or_by_pods():
    reqs = [p.requirement for p in pods()]
    demand = WorkloadDistribution.from_requirements(reqs)
    by_pods = WorkloadDistribution.from_requirements(reqs, weight="pods")
    assert abs(sum(t.weight for t in demand.types) - 1) < 1e-9 and abs(sum(t.weight for t in by_pods.types) - 1) < 1e-9
    assert all(t.count > 0 for t in demand.types)  # CPU-only pods use no GPU: no demand weight
    assert any(t.count == 0 for t in by_pods.types)
    eight = max(demand.types, key=lambda t: t.count)
    assert eight.count == 8 and eight.weight > dict(((t.count, t.share_milli, t.cpu_milli), t.weight)
                                                    for t in by_pods.types)[(8, eight.share_milli, eight.cpu_milli)]
    with pytest.raises(ValueError):
        WorkloadDistribution.from_requirements(reqs, weight="count")


def test_the_projects_policy_beats_first_fit_on_held_out_inflated_workloads():
    """The paper's inflated workload on seeds the bench never uses (bench.match.SEEDS): at 100 %
    arrived GPU demand the project's policy has left fewer GPUs unallocated than first fit."""
    from bench import inflation
    from bench.match import SEEDS, workloads
    held_out = (101, 202)
    assert not set(held_out) & set(SEEDS)
    cluster = nodes()[:300]
    capacity = sum(n.gpu for n in cluster) * 1000
    wl = workloads(pods())["default"]
    ours, base = [], []
    for sd in held_out:
        seq = inflation.arrivals(pods(), capacity, sd)
        ours.append(inflation.run(cluster, seq, MatchingConfig(), wl, sd).unalloc_at_100)
        base.append(inflation.run(cluster, seq, MatchingConfig(policy="first-fit"), wl, sd).unalloc_at_100)
    assert np.mean(ours) < np.mean(base), (ours, base)
