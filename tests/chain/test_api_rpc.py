"""``POST /rpc`` is locked to reads and ``eth_sendRawTransaction``, on every chain, inside batches too,
and bounded (body, nesting, batch), each limit tested just over and at it.

Each finding of issue 13 is replayed against the embedded chain and against anvil (which relays
everything a client asks): snapshot/revert (free compute), time travel (a dispute window closed
early), automine off (orders hang), eth_sendTransaction from the unlocked operator, impersonating
the market contract. Each is refused with -32601 and the chain is unchanged: same height, same
time, same balances.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.api.routes.rpc import ALLOWED
from marketplace.chain.contracts import Chain
from marketplace.limits import MAX_JSON_DEPTH, MAX_RPC_BATCH, MAX_RPC_BODY_BYTES

pytestmark = pytest.mark.chain

CHAINS = ["embedded", "anvil"]
DEAD = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def client(chain: Chain, isolated):
    with TestClient(create_app(ApiState(chain=chain, deployment={"contracts": {}}))) as c:
        yield c


def call(method: str, params: list | None = None, rid: int | str = 1) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or []}


def state(chain: Chain) -> tuple:
    b = chain.backend
    latest = b.latest_block()
    return (int(latest["number"], 16), int(latest["timestamp"], 16),
            int(b.request("eth_getBalance", [chain.signers[0].address, "latest"]), 16),
            int(b.request("eth_getBalance", [DEAD, "latest"]), 16))


def attacks(chain: Chain) -> list[dict]:
    """The issue's probes: each would rewrite the chain or spend someone else's money."""
    operator = chain.signers[0].address
    return [
        call("evm_snapshot"), call("evm_revert", ["0x1"]), call("evm_increaseTime", [86_400]),
        call("evm_setNextBlockTimestamp", [2**40]), call("evm_mine"), call("evm_setAutomine", [False]),
        call("anvil_mine", ["0x10"]), call("anvil_impersonateAccount", [DEAD]),
        call("anvil_setBalance", [DEAD, "0xffffffff"]), call("anvil_setCode", [DEAD, "0x00"]),
        call("hardhat_setBalance", [DEAD, "0x1"]),
        call("eth_sendTransaction", [{"from": operator, "to": DEAD, "value": "0xde0b6b3a7640000"}]),
        call("eth_sign", [operator, "0x00"]), call("personal_unlockAccount", [operator, "", 0]),
        call("debug_traceTransaction", ["0x" + "00" * 32]), call("eth_newFilter", [{}]),
        call("txpool_content"), call("cona_sendRawTransactionIfSucceeds", ["0x00"]),
    ]


@pytest.mark.parametrize("chain", CHAINS, indirect=True)
def test_every_method_outside_the_allowlist_is_refused_and_the_chain_is_unchanged(chain, client):
    before = state(chain)
    for probe in attacks(chain):
        answer = client.post("/rpc", json=probe).json()
        assert answer["id"] == probe["id"] and answer["error"]["code"] == -32601, (probe["method"], answer)
        assert probe["method"] in answer["error"]["message"]
    # the same probes in one batch, between two reads: refused in place, the reads answered
    batch = [call("eth_chainId", rid="first")] + [dict(p, id=i) for i, p in enumerate(attacks(chain))] + [
        call("eth_blockNumber", rid="last")]
    answers = client.post("/rpc", json=batch).json()
    assert [a["id"] for a in answers] == [b["id"] for b in batch]
    assert answers[0]["result"] == hex(chain.backend.chain_id) and answers[-1]["result"].startswith("0x")
    assert all(a["error"]["code"] == -32601 for a in answers[1:-1])
    assert state(chain) == before


@pytest.mark.parametrize("chain", CHAINS, indirect=True)
def test_reads_and_signed_transactions_pass(chain, client):
    from marketplace.chain.writer import Signer

    signer = Signer(chain.backend.accounts[1].key)
    reads = [call("eth_chainId"), call("net_version"), call("eth_blockNumber"), call("eth_gasPrice"),
             call("eth_getBlockByNumber", ["latest", False]), call("eth_getBalance", [signer.address, "latest"]),
             call("eth_getCode", [DEAD, "latest"]), call("eth_getTransactionCount", [signer.address, "pending"]),
             call("eth_estimateGas", [{"from": signer.address, "to": DEAD, "value": "0x1"}]),
             call("eth_call", [{"to": DEAD, "data": "0x"}, "latest"]),
             call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]),
             call("eth_feeHistory", ["0x1", "latest", []])]
    for probe in reads:
        assert probe["method"] in ALLOWED
        answer = client.post("/rpc", json=probe).json()
        assert "result" in answer, (probe["method"], answer)
    nonce = int(client.post("/rpc", json=reads[7]).json()["result"], 16)
    raw, tx_hash = signer.sign_1559(chain_id=chain.backend.chain_id, nonce=nonce, tip=10**9, max_fee=10**11,
                                    gas=21_000, to=DEAD, value=5, data=b"")
    sent = client.post("/rpc", json=call("eth_sendRawTransaction", ["0x" + raw.hex()])).json()
    assert sent["result"] == tx_hash
    receipt = chain.writer.wait_receipts([tx_hash])[0]
    assert receipt.ok


def _nested(depth: int) -> dict:
    params: list = []
    for _ in range(depth - 2):  # the request object is one level, the params list another
        params = [params]
    return call("eth_blockNumber", params)


@pytest.mark.parametrize("chain", ["embedded"], indirect=True)
def test_rpc_limits_just_over_and_at_each(chain, client):
    # the batch: at the limit answered item by item, one more refused whole
    batch = [call("eth_chainId", rid=i) for i in range(MAX_RPC_BATCH)]
    assert len(client.post("/rpc", json=batch).json()) == MAX_RPC_BATCH
    over = client.post("/rpc", json=batch + [call("eth_chainId")]).json()
    assert over["error"]["code"] == -32600 and "longer than" in over["error"]["message"]
    # the nesting
    assert client.post("/rpc", json=_nested(MAX_JSON_DEPTH)).json()["id"] == 1
    deep = client.post("/rpc", json=_nested(MAX_JSON_DEPTH + 1)).json()
    assert deep["error"]["code"] == -32600 and "nested" in deep["error"]["message"]
    # 100,000 deep (200 KB): once a segfault of the whole market; now an error, and the process answers
    bomb = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert client.post("/rpc", content=bomb).json()["error"]["code"] == -32600
    assert client.post("/rpc", json=call("eth_chainId")).json()["result"] == hex(chain.backend.chain_id)
    # the body: at the limit parsed (a request whose one string fills it), one byte more refused with 413
    head, tail = b'{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"data":"0x', b'"},"latest"]}'
    pad = MAX_RPC_BODY_BYTES - len(head) - len(tail)
    at = client.post("/rpc", content=head + b"00" * (pad // 2) + b"0" * (pad % 2) + tail,
                     headers={"content-type": "application/json"})
    assert at.status_code == 200 and at.json()["id"] == 1  # relayed: the chain's own answer, not a refusal
    over = client.post("/rpc", content=head + b"0" * (pad + 1) + tail, headers={"content-type": "application/json"})
    assert over.status_code == 413 and over.json()["error"]["code"] == -32600
    # a 2 MB batch of plain numbers (once +542 MiB): refused whole
    numbers = client.post("/rpc", content=("[" + ",".join("1" for _ in range(MAX_RPC_BODY_BYTES // 4)) + "]").encode())
    assert numbers.json()["error"]["code"] == -32600
