"""Every benchmark runs in quick mode and returns the keys its issue promises.

No timing is asserted here: figures are measured by `cona bench ...`, not by tests.
Each benchmark's own correctness checks (e.g. the counter equals the number of
transactions sent) run inside it, so a benchmark that measures nothing fails.
"""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.bench

PROMISED = {
    "chain": {"embedded_tx_per_s", "anvil_tx_per_s", "anvil_batched_tx_per_s", "anvil_p50_ms", "anvil_p99_ms",
              "anvil_web3_transact_tx_per_s"},
}


@pytest.mark.parametrize("name", sorted(PROMISED))
def test_benchmark_runs_and_reports_its_keys(name: str):
    module = importlib.import_module(f"bench.{name}")
    figures = module.run(quick=True)
    missing = PROMISED[name] - set(figures)
    assert not missing, f"bench {name} lacks {sorted(missing)}"
    for key in PROMISED[name]:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
