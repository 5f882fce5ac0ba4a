"""Placing signed orders (``marketplace.engine.placing``): the operator pays only for orders that land.

On the embedded chain (where a failing transaction is refused by the node instead of mined) and
on anvil (where each group is simulated with ``eth_call`` first): an order the contract would
refuse gets a 4xx problem naming the contract's error and costs the orchestrator nothing (no
transaction, no block, no gas), leaves no spec on disk, and never fails the orders grouped with
it; a buyer's consecutive orders land together; an Idempotency-Key belongs to the buyer who
signed; an intent that landed before answers with its order; a spec staged for an order that
never landed is dropped at the next start, one whose order is on chain is kept.
"""

from __future__ import annotations

import time

from pathlib import Path

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, MarketParams, deploy_market
from marketplace.chain.market import Market
from marketplace.engine.errors import PlacementBusy, PlacementRefused
from marketplace.engine.orders import Status
from marketplace.engine.placing import Placement, Placer
from marketplace.engine.service import Engine, EngineConfig
from marketplace.engine.spec import Spec

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
ETH = 10**18
PRICE = 36 * 10**14
CHAINS = ["embedded", "anvil"]
_deployed: dict[str, Deployment] = {}


@pytest.fixture(scope="session")
def deployment(chain: Chain) -> Deployment:
    """One market per chain for the session (made before any test's snapshot)."""
    if chain.backend.name not in _deployed:
        _deployed[chain.backend.name] = deploy_market(chain, params=MarketParams(min_stake=ETH))
    return _deployed[chain.backend.name]


@pytest.fixture
def market(chain: Chain, deployment: Deployment, isolated):
    """The chain (embedded or anvil) and its market, each test isolated (snapshot, revert)."""
    return chain, deployment, Market.from_deployment(chain, deployment)


@pytest.fixture
def engine(market, tmp_path):
    chain, dep, _ = market
    eng = Engine(chain, dep, topology=TOPOLOGY, state_dir=tmp_path / "engine", config=EngineConfig())
    yield eng
    eng.close()


def spec(tag: str) -> Spec:
    return Spec.from_dict({"requirement": {"device_class": "gpu", "count": 1, "duration_s": 600},
                           "workload": {"module": "sha256", "input": tag.encode().hex(), "fuel": 10**6},
                           "attachment": "1"})


def signed(m: Market, buyer, s: Spec, *, deposit: bool = True, **kw):
    args = {"device_class": 2, "units": 1, "duration": 600, "max_price": PRICE, **kw}
    it = m.intent(buyer.address, requirement=s.digest(), **args)
    if deposit and it.escrow() and m.balance(buyer.address) < it.escrow():
        m.deposit(buyer, it.escrow() * 4)
    return it, m.sign(buyer, it)


def body(it, sig, s: Spec) -> dict:
    return {"intent": it.to_dict(), "signature": "0x" + sig.hex(), "spec": s.to_dict()}


def spent(chain: Chain, who: str) -> tuple[int, int, int]:
    """What the orchestrator has spent so far, and the chain's height: nonce, balance, block."""
    b = chain.backend
    return (int(b.request("eth_getTransactionCount", [who, "latest"]), 16),
            int(b.request("eth_getBalance", [who, "latest"]), 16), b.block_number())


def files(engine: Engine, settle_s: float = 10.0) -> list[str]:
    """The specs kept on disk, staged ones included, once the placer has put away its last group: it
    answers first and then keeps the specs and drops the staged copies (bounded wait, then as found)."""
    root = engine.state_dir / "specs"
    deadline = time.monotonic() + settle_s
    while (root / "staged.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("chain", CHAINS, indirect=True)
@pytest.mark.parametrize("case, status, error, field", [
    ("max price 0", 422, "InvalidOrder", "intent.max_price"),
    ("unfunded buyer", 402, "InsufficientDeposit", "intent.buyer"),
    ("nonce ahead", 409, "BadNonce", "intent.nonce"),
    ("deadline passed", 422, "IntentExpired", "intent.deadline"),
    ("tier without its proof", 422, "BadProofLength", "tier_proof"),
])
def test_an_order_the_contract_refuses_costs_the_operator_nothing_and_leaves_no_file(market, engine, case, status,
                                                                                      error, field):
    chain, dep, m = market
    buyer = chain.signers[6]
    s = spec(case)
    kw: dict = {}
    if case == "max price 0":
        kw = {"max_price": 0}
    elif case == "nonce ahead":
        kw = {"nonce": m.nonce(buyer.address) + 1}
    elif case == "deadline passed":
        kw = {"deadline": m.chain_time() - 1}
    elif case == "tier without its proof":
        kw = {"tier": 1}
    it, sig = signed(m, buyer, s, deposit=case != "unfunded buyer", **kw)
    orchestrator = dep.roles["orchestrator"]
    before = spent(chain, orchestrator)
    with TestClient(create_app(ApiState(chain=chain, deployment=dep.to_dict(), engine=engine))) as client:
        r = client.post("/v1/orders", json=body(it, sig, s), headers={"Idempotency-Key": case})
    assert r.status_code == status, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (problem["error"], problem["field"]) == (error, field), problem
    assert spent(chain, orchestrator) == before  # no transaction, no gas, not even a block
    assert files(engine) == []  # nothing of the refused order is kept
    assert m.order_count == 0


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_a_malleable_signature_is_refused_before_anything_is_sent(market, engine):
    chain, dep, m = market
    s = spec("high s")
    it, sig = signed(m, chain.signers[6], s)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high = sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]])
    before = spent(chain, dep.roles["orchestrator"])
    with TestClient(create_app(ApiState(chain=chain, deployment=dep.to_dict(), engine=engine))) as client:
        r = client.post("/v1/orders", json=body(it, high, s))
    assert r.status_code == 422 and r.json()["field"] == "signature" and "high s" in r.json()["detail"]
    assert spent(chain, dep.roles["orchestrator"]) == before


@pytest.mark.parametrize("chain", CHAINS, indirect=True)
def test_a_group_is_one_transaction_and_the_orders_at_fault_cost_the_others_nothing(market, engine):
    chain, dep, m = market
    a, b, c, d = chain.signers[6], chain.signers[7], chain.signers[8], chain.signers[9]
    placements = []
    for buyer, tag, kw in ((a, "a0", {}), (b, "b-unfunded", {"deposit": False}), (a, "a1", {}),
                           (d, "d-tier", {"tier": 1}), (c, "c0", {})):
        s = spec(tag)
        nonce = m.nonce(buyer.address) + sum(1 for p in placements if p.intent.buyer == buyer.address)
        it, sig = signed(m, buyer, s, nonce=nonce, **kw)
        placements.append(Placement(it, m.digest(it), sig, b"", s))
    before = spent(chain, dep.roles["orchestrator"])
    out = engine.desk.placer.place_now(placements)
    assert isinstance(out[1], PlacementRefused) and out[1].error == "InsufficientDeposit"
    # found only by the simulation (the screen does not model the tier gate): bisected out
    assert isinstance(out[3], PlacementRefused) and out[3].error == "BadProofLength"
    landed = [out[0], out[2], out[4]]
    assert all(isinstance(x, int) for x in landed) and sorted(landed) == [1, 2, 3], out
    nonce, _, _ = spent(chain, dep.roles["orchestrator"])
    assert nonce == before[0] + 1  # three orders, one transaction
    for oid, p in zip(landed, (placements[0], placements[2], placements[4])):
        assert m.order(oid).buyer == p.intent.buyer and m.order(oid).requirement == p.spec.digest()


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_a_buyers_consecutive_orders_land_together_and_their_escrows_add_up(market, engine):
    chain, _, m = market
    buyer = chain.signers[7]
    n = m.nonce(buyer.address)
    placements = []
    for k in range(3):
        s = spec(f"seq {k}")
        it, sig = signed(m, buyer, s, deposit=False, nonce=n + k)
        placements.append(Placement(it, m.digest(it), sig, b"", s))
    m.deposit(buyer, 2 * placements[0].intent.escrow())  # enough for two of the three
    out = engine.desk.placer.place_now(list(reversed(placements)))  # in any order: taken by nonce
    assert [isinstance(x, int) for x in out] == [False, True, True]
    assert out[0].error == "InsufficientDeposit" and out[0].error_args["available"] == 0
    assert m.nonce(buyer.address) == n + 2 and m.balance(buyer.address) == 0


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_an_idempotency_key_belongs_to_the_buyer_and_a_retried_intent_answers_with_its_order(market, engine):
    chain, dep, m = market
    a, b = chain.signers[6], chain.signers[7]
    with TestClient(create_app(ApiState(chain=chain, deployment=dep.to_dict(), engine=engine))) as client:
        mine = body(*signed(m, a, spec("a")), spec("a"))
        r = client.post("/v1/orders", json=mine, headers={"Idempotency-Key": "k"})
        assert r.status_code == 201, r.text
        first = r.json()["id"]
        # another buyer's "k" is its own key: its own order, neither a conflict nor a's order
        theirs = body(*signed(m, b, spec("b")), spec("b"))
        r = client.post("/v1/orders", json=theirs, headers={"Idempotency-Key": "k"})
        assert r.status_code == 201 and r.json()["id"] != first, r.text
        # a's "k" again: the same order; with another of a's orders: a conflict
        assert client.post("/v1/orders", json=mine, headers={"Idempotency-Key": "k"}).json()["id"] == first
        other = body(*signed(m, a, spec("a2")), spec("a2"))
        r = client.post("/v1/orders", json=other, headers={"Idempotency-Key": "k"})
        assert r.status_code == 409 and r.json()["field"] == "Idempotency-Key"
        # the same intent again without a key (an answer lost on the way): the order it placed
        r = client.post("/v1/orders", json=mine)
        assert r.status_code == 201 and r.json()["id"] == first, r.text
    assert m.order_count == 2
    assert files(engine) == sorted(f"0x{s.digest().hex()}.json" for s in (spec("a"), spec("b")))


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_a_start_keeps_the_staged_spec_of_an_order_on_chain_and_drops_the_others(market, tmp_path):
    chain, dep, m = market
    buyer = chain.signers[6]
    state = tmp_path / "engine"
    first = Engine(chain, dep, topology=TOPOLOGY, state_dir=state)
    # the engine stopped between the block and the spec's move: staged, and on chain
    landed = spec("landed")
    it, sig = signed(m, buyer, landed)
    first.store.stage_specs([(m.digest(it), landed)])
    oid = int(m.place_signed(first.orchestrator, it, sig).event("OrderPlaced").args["order"])
    # and one that never landed
    lost = spec("lost")
    it2, _ = signed(m, buyer, lost, nonce=it.nonce + 1)
    first.store.stage_specs([(m.digest(it2), lost)])
    first.close()
    again = Engine(chain, dep, topology=TOPOLOGY, state_dir=state)
    try:
        assert files(again) == [f"0x{landed.digest().hex()}.json"]
        assert again.spec_of(oid)["workload"]["input"] == b"landed".hex()
        assert again.orders[oid].status == Status.QUEUED
    finally:
        again.close()


def test_a_full_queue_answers_503_at_once(tmp_path):
    placer = Placer(market=None, orchestrator=None, keeper=None,  # type: ignore[arg-type]
                    find_placed=lambda digest: None, max_waiting=0)
    s = spec("busy")
    from marketplace.chain.intents import OrderIntent

    it = OrderIntent("0x" + "11" * 20, s.digest(), 2, 1, 600, PRICE, 0, 0, 2**40)
    with pytest.raises(PlacementBusy) as info:
        placer.place(Placement(it, keccak(b"x"), b"", b"", s))
    assert info.value.http_status == 503


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_the_embedded_chain_refuses_a_failing_send_and_charges_nothing(market):
    """``cona_sendRawTransactionIfSucceeds``: a transaction that would revert is refused (no block, no
    nonce, no fee), one that succeeds is mined as by ``eth_sendRawTransaction``; ``/rpc`` never relays it."""
    from marketplace.errors import TransactionReverted

    chain, dep, m = market
    orch = next(s for s in chain.signers if s.address == dep.roles["orchestrator"])
    buyer = chain.signers[7]
    s = spec("refused send")
    it, sig = signed(m, buyer, s, deposit=False)  # unfunded: the contract reverts InsufficientDeposit
    req = m.contract.request("placeSignedOrders", [it.as_tuple()], [sig], [b""], gas=600_000)
    before = spent(chain, orch.address)
    with pytest.raises(TransactionReverted) as info:
        chain.writer.transact_many(orch, [req], if_succeeds=True)
    assert info.value.error.endswith("InsufficientDeposit")
    assert spent(chain, orch.address) == before
    m.deposit(buyer, it.escrow())
    (receipt,) = chain.writer.transact_many(orch, [req], if_succeeds=True)
    assert receipt.ok and m.order_count == 1
    nonce, balance, block = spent(chain, orch.address)
    assert nonce == before[0] + 1 and balance < before[1] and block > before[2]
