"""The development endpoints (``/dev/advance-time``, ``/dev/fund``): on a development chain, from
loopback only, never through ``/rpc``, absent elsewhere; ``cona dev`` uses them."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.contracts import Chain
from marketplace.settings import DEV_CHAIN_IDS

pytestmark = pytest.mark.chain

LOCAL, REMOTE = ("127.0.0.1", 40000), ("203.0.113.7", 40000)
WHO = to_checksum_address("0x00000000000000000000000000000000000c0ffe")


def app(chain: Chain, **kw):
    return create_app(ApiState(chain=chain, deployment={"contracts": {}}, **kw))


@pytest.mark.parametrize("chain", ["embedded", "anvil"], indirect=True)
def test_time_travel_and_test_eth_on_a_development_chain_from_loopback(chain, isolated):
    assert chain.backend.chain_id in DEV_CHAIN_IDS
    with TestClient(app(chain), client=LOCAL) as client:
        r = client.post("/dev/advance-time", json={"seconds": 300})
        assert r.status_code == 200, r.text
        moved = r.json()
        assert moved["after"] - moved["before"] >= 300 and moved["chain_id"] == chain.backend.chain_id
        r = client.post("/dev/fund", json={"address": WHO.lower(), "wei": str(3 * 10**18)})
        assert r.status_code == 200, r.text
        assert r.json()["address"] == WHO and int(r.json()["balance"]) >= 3 * 10**18
        # bad input names the field
        assert client.post("/dev/advance-time", json={"seconds": 0}).json()["field"] == "seconds"
        assert client.post("/dev/fund", json={"address": "0x12", "wei": "1"}).json()["field"] == "address"
        assert client.post("/dev/fund", json={"address": WHO, "wei": str(10**30)}).json()["field"] == "wei"
        # and none of it is reachable through /rpc
        rpc = client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "evm_increaseTime", "params": [60]})
        assert rpc.json()["error"]["code"] == -32601


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_a_client_off_this_machine_is_refused(chain, isolated):
    before = chain.backend.latest_block()
    with TestClient(app(chain), client=REMOTE) as client:
        r = client.post("/dev/advance-time", json={"seconds": 300})
        assert r.status_code == 403 and r.json()["field"] == "client"
        assert client.post("/dev/fund", json={"address": WHO, "wei": "1"}).status_code == 403
    assert chain.backend.latest_block()["hash"] == before["hash"]


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_the_endpoints_do_not_exist_unless_the_chain_is_a_development_chain(chain, isolated):
    with TestClient(app(chain, dev=False), client=LOCAL) as client:
        assert client.post("/dev/advance-time", json={"seconds": 300}).status_code == 404
        assert "/dev/fund" not in client.get("/openapi.json").json()["paths"]
    with TestClient(app(chain), client=LOCAL) as client:
        assert "/dev/fund" in client.get("/openapi.json").json()["paths"]


def test_anvil_on_another_chain_id_has_no_development_endpoints(project):
    from marketplace.chain.backends import AnvilBackend

    chain = Chain(AnvilBackend(project.root, project.mnemonic, accounts=2, chain_id=4242), project)
    try:
        with TestClient(app(chain), client=LOCAL) as client:
            assert client.post("/dev/advance-time", json={"seconds": 300}).status_code == 404
    finally:
        chain.close()
