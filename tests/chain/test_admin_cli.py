"""``cona admin``: the operator's changes go through the timelock, from the command line, against a real host."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from marketplace.cli.admin import admin_app
from marketplace.errors import InputError, Rejected, TransactionReverted
from marketplace.host import Host, HostConfig
from marketplace.settings import ConaSettings

pytestmark = pytest.mark.chain


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    h = Host(ConaSettings(chain="embedded", data_dir=tmp_path_factory.mktemp("admin")), HostConfig(port=0)).start()
    yield h
    h.stop()


def _invoke(host, *args: str):
    return CliRunner().invoke(admin_app, [*args, "--api", host.api_url, "--json"])


def _ok(host, *args: str) -> dict:
    result = _invoke(host, *args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_new_terms_apply_through_the_timelock_and_orders_keep_theirs(host):
    market = host.engine.market
    before = market.terms()
    doc = _ok(host, "terms", "--fee-bps", "150", "--dispute-window", "600", "--dev-account", "0")
    assert doc["applied"] and doc["operation"].startswith("0x") and "setSettings" in doc["change"]
    after = market.terms()
    assert (after.fee_bps, after.dispute_window, after.accept_window) == (150, 600, before.accept_window)
    assert market.terms(1) == before  # the version orders placed before still run under


def test_an_orchestrator_key_is_added_and_revoked(host):
    market = host.engine.market
    newcomer = host.chain.signers[9].address
    _ok(host, "orchestrator", newcomer, "--dev-account", "0")
    assert market.is_orchestrator(newcomer)
    _ok(host, "orchestrator", newcomer, "--revoke", "--dev-account", "0")
    assert not market.is_orchestrator(newcomer)


def test_the_least_stake_changes_through_the_timelock(host):
    _ok(host, "min-stake", str(2 * 10**18), "--dev-account", "0")
    assert host.engine.market.registry.min_stake == 2 * 10**18


@pytest.mark.parametrize("args, error", [
    (("terms", "--dev-account", "0"), InputError),  # nothing to change
    (("terms", "--arbiter", "0x1234", "--dev-account", "0"), InputError),
    (("orchestrator", "not-an-address", "--dev-account", "0"), InputError),
    (("terms", "--fee-bps", "150"), InputError),  # no signer named
    (("terms", "--fee-bps", "5000", "--dev-account", "0"), TransactionReverted),  # above MAX_FEE_BPS
    (("terms", "--fee-bps", "100000", "--dev-account", "0"), InputError),  # not even a uint16
    (("orchestrator", "0x" + "11" * 20, "--dev-account", "5"), TransactionReverted),  # not the timelock's proposer
])
def test_bad_changes_are_refused_with_a_reason(host, args, error):
    result = _invoke(host, *args)
    assert isinstance(result.exception, error), (result.exception, result.output)


def test_a_development_account_is_refused_off_a_development_chain(host, monkeypatch):
    monkeypatch.setattr("marketplace.cli.remote.DEV_CHAIN_IDS", {})  # the chain the host runs is then no dev chain
    before = host.engine.market.terms()
    result = _invoke(host, "terms", "--fee-bps", "120", "--dev-account", "0")
    assert isinstance(result.exception, Rejected) and result.exception.reason == "not-a-dev-chain", result.output
    assert host.engine.market.terms() == before


# -- the auditor's view of the same changes -------------------------------------------------


def _governance(host, *extra: str) -> tuple[int, dict]:
    from marketplace.cli.audit import audit_app

    result = CliRunner().invoke(audit_app, ["governance", "--rpc-url", f"{host.api_url}/rpc", "--market",
                                            host.engine.market.address, "--no-cache", "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def test_the_auditor_sees_every_change_the_operator_made_and_the_contracts_agree(host):
    market = host.engine.market
    _ok(host, "terms", "--fee-bps", "175", "--dev-account", "0")
    _ok(host, "orchestrator", "0x" + "42" * 20, "--dev-account", "0")
    _ok(host, "orchestrator", "0x" + "42" * 20, "--revoke", "--dev-account", "0")
    _ok(host, "min-stake", str(3 * 10**18), "--dev-account", "0")
    code, doc = _governance(host)
    assert code == 0 and doc["consistent"] and doc["mismatches"] == [], doc
    assert doc["admin"] == market.timelock.address and doc["admin_delay"] == 0
    versions = [t["version"] for t in doc["terms"]]
    assert versions == list(range(1, market.contract.call("termsVersion") + 1))  # every version, from the first
    assert doc["terms"][-1]["terms"]["fee_bps"] == 175
    assert doc["orchestrators"]["0x" + "42" * 20] is False
    assert doc["orchestrators"][host.engine.orchestrator.address] is True
    events = [c["event"] for c in doc["changes"]]
    assert events.count("SettingsChanged") == len(versions) and "SettingChanged" in events
    blocks = [(c["block"], c["log_index"]) for c in doc["changes"]]
    assert blocks == sorted(blocks)


def test_an_audit_that_missed_the_changes_says_so(host):
    """Indexed from a later block, the events no longer explain the contracts' state: named, exit 1."""
    head = host.engine.market.chain.backend.block_number()
    code, doc = _governance(host, "--from-block", str(head))
    assert code == 1 and not doc["consistent"]
    assert any("termsVersion" in m for m in doc["mismatches"]), doc["mismatches"]
