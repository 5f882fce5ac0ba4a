"""The relay of buyer-signed cancel/dispute (``marketplace.api.relay``): only the owner's own
transaction, to the market, calling exactly the path's action on the path's order, is relayed."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.api.deps import get_relay_market
from marketplace.api.relay import SELECTORS, decode_signed_tx
from marketplace.chain.market import OrderState, wait_until
from marketplace.chain.writer import Signer
from tests.chain.market_env import PRICE

pytestmark = [pytest.mark.chain, pytest.mark.parametrize("chain", ["embedded", "anvil"], indirect=True)]


@pytest.fixture
def client(env):
    app = create_app(ApiState(chain=env.chain, deployment={"contracts": {}}))
    # the test market (its deployment record is not in ApiState)
    app.dependency_overrides[get_relay_market] = lambda: env.market
    with TestClient(app) as client:
        yield client


def signed(env, signer: Signer, *, action: str = "cancel", order_id: int, to: str | None = None, data: bytes | None = None,
           chain_id: int | None = None, gas: int = 200_000) -> str:
    """A raw type-2 transaction signed by ``signer`` (fixed gas: a doomed one is still signed and relayed)."""
    backend = env.chain.backend
    nonce = int(backend.request("eth_getTransactionCount", [signer.address, "pending"]), 16)
    if data is None:
        data = SELECTORS[action] + order_id.to_bytes(32, "big")
    raw, _ = signer.sign_1559(chain_id=backend.chain_id if chain_id is None else chain_id, nonce=nonce, tip=10**9,
                              max_fee=env.chain.writer.max_fee() * 2, gas=gas, to=to or env.market.address, value=0,
                              data=data)
    return "0x" + raw.hex()


def problem(resp, status: int, field: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["field"] == field, body
    return body


def test_decode_recovers_the_sender(env):
    buyer = env.buyers[0]
    raw = signed(env, buyer, order_id=7)
    tx = decode_signed_tx(bytes.fromhex(raw[2:]))
    assert tx.sender == buyer.address and tx.to == env.market.address and tx.tx_type == 2
    assert tx.data == keccak(b"cancel(uint256)")[:4] + (7).to_bytes(32, "big")
    assert tx.tx_hash == "0x" + keccak(bytes.fromhex(raw[2:])).hex()


def test_owner_cancels_through_the_api(env, client):
    buyer = env.buyers[0]
    oid = env.open_order(buyer)
    before = env.market.balance(buyer.address)
    escrow = env.market.order(oid).escrow
    resp = client.post(f"/v1/orders/{oid}/cancel", json={"raw_tx": signed(env, buyer, order_id=oid)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["state"] == "cancelled" and body["from"] == buyer.address
    (ev,) = [e for e in body["events"] if e["event"] == "Cancelled"]
    assert int(ev["args"]["refund"]) == escrow
    assert env.market.state(oid) == OrderState.CANCELLED
    assert env.market.balance(buyer.address) == before + escrow
    env.assert_balanced()


def test_someone_else_cannot_cancel(env, client):
    oid = env.open_order(env.buyers[0])
    resp = client.post(f"/v1/orders/{oid}/cancel", json={"raw_tx": signed(env, env.buyers[1], order_id=oid)})
    body = problem(resp, 403, "from")
    assert env.buyers[1].address in body["detail"]
    assert env.market.state(oid) == OrderState.OPEN  # nothing relayed


def test_wrong_selector_wrong_id_wrong_contract_wrong_chain(env, client):
    buyer = env.buyers[0]
    oid = env.open_order(buyer)
    url = f"/v1/orders/{oid}/cancel"
    problem(client.post(url, json={"raw_tx": signed(env, buyer, action="dispute", order_id=oid)}), 422,
            "data.selector")
    withdraw = keccak(b"withdraw(uint256)")[:4] + (1).to_bytes(32, "big")
    problem(client.post(url, json={"raw_tx": signed(env, buyer, order_id=oid, data=withdraw)}), 422, "data.selector")
    problem(client.post(url, json={"raw_tx": signed(env, buyer, order_id=oid + 1)}), 422, "data.order")
    problem(client.post(url, json={"raw_tx": signed(env, buyer, order_id=oid, to=env.registry.address)}), 422, "to")
    problem(client.post(url, json={"raw_tx": signed(env, buyer, order_id=oid, chain_id=1)}), 422, "chain_id")
    problem(client.post(url, json={"raw_tx": "0x02c0ffee"}), 422, "raw_tx")
    problem(client.post(url, json={"raw_tx": "not hex"}), 422, "raw_tx")
    problem(client.post("/v1/orders/999/cancel", json={"raw_tx": signed(env, buyer, order_id=999)}), 404,
            "order_id")
    assert env.market.state(oid) == OrderState.OPEN


def test_dispute_by_owner_and_the_decoded_custom_error(env, client):
    buyer, provider = env.buyers[0], env.providers[0]
    env.register(provider)
    oid = env.running_order(buyer, provider)
    # disputing a Running order: relayed, mined, reverted; the answer names the contract's error
    resp = client.post(f"/v1/orders/{oid}/dispute", json={"raw_tx": signed(env, buyer, action="dispute",
                                                                            order_id=oid)})
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["error"].endswith("WrongState") and body["tx_hash"].startswith("0x")
    env.complete(provider, oid, 60, keccak(b"result"))
    # a stranger's dispute is refused before it reaches the chain
    problem(client.post(f"/v1/orders/{oid}/dispute",
                        json={"raw_tx": signed(env, env.stranger, action="dispute", order_id=oid)}), 403, "from")
    resp = client.post(f"/v1/orders/{oid}/dispute", json={"raw_tx": signed(env, buyer, action="dispute",
                                                                            order_id=oid)})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "disputed"
    assert [e["event"] for e in resp.json()["events"]] == ["Disputed"]
    assert env.market.state(oid) == OrderState.DISPUTED


def test_dispute_after_the_window_is_the_contracts_error(env, client):
    buyer, provider = env.buyers[0], env.providers[0]
    env.register(provider)
    oid = env.running_order(buyer, provider, max_price=PRICE)
    env.complete(provider, oid, 60, keccak(b"result"))
    o = env.market.order(oid)
    wait_until(env.market, o.completed_at + 301)
    resp = client.post(f"/v1/orders/{oid}/dispute", json={"raw_tx": signed(env, buyer, action="dispute",
                                                                            order_id=oid)})
    assert resp.status_code == 409
    assert resp.json()["error"].endswith("DisputeWindowClosed")
