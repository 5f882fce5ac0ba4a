"""``cona bench runtime`` in quick mode: the keys issue 15 promises, with values that make sense.

No timing threshold (figures are measured by ``cona bench runtime``, not by tests). What must
hold whatever the machine: every promised key is a positive number and the overhead is the
container figure less the native one.
"""

from __future__ import annotations

import pytest

from bench import runtime as bench_runtime
from tests.e2e.container_env import require_podman

pytestmark = pytest.mark.bench

PROMISED = {"container_start_ms_p50", "wasm_start_ms_p50", "wasm_compile_ms_p50", "container_overhead_ms_p50",
            "artifact_put_mib_per_s"}


def test_the_quick_run_reports_every_promised_figure():
    require_podman()
    figures = bench_runtime.run(quick=True)
    missing = PROMISED - set(figures)
    assert not missing, sorted(missing)
    for key in PROMISED | {"native_start_ms_p50", "artifact_get_mib_per_s"}:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
    overhead = figures["container_start_ms_p50"] - figures["native_start_ms_p50"]
    assert abs(figures["container_overhead_ms_p50"] - overhead) <= 0.01 * max(1.0, overhead) + 0.1
