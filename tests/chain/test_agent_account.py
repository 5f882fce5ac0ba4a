"""``cona-agent`` account commands through typer's CliRunner against a real anvil node:
init, register (from a real hardware profile), stake, status, pause/resume, unbond, withdraw,
and the chain's refusals shown as one decoded line with exit status 2.

Runs on anvil only: the agent talks JSON-RPC to a URL, as a contributor's would.
"""

from __future__ import annotations

import json

import pytest
from eth_utils import keccak
from typer.testing import CliRunner

from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market, deployment_path
from marketplace.chain.market import Market, wait_until
from marketplace.settings import PACKAGE_ROOT, ProjectConfig
from provider_agent import probe
from provider_agent.cli import app

pytestmark = pytest.mark.rpc

ETH = 10**18
PRICE = 36 * 10**14
PROFILE = PACKAGE_ROOT / "provider_agent" / "profiles" / "h100-server"


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    project = ProjectConfig.load(PACKAGE_ROOT)
    state = tmp_path_factory.mktemp("market")
    chain = Chain(AnvilBackend(project.root, project.mnemonic, accounts=10), project)
    dep = deploy_market(chain, state_dir=state, params=MarketParams(min_stake=ETH, unbonding_period=3600))
    yield chain, Market.from_deployment(chain, dep), deployment_path(state, dep.chain_id)
    chain.close()


@pytest.fixture
def agent(market, tmp_path):
    chain, mk, dep_file = market
    provider = chain.signers[3]
    (tmp_path / "key").write_text(bytes(chain.backend.accounts[3].key).hex())
    (tmp_path / "pass").write_text("correct horse battery staple\n")
    common = ["--keystore", str(tmp_path / "ks.json"), "--passphrase-file", str(tmp_path / "pass")]
    chain_opts = ["--rpc-url", chain.backend.url, "--deployment", str(dep_file), "--state-dir", str(tmp_path / "st")]
    runner = CliRunner()

    def cli(*args, ok=True):
        res = runner.invoke(app, list(args), catch_exceptions=False)
        if ok:
            assert res.exit_code == 0, res.stderr + res.stdout
        else:
            assert res.exit_code == 2, res.stdout
        return res

    return chain, mk, provider, common, chain_opts, cli


def _json(res):
    return json.loads(res.stdout)


def test_account_lifecycle(agent):
    chain, mk, provider, common, opts, cli = agent
    key_file = common[1].replace("ks.json", "key")
    out = _json(cli("init", *common, "--import-key-file", key_file, "--light", "--json"))
    assert out["address"] == provider.address
    again = cli("init", *common, "--light", ok=False)
    assert "already exists" in again.stderr

    # the chain says no: one decoded line, exit 2, with a hint
    low = cli("register", *common, *opts, "--profile", str(PROFILE), "--domain", "7", "--attachment", "n1",
              "--price", f"gpu={PRICE}", "--stake", str(ETH // 2), ok=False)
    assert "StakeTooLow" in low.stderr and "hint:" in low.stderr and len(low.stderr.strip().splitlines()) == 1

    reg = _json(cli("register", *common, *opts, "--profile", str(PROFILE), "--domain", "7", "--attachment", "n1",
                    "--price", f"gpu={PRICE}", "--price", "cpu=1000", "--stake", str(2 * ETH), "--json"))
    digest = probe.discover_dump(PROFILE).descriptor.digest()
    assert reg["hardware"] == "0x" + digest.hex()

    status_opts = ["--keystore", common[1], "--rpc-url", opts[1], "--deployment", opts[3]]
    st = _json(cli("status", *status_opts, "--json"))
    assert st["status"] == "active" and st["stake"] == str(2 * ETH) and st["hardware"] == "0x" + digest.hex()
    assert st["prices"]["gpu"] == str(PRICE) and st["prices"]["cpu"] == "1000" and st["domain"] == 7
    assert chain.backend.request("eth_getBalance", [provider.address, "latest"])  # sanity: funded dev account
    assert mk.registry.provider(provider.address).metadata == keccak(b"n1")

    assert _json(cli("stake", *common, *opts, "--amount", str(ETH), "--json"))["stake"] == str(3 * ETH)
    cli("pause", *common, *opts)
    twice = cli("pause", *common, *opts, ok=False)
    assert "WrongStatus" in twice.stderr
    cli("resume", *common, *opts)

    # a live lease: the orchestrator assigns a buyer's order to the provider
    buyer, orchestrator = chain.signers[6], chain.signers[1]
    it = mk.intent(buyer.address, requirement=keccak(b"spec"), device_class=2, units=1, duration=60,
                   max_price=PRICE)
    mk.deposit(buyer, it.escrow())
    order = mk.place(buyer, it)
    mk.assign(orchestrator, order, provider.address, PRICE)
    assert _json(cli("status", *status_opts, "--json"))["live_leases"] == 1

    nothing = cli("withdraw", *common, *opts, ok=False)
    assert "nothing to withdraw" in nothing.stderr

    begun = _json(cli("unbond", *common, *opts, "--json"))
    early = cli("unbond", *common, *opts, "--finish", ok=False)
    assert "StillBonded" in early.stderr
    wait_until(mk, begun["unbond_at"] + 1)
    live = cli("unbond", *common, *opts, "--finish", ok=False)
    assert "LiveLeases" in live.stderr and "leases end" in live.stderr
    mk.cancel(buyer, order)  # the lease ends
    done = _json(cli("unbond", *common, *opts, "--finish", "--json"))
    assert done["released"] == str(3 * ETH)
    before = int(chain.backend.request("eth_getBalance", [provider.address, "latest"]), 16)
    out = _json(cli("withdraw", *common, *opts, "--json"))
    assert out["registry"] == str(3 * ETH) and out["market"] == "0"
    after = int(chain.backend.request("eth_getBalance", [provider.address, "latest"]), 16)
    assert 3 * ETH - 10**16 < after - before <= 3 * ETH  # the stake back, less gas
    st = _json(cli("status", *status_opts, "--json"))
    assert st["status"] == "exited" and st["withdrawable_registry"] == "0"


def test_wrong_passphrase_and_missing_market_are_clear(agent, tmp_path):
    chain, mk, provider, common, opts, cli = agent
    cli("init", *common, "--light")
    (tmp_path / "wrong").write_text("nope\n")
    bad = cli("stake", "--keystore", common[1], "--passphrase-file", str(tmp_path / "wrong"), *opts,
              "--amount", "1", ok=False)
    assert "wrong passphrase" in bad.stderr
    nowhere = cli("pause", *common, "--rpc-url", opts[1], ok=False)
    assert "--engine URL or --deployment FILE" in nowhere.stderr
