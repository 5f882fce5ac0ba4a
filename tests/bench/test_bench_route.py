"""``bench.route`` in quick mode returns the promised keys with sane values.

No timing target is asserted (timings are measured by ``cona bench route`` on a quiet
machine); only that the figures exist, are positive and are mutually consistent. The
benchmark itself checks the incremental distances against a full recomputation."""

from __future__ import annotations

import pytest

from bench.route import run

pytestmark = pytest.mark.bench

PROMISED = {"spf_10k_ms_p50", "spf_10k_ms_p99", "spf_100k_ms_p50", "incremental_10k_ms_p50",
            "networkx_spf_10k_ms"}


def test_quick_route_bench_reports_its_keys():
    figures = run(quick=True)
    assert PROMISED <= set(figures), sorted(PROMISED - set(figures))
    for key in PROMISED:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
    assert 10_000 <= figures["nodes_10k"] < 11_000 and 100_000 <= figures["nodes_100k"] < 101_000
    assert figures["spf_10k_ms_p50"] <= figures["spf_10k_ms_p99"]
    assert figures["links_10k"] > figures["nodes_10k"]  # a mesh, not a tree
