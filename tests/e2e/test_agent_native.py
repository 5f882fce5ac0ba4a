"""The native runtime through the daemon, as real processes against anvil: an agent that did
not opt in refuses a native order (never accepts it), the acceptance timeout hands it to the
backup, which opted in with ``--native-program`` and serves it; a native run that hits its CPU
limit is completed and billed as such.

Reuses ``test_agent_daemon``'s engine test double and agent process wrapper; the market is
deployed here with a short acceptance window so the refusal plays out in seconds.
"""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import keccak

from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, OrderState, wait_until
from marketplace.engine.spec import Spec
from marketplace.settings import PACKAGE_ROOT, ProjectConfig
from provider_agent.journal import Journal
from tests.e2e.test_agent_daemon import ETH, PRICE, AgentProc, EngineDouble, _provider_txs, _settled, _until

pytestmark = pytest.mark.e2e

ACCEPT_WINDOW = 30  # the contract's least (two L1 blocks and more); the test moves the chain's clock past it
NATIVE_ARGS = ["--native-program", "sha256sum=/usr/bin/sha256sum",
               "--native-program", "spin=/usr/bin/python3 -c 'while True: pass'",
               "--native-limits", "cpu=5,mem=256,files=32,wall=20"]


@pytest.fixture(scope="module")
def world():
    project = ProjectConfig.load(PACKAGE_ROOT)
    chain = Chain(AnvilBackend(project.root, project.mnemonic, accounts=10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, accept_window=ACCEPT_WINDOW, dispute_window=60))
    market = Market.from_deployment(chain, dep)
    engine = EngineDouble(dep, market)
    yield chain, market, engine
    engine.close()
    chain.close()


def _place_native(chain: Chain, market: Market, engine: EngineDouble, provider: str, backups: list[str], *,
                  program: str, data: bytes, cpu_s: int) -> int:
    buyer, orchestrator = chain.signers[6], chain.signers[1]
    raw = {"requirement": {"device_class": "gpu", "count": 1}, "attachment": "n1",
           "workload": {"runtime": "native", "program": program, "input": data.hex(), "cpu_s": cpu_s}}
    it = market.intent(buyer.address, requirement=Spec.from_dict(raw).digest(), device_class=2, units=1,
                       duration=600, max_price=PRICE)
    market.deposit(buyer, it.escrow())
    oid = market.place(buyer, it)
    engine.specs[oid] = raw
    market.assign(orchestrator, oid, provider, PRICE, backups)
    return oid


def test_native_order_refused_without_opt_in_then_served_by_the_backup(world, tmp_path):
    chain, market, engine = world
    (tmp_path / "plain").mkdir()
    (tmp_path / "native").mkdir()
    plain = AgentProc(chain, engine, 3, tmp_path / "plain")
    native = AgentProc(chain, engine, 4, tmp_path / "native")
    native.args += NATIVE_ARGS
    plain.start()
    native.start()
    try:
        for a in (plain, native):
            _until(lambda: market.registry.provider(a.address).status.name == "ACTIVE", 60, "registration", a)
        data = b"native bytes " * 100
        oid = _place_native(chain, market, engine, plain.address, [native.address], program="sha256sum", data=data,
                            cpu_s=2)
        # the agent that did not opt in fetches the spec, refuses it, and never accepts
        _until(lambda: "not offered here" in plain.log(), 30, "the refusal", plain)
        deadline = market.order(oid).accept_deadline
        assert market.state(oid) == OrderState.ASSIGNED
        # after the deadline anyone may time the acceptance out (the engine does; here the buyer)
        wait_until(market, deadline + 1)
        market.timeout_acceptance(chain.signers[6], oid)
        _settled(market, oid, native)
        order = market.order(oid)
        assert order.provider == native.address and order.usage == 1
        assert engine.results[oid] == b"ok\x00" + bytes(4) + hashlib.sha256(data).hexdigest().encode() + b"  -\n"
        assert order.result == keccak(engine.results[oid])
        assert "accept" not in [f for f, _ in _provider_txs(chain, market, plain.address)]
        refused = Journal(plain.tmp / "state").lease(oid)
        assert refused is not None and not refused.has("accepted") and not refused.has("spec")
        ran = Journal(native.tmp / "state").lease(oid).data("ran")
        assert ran["runtime"] == "native" and ran["status"] == "ok" and ran["cpu_ms"] < 1000
        assert not list((native.tmp / "state" / "native").iterdir())  # the private run directory is gone

        # a native run that hits its CPU limit is a result too: completed with that status, billed ~1 s
        spin = _place_native(chain, market, engine, native.address, [], program="spin", data=b"", cpu_s=1)
        _settled(market, spin, native)
        assert engine.results[spin].startswith(b"cpu-limit\x00") and market.order(spin).usage in (1, 2)
    finally:
        plain.stop()
        native.stop()
    assert plain.proc.returncode == 0 and native.proc.returncode == 0, native.log()[-3000:]
