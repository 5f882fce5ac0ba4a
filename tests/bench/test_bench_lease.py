"""``bench/lease.py`` in quick mode: the keys are there and the figures are real (positive)."""

from __future__ import annotations

import pytest

from bench import lease

pytestmark = pytest.mark.bench


def test_lease_bench_quick_reports_positive_latencies():
    out = lease.run(quick=True)
    assert set(out) >= {"order_to_lease_ms_p50", "order_to_lease_ms_p99", "order_to_lease_samples",
                        "failure_detect_ms", "failure_detect_bound_ms"}
    assert out["order_to_lease_samples"] == 20  # every sample reached Assigned on chain
    assert 0 < out["order_to_lease_ms_p50"] <= out["order_to_lease_ms_p99"]
    # the silent provider is failed no earlier than its heartbeats allow
    assert out["failure_detect_ms"] >= 3 * 0.2 * 1000 > 0
