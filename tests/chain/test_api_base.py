"""The API's base: problem details, health, metrics, and the chain served as JSON-RPC at /rpc."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain


@pytest.fixture(scope="module")
def embedded(project):
    ch = Chain(EmbeddedBackend(project.mnemonic, 3), project)
    yield ch
    ch.close()


@pytest.fixture
def client(embedded):
    with TestClient(create_app(ApiState(chain=embedded, deployment={"contracts": {}}))) as client:
        yield client


def test_health_and_readiness(client, embedded):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["chain_id"] == embedded.backend.chain_id


def test_not_ready_without_a_deployment_is_a_problem_detail(embedded):
    with TestClient(create_app(ApiState(chain=embedded))) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"] == "/problems/not-ready"


def test_rpc_single_and_batch_keep_ids(client, embedded):
    one = client.post("/rpc", json={"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []}).json()
    assert one == {"jsonrpc": "2.0", "id": 7, "result": hex(embedded.backend.chain_id)}
    batch = client.post("/rpc", json=[
        {"jsonrpc": "2.0", "id": "a", "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": "b", "method": "eth_noSuchThing", "params": []},
        {"jsonrpc": "2.0", "id": "c"},
    ]).json()
    assert [b["id"] for b in batch] == ["a", "b", "c"]
    assert batch[0]["result"].startswith("0x")
    assert batch[1]["error"]["code"] == -32601
    assert batch[2]["error"]["code"] == -32600


def test_rpc_parse_error(client):
    resp = client.post("/rpc", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.json()["error"]["code"] == -32700


def test_web3_can_use_rpc_as_a_node(client, embedded):
    """A raw signed transaction sent through /rpc lands on the embedded chain."""
    from marketplace.chain.writer import Signer

    signer = Signer(embedded.backend.accounts[1].key)
    nonce = int(client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount",
                                          "params": [signer.address, "latest"]}).json()["result"], 16)
    raw, tx_hash = signer.sign_1559(chain_id=embedded.backend.chain_id, nonce=nonce, tip=10**9, max_fee=10**10,
                                    gas=21_000, to="0x000000000000000000000000000000000000dEaD", value=5, data=b"")
    sent = client.post("/rpc", json={"jsonrpc": "2.0", "id": 2, "method": "eth_sendRawTransaction",
                                     "params": ["0x" + raw.hex()]}).json()
    assert sent["result"] == tx_hash
    receipt = embedded.backend.request("eth_getTransactionReceipt", [tx_hash])
    assert int(receipt["status"], 16) == 1


def test_metrics_count_requests(client):
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'cona_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_unknown_route_is_a_problem_detail(client):
    resp = client.get("/v1/nope")
    assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
