"""bench.match runs in quick mode and reports the keys issues 6 and 19 promise (no timing asserted)."""

from __future__ import annotations

import pytest

from bench import match

pytestmark = pytest.mark.bench

KEYS = {"orders_per_s_1k", "orders_per_s_10k", "orders_per_s_100k", "gpu_alloc_ratio",
        "baseline_orders_per_s_10k", "baseline_gpu_alloc_ratio"}


def test_match_bench_quick():
    figures = match.run(quick=True)
    assert KEYS <= set(figures)
    for key in KEYS:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
    assert 0 < figures["gpu_alloc_ratio"] <= 1 and 0 < figures["baseline_gpu_alloc_ratio"] <= 1
    # issue 19: the FGD paper's protocol, every policy, and no placement on an excluded GPU model
    assert {"unalloc_at_100", "fgd_unalloc_at_100", "best_baseline", "best_baseline_unalloc_at_100",
            "gpu_spec_violations", "policies"} <= set(figures)
    assert set(figures["policies"]) == set(match.POLICIES) and figures["gpu_spec_violations"] == 0
    assert figures["best_baseline"] in match.BASELINES
    # no policy leaves less unallocated than the floor any scheduler must leave, seed by seed
    floor = figures["floor_unalloc_at_100_per_seed"]
    assert len(floor) == 2 and figures["floor_unalloc_at_100"] >= 0
    for name, f in figures["policies"].items():
        assert all(u >= lo for u, lo in zip(f["unalloc_at_100_per_seed"], floor)), (name, floor)
