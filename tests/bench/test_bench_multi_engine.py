"""``bench.multi_engine`` in quick mode: three engine processes of a multi-domain market converge.

No timing is asserted; the benchmark itself fails unless every engine showed each change (the new
LSA sequence number and domain 1's new summary) within 30 s.
"""

from __future__ import annotations

import pytest

import bench.multi_engine

pytestmark = pytest.mark.bench


def test_multi_engine_benchmark_reports_its_figures():
    figures = bench.multi_engine.run(quick=True)
    for key in ("multi_engine_converge_ms", "multi_engine_converge_ms_max", "multi_engine_lsa_ms"):
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
    assert figures["multi_engine_engines"] == 3 and figures["multi_engine_changes"] == 3
    # the summary crosses after (or with) the LSA: the whole view is never faster than its LSA part
    assert figures["multi_engine_converge_ms"] >= figures["multi_engine_lsa_ms"]
    assert figures["multi_engine_converge_ms"] <= figures["multi_engine_converge_ms_max"]
