"""``bench/api.py`` in quick mode: a real market (``cona up`` with demo agents) read under an open-loop load.

No timing is asserted (the machine is shared); the figures must be real: every key present,
every read answered, the offered load delivered, and each order leased on chain.
"""

from __future__ import annotations

import pytest

from bench import api

pytestmark = pytest.mark.bench


def test_api_bench_quick_reports_every_figure():
    out = api.run(quick=True)
    for key in ("read_p50_ms", "read_p99_ms", "achieved_rps", "order_to_lease_ms_p50", "client_lag_p99_ms"):
        assert out[key] > 0, key
    assert out["read_p50_ms"] <= out["read_p99_ms"] <= out["read_max_ms"]
    assert out["offered_rps"] == api.QUICK_RPS and out["read_requests"] == api.QUICK_RPS * api.QUICK_DURATION_S
    assert out["read_errors"] == 0  # every read answered 200 before the end
    assert out["achieved_rps"] > api.QUICK_RPS / 2  # the load was delivered, not throttled by the client
    assert out["order_to_lease_samples"] == api.QUICK_ORDERS  # each order reached Assigned on chain
    # placement through POST /v1/orders from 20 buyers, on anvil and on the embedded chain: every order placed
    for chain in ("anvil", "embedded"):
        assert out[f"place_orders_per_s_{chain}"] > 0 and out[f"place_errors_{chain}"] == 0, out
        assert 0 < out[f"place_p50_ms_{chain}"] <= out[f"place_p99_ms_{chain}"]
    # every endpoint of the mix was read and timed
    assert {k for k in out if k.startswith("read_p99_ms_")} == {
        "read_p99_ms_providers", "read_p99_ms_orders_id", "read_p99_ms_orders", "read_p99_ms_topology",
        "read_p99_ms_healthz"}
