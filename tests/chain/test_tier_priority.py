"""A VIP tier buys priority in the engine's queue, through a zero-knowledge proof the chain accepted.

One provider with a single GPU (the Tesla T4 profile, a real `nvidia-smi -q -x` capture) and two
buyers who want it: a tier-0 buyer who ordered first and a tier-2 buyer who proves membership of
the committed tier-2 group (a bLSAG ring signature, verified by the TierGate on chain). The engine
reads each order's tier from the chain, never from the buyer's word, and serves tier 2 first; the
tier-0 order waits for capacity instead of being refused. The same proof cannot buy a second order.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, OrderState
from marketplace.chain.tiergate import TierGateClient
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.convergence.lsdb import Outcome
from marketplace.engine.service import Engine
from marketplace.engine.spec import spec_digest
from marketplace.engine.errors import PlacementRefused
from marketplace.resources.model import DeviceClass
from marketplace.settings import ProjectConfig
from provider_agent.probe import discover_dump
from zk import TierGroup, generate_key, prove_tier

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
T4 = ROOT / "provider_agent" / "profiles" / "t4-node"
ETH = 10**18
PRICE = 36 * 10**14
GPU = int(DeviceClass.GPU)
PROVIDER, BASIC, VIP = 3, 6, 7  # dev account indices
TIER = 2


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    project = ProjectConfig.load(ROOT)
    chain = Chain(EmbeddedBackend(project.mnemonic, 10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, unbonding_period=3600, accept_window=30,
                                                   dispute_window=60))
    m = Market.from_deployment(chain, dep)
    gate = TierGateClient.at(chain, m.contract.call("tierGate"))
    rng = random.Random(2026)
    credentials = [generate_key(rng) for _ in range(4)]
    group = TierGroup.build(TIER, gate.current_epoch(), [c.public_key() for c in credentials], slots=2)
    gate.commit_group(chain.signers[0], group)

    descriptor = discover_dump(T4).descriptor
    assert descriptor.device_count(DeviceClass.GPU) == 1
    signer = chain.signers[PROVIDER]
    m.registry.register(signer, hardware=descriptor.digest(), domain=1, prices=[PRICE] * 4, stake=2 * ETH)
    engine = Engine(chain, dep, topology=TOPOLOGY, state_dir=tmp_path_factory.mktemp("engine"))
    lsa = encode_lsa(descriptor, [Availability(DeviceClass.GPU, 1000, 0)], [(DeviceClass.GPU, PRICE)], 1, "3",
                     sequence=1, lifetime=3600, key=bytes(chain.backend.accounts[PROVIDER].key))
    assert engine.submit_lsa(lsa).outcome == Outcome.INSTALLED
    yield chain, m, gate, group, credentials[1], engine
    engine.close()
    chain.close()


def _spec() -> dict:
    return {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 3600},
            "workload": {"module": "sha256", "input": "6869", "fuel": 10**6}, "attachment": "1"}


def _signed(m: Market, signer, *, tier: int = 0):
    spec = _spec()
    it = m.intent(signer.address, requirement=spec_digest(spec), device_class=GPU, units=1, duration=3600,
                  max_price=PRICE, tier=tier)
    if m.balance(signer.address) < it.escrow():
        m.deposit(signer, 4 * it.escrow())
    return it, m.sign(signer, it), spec


def test_tier_two_is_served_before_an_earlier_tier_zero_order_and_its_proof_is_single_use(market):
    chain, m, gate, group, credential, engine = market
    basic, vip = chain.signers[BASIC], chain.signers[VIP]

    it0, sig0, spec = _signed(m, basic)
    first = engine.place_order(it0, sig0, spec)  # tier 0, placed first

    it2, sig2, spec = _signed(m, vip, tier=TIER)
    statement = gate.statement(TIER, m.digest(it2), vip.address)
    proof = prove_tier(credential, group, statement, gate.free_slot(credential, TIER))
    second = engine.place_order(it2, sig2, spec, tier_proof=proof)
    assert m.order(second).tier == TIER and m.order(first).tier == 0  # the chain accepted the proof

    engine.step()
    assert m.order(second).state == OrderState.ASSIGNED
    assert m.order(second).provider == chain.signers[PROVIDER].address
    # the one GPU went to tier 2; the tier-0 order waits for capacity, it is not refused
    assert m.order(first).state == OrderState.OPEN
    assert engine.order_view(first)["engine"]["status"] not in ("refused", "assigned")

    # the same proof cannot buy a second order (another intent digest), and nothing is placed
    it3, sig3, spec = _signed(m, vip, tier=TIER)
    orders_before = m.contract.call("orderCount")
    with pytest.raises(PlacementRefused) as info:  # found by the simulation: nothing is sent
        engine.place_order(it3, sig3, spec, tier_proof=proof)
    assert info.value.error == "InvalidRingSignature" and info.value.fields["field"] == "tier_proof"
    assert m.contract.call("orderCount") == orders_before
    assert m.nonce(vip.address) == it3.nonce



def test_the_web_api_takes_a_tier_proof_with_an_order(market):
    from contextlib import ExitStack

    from fastapi.testclient import TestClient

    from marketplace.api.app import ApiState, create_app

    chain, m, gate, group, credential, engine = market
    snap = chain.backend.snapshot()
    stack = ExitStack()
    try:
        client = stack.enter_context(TestClient(create_app(ApiState(chain=chain, deployment={}, engine=engine))))
        vip = chain.signers[VIP]
        it, sig, spec = _signed(m, vip, tier=TIER)
        proof = prove_tier(credential, group, gate.statement(TIER, m.digest(it), vip.address),
                           gate.free_slot(credential, TIER))
        body = {"intent": it.to_dict(), "signature": "0x" + sig.hex(), "spec": spec, "tier_proof": "0x" + proof.hex()}
        r = client.post("/v1/orders", json=body, headers={"Idempotency-Key": "vip-1"})
        assert r.status_code == 201, r.text
        assert m.order(r.json()["id"]).tier == TIER
        # the proof bound to that order is refused for another one, as a problem detail naming the error
        other, sig2, _ = _signed(m, vip, tier=TIER)
        r = client.post("/v1/orders", json={**body, "intent": other.to_dict(), "signature": "0x" + sig2.hex()})
        assert r.status_code == 422 and r.json()["error"] == "InvalidRingSignature"
        assert r.json()["field"] == "tier_proof"
    finally:
        stack.close()
        chain.backend.revert(snap)
        chain.writer.forget_nonces()
