"""Every benchmark runs in quick mode and returns the keys its issue promises.

No timing is asserted here: figures are measured by `cona bench ...`, not by tests.
Each benchmark's own correctness checks (e.g. the counter equals the number of
transactions sent) run inside it, so a benchmark that measures nothing fails.
"""

from __future__ import annotations

import importlib

import pytest

from bench.gas import TRANSITIONS

pytestmark = pytest.mark.bench

PROMISED = {
    "chain": {"embedded_tx_per_s", "anvil_tx_per_s", "anvil_batched_tx_per_s", "anvil_p50_ms", "anvil_p99_ms",
              "anvil_web3_transact_tx_per_s", "lifecycle_per_s", "lifecycle_tx_per_order"},
    "gas": {f"eth.{key}" for key, _ in TRANSITIONS} | {"eth.lifecycle"},
    "durable": {"durable_append_ms", "tx_ms_memory", "tx_ms_durable", "batch_tx_ms_durable", "replay_ms_per_block",
                "replay_s", "checkpoint_mib", "start_from_checkpoint_s", "anvil_state_sent",
                "order_to_lease_ms_p50_durable"},
}


@pytest.mark.parametrize("name", sorted(PROMISED))
def test_benchmark_runs_and_reports_its_keys(name: str):
    module = importlib.import_module(f"bench.{name}")
    figures = module.run(quick=True)
    missing = PROMISED[name] - set(figures)
    assert not missing, f"bench {name} lacks {sorted(missing)}"
    for key in PROMISED[name]:
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])


def test_gas_table_renders_every_transition():
    from bench.gas import LIFECYCLE, render_markdown, run

    figures = run(quick=True)
    table = render_markdown(figures)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len(TRANSITIONS) and "gas (ERC-20)" not in table
    assert figures["eth.lifecycle"] == sum(figures[f"eth.{k}"] for k in LIFECYCLE)
    assert f"{figures['eth.settle']:,}" in table
