"""``cona audit`` from a fresh process, with no engine: the history comes from the chain alone.

An anvil node is started, the market deployed (its record written to a temporary state
directory), one order driven through its whole lifecycle by the typed clients, and the
clients closed. Then the auditor runs as a separate Python process that knows only the
RPC URL and the state directory, and its JSON is checked against the receipts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import keccak
from typer.testing import CliRunner

from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, wait_until
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

pytestmark = pytest.mark.e2e

ETH = 10**18
PRICE = 36 * 10**14
RESULT = keccak(b"result")
BATCH = keccak(b"cli-batch")  # the matching batch that assigns the order


def _wired() -> bool:
    from marketplace.cli.main import app

    return any(g.name == "audit" for g in app.registered_groups)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """A market on a fresh anvil with one settled order, assigned by matching batch ``BATCH``;
    yields (url, state dir, order id, tx hashes, market)."""
    project = ProjectConfig.load(PACKAGE_ROOT)
    state = tmp_path_factory.mktemp("state")
    chain = Chain(AnvilBackend(project.root, project.mnemonic, accounts=10), project)
    try:
        dep = deploy_market(chain, state_dir=state, params=MarketParams(min_stake=ETH, dispute_window=300))
        market = Market.from_deployment(chain, dep)
        s = chain.signers
        orchestrator, provider, buyer = s[1], s[3], s[6]
        market.registry.register(provider, hardware=keccak(b"gpu"), domain=1, prices=[PRICE] * 4, stake=2 * ETH)
        it = market.intent(buyer.address, requirement=keccak(b"req"), device_class=2, units=1, duration=3600,
                           max_price=PRICE)
        market.deposit(buyer, it.escrow())
        txs = [market.place_signed(orchestrator, it, market.sign(buyer, it))]
        oid = txs[0].event("OrderPlaced").args["order"]
        txs.append(market.assign_batch(orchestrator, BATCH, keccak(b"in"), keccak(b"out"),
                                       [(oid, provider.address, PRICE, ())]))
        txs.append(market.accept(provider, oid))
        wait_until(market, market.order(oid).started_at + 1800)
        txs.append(market.complete(provider, oid, RESULT, 1800))
        wait_until(market, market.order(oid).completed_at + 300)
        txs.append(market.settle(buyer, oid))
        market.withdraw(provider)
        yield chain.backend.url, state, oid, [t.tx_hash for t in txs], dep
    finally:
        chain.close()


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONA_")}
    env["CONA_DATA_DIR"] = str(state)
    return env


def _check_history(body: dict, oid: int, hashes: list[str]) -> None:
    assert body["order"] == oid and body["state"] == "SETTLED" and body["consistent"] is True
    assert [t["event"] for t in body["transitions"]] == ["OrderPlaced", "Assigned", "Accepted", "Completed", "Settled"]
    assert [t["tx_hash"] for t in body["transitions"]] == hashes
    blocks = [t["block"] for t in body["transitions"]]
    assert blocks == sorted(blocks) and all(t["timestamp"] > 0 for t in body["transitions"])
    assert int(body["money"]["paid"]) == 1800 * PRICE // 3600


def test_audit_order_from_a_fresh_process(lifecycle):
    url, state, oid, hashes, _ = lifecycle
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.audit", "order", str(oid), "--json",
                           "--rpc-url", url], cwd=PACKAGE_ROOT, env=_env(state), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    _check_history(json.loads(proc.stdout), oid, hashes)
    assert list((state / "index").glob("audit-*.sqlite")), "the index is kept for the next audit"
    # escrow and provider, in another fresh process each, reusing the persisted index
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.audit", "escrow", "--json", "--rpc-url", url],
                          cwd=PACKAGE_ROOT, env=_env(state), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["balanced"] is True


def test_unknown_order_is_a_one_line_error(lifecycle):
    url, state, _, _, _ = lifecycle
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.audit", "order", "999", "--rpc-url", url],
                          cwd=PACKAGE_ROOT, env=_env(state), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no order 999" in proc.stderr and "Traceback" not in proc.stderr


def test_audit_sub_app_in_process_with_tables_and_market_option(lifecycle, monkeypatch):
    url, state, oid, hashes, dep = lifecycle
    monkeypatch.setenv("CONA_DATA_DIR", str(state))
    from marketplace.cli.audit import audit_app

    runner = CliRunner()
    res = runner.invoke(audit_app, ["order", str(oid), "--json", "--rpc-url", url, "--no-cache",
                                    "--market", dep.contracts["ComputeMarket"]])
    assert res.exit_code == 0, res.output
    _check_history(json.loads(res.stdout), oid, hashes)
    res = runner.invoke(audit_app, ["provider", dep.roles["operator"], "--rpc-url", url])
    assert res.exit_code != 0  # the operator never registered as a provider
    provider = json.loads(runner.invoke(audit_app, ["order", str(oid), "--json", "--rpc-url", url]).stdout)["provider"]
    res = runner.invoke(audit_app, ["provider", provider, "--rpc-url", url])
    assert res.exit_code == 0, res.output
    assert "Settled" in res.stdout and "leases" in res.stdout
    res = runner.invoke(audit_app, ["escrow", "--rpc-url", url])
    assert res.exit_code == 0 and "balanced" in res.stdout


def test_audit_batch_table_json_and_refusals(lifecycle, monkeypatch):
    url, state, oid, hashes, dep = lifecycle
    monkeypatch.setenv("CONA_DATA_DIR", str(state))
    from marketplace.cli.audit import audit_app

    runner = CliRunner()
    res = runner.invoke(audit_app, ["batch", "0x" + BATCH.hex(), "--json", "--rpc-url", url, "--no-cache"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["batch"] == "0x" + BATCH.hex() and body["tx_hash"] == hashes[1] and body["consistent"] is True
    assert body["orders"] == 1 and [a["order"] for a in body["assignments"]] == [oid]
    assert body["inputs_hash"] == "0x" + keccak(b"in").hex() and body["decisions_hash"] == "0x" + keccak(b"out").hex()
    res = runner.invoke(audit_app, ["batch", "0x" + BATCH.hex(), "--rpc-url", url], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "1 orders assigned" in res.stdout and "agree with the contract's record" in res.stdout
    order = json.loads(runner.invoke(audit_app, ["order", str(oid), "--json", "--rpc-url", url]).stdout)
    assert order["batch"] == "0x" + BATCH.hex()
    for bad, says in (("0x1234", "batch_id must be 32 bytes"), ("0x" + keccak(b"nope").hex(), "no batch")):
        proc = subprocess.run([sys.executable, "-m", "marketplace.cli.audit", "batch", bad, "--rpc-url", url],
                              cwd=PACKAGE_ROOT, env=_env(state), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(not _wired(), reason="`cona audit` is not wired into marketplace/cli/main.py yet")
def test_cona_audit_order_as_a_subprocess(lifecycle):
    url, state, oid, hashes, _ = lifecycle
    cona = PACKAGE_ROOT / ".venv" / "bin" / "cona"
    cmd = [str(cona)] if cona.exists() else [sys.executable, "-m", "marketplace.cli.main"]
    proc = subprocess.run([*cmd, "audit", "order", str(oid), "--json", "--rpc-url", url], cwd=PACKAGE_ROOT,
                          env=_env(state), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _check_history(json.loads(proc.stdout), oid, hashes)
