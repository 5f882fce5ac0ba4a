"""The embedded chain's hot reads (``EmbeddedRpc``): the lock-free head and the kept blocks.

Each answer is checked against eth-tester's own (what the embedded RPC answered before it
kept anything), across new blocks and snapshot reverts, the two ways a kept block goes stale.
"""

from __future__ import annotations

import threading

import pytest

from marketplace.chain.contracts import Chain
from marketplace.chain.embedded_rpc import to_rpc
from marketplace.settings import ConaSettings

pytestmark = pytest.mark.chain


@pytest.fixture
def rpc():
    chain = Chain.open(ConaSettings(chain="embedded"))
    try:
        yield chain.backend.rpc
    finally:
        chain.close()


def _truth(rpc, number):
    return to_rpc(rpc.tester.get_block_by_number(number, False))


def test_block_number_is_eth_testers_latest(rpc):
    for _ in range(3):
        assert rpc.handle("eth_blockNumber", [])["result"] == hex(rpc.tester.get_block_by_number("latest")["number"])
        rpc.tester.mine_blocks(1)


def test_kept_blocks_follow_new_blocks_and_reverts(rpc):
    rpc.tester.mine_blocks(3)
    latest = rpc.handle("eth_getBlockByNumber", ["latest", False])["result"]
    assert latest == _truth(rpc, "latest") and latest["number"] == "0x3"
    assert rpc.handle("eth_getBlockByNumber", ["0x2", False])["result"] == _truth(rpc, 2)
    snap = rpc.handle("evm_snapshot", [])["result"]
    rpc.tester.mine_blocks(2)
    old_five = rpc.handle("eth_getBlockByNumber", ["0x5", False])["result"]
    assert old_five == _truth(rpc, 5)
    rpc.handle("evm_revert", [snap])
    assert rpc.handle("eth_getBlockByNumber", ["latest", False])["result"] == latest
    assert rpc.handle("eth_getBlockByNumber", ["0x5", False])["result"] is None  # reverted away: not found
    rpc.handle("evm_increaseTime", ["0x3c"])  # the new branch's block 5 differs from the old one
    rpc.tester.mine_blocks(2)
    new_five = rpc.handle("eth_getBlockByNumber", ["0x5", False])["result"]
    assert new_five == _truth(rpc, 5) and new_five["hash"] != old_five["hash"]


def test_a_caller_cannot_change_a_kept_block(rpc):
    rpc.tester.mine_blocks(1)
    first = rpc.handle("eth_getBlockByNumber", ["0x1", False])["result"]
    first["hash"] = "0xdead"
    assert rpc.handle("eth_getBlockByNumber", ["0x1", False])["result"] == _truth(rpc, 1)


def test_pending_and_unknown_blocks_answer_as_before(rpc):
    pending = rpc.handle("eth_getBlockByNumber", ["pending", False])["result"]
    assert pending["number"] == hex(rpc.tester.get_block_by_number("pending")["number"])
    assert rpc.handle("eth_getBlockByNumber", ["0x99", False]) == {"result": None}


def test_block_number_does_not_wait_for_the_chain_lock(rpc):
    with rpc.lock:  # held by another thread: a transaction executing, say
        out: list = []
        t = threading.Thread(target=lambda: out.append(rpc.handle("eth_blockNumber", [])))
        t.start()
        t.join(timeout=5)
        assert out == [{"result": hex(rpc.head_number())}]
    done: list = []
    t = threading.Thread(target=lambda: done.append(rpc.handle("eth_getBalance", [rpc.tester.get_accounts()[0]])))
    with rpc.lock:
        t.start()
        t.join(timeout=0.2)
        assert not done  # every other method still runs under the lock
    t.join(timeout=5)
    assert done and "result" in done[0]
