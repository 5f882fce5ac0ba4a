"""The flooding benchmark runs in quick mode, reports its promised keys, and measured real convergence.

No timing is asserted: ``bench.flood`` itself fails unless every peer's digest equalled the
originator's with all LSAs and none was rejected.
"""

from __future__ import annotations

import pytest

import bench.flood

pytestmark = pytest.mark.bench

PROMISED = {"flood_converge_ms", "flood_converge_ms_max", "originate_ms", "flood_lsas_per_s"}


def test_flood_benchmark_reports_its_figures():
    figures = bench.flood.run(quick=True)
    assert PROMISED <= set(figures)
    for key in PROMISED:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
    assert figures["flood_peers"] == 5 and figures["flood_lsas"] == 100
    assert figures["flood_converge_ms"] >= figures["originate_ms"] * 0.5  # convergence includes origination
