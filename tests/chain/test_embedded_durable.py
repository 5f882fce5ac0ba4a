"""The durable embedded chain (``EmbeddedBackend(data_dir=...)``): nothing confirmed is lost.

The kill -9 tests run the chain as a process of its own (``tests/chain/durable_node.py``), talk to
it as any client does (JSON-RPC over HTTP, keys held by the client), kill it with SIGKILL while
transactions are in flight, and start it again on the same directory: every transaction that was
reported mined is there, in the same block, with the same logs. The other tests open the chain in
this process: reverts, time offsets, damage, a second opener and a disk that fills up.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from marketplace.chain.backends import EmbeddedBackend, RpcBackend, dev_accounts
from marketplace.chain.blocklog import scan
from marketplace.chain import durable
from marketplace.chain.contracts import Chain
from marketplace.chain.durable import CHECKPOINT_NAME, LOG_NAME, Replay, discard
from marketplace.errors import ChainError, ChainLogCorrupt, ChainMismatch
from tests.faults import file_size_limit

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """``durable_node`` as a subprocess on ``data_dir``; ``kill`` is SIGKILL, nothing graceful."""

    def __init__(self, data_dir: Path) -> None:
        self.port_file = data_dir.parent / f"{data_dir.name}.port"
        self.port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "tests.chain.durable_node", str(data_dir),
                                         str(self.port_file)], cwd=ROOT, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not self.port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the node did not start: {self.process.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}"

    def chain(self, project) -> Chain:
        keys = [a.key.hex() for a in dev_accounts(project.mnemonic, 10)]
        return Chain(RpcBackend(self.url, keys=keys, retries=0), project)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stderr.close()


@pytest.fixture
def node_dir(tmp_path):
    return tmp_path / "chain"


def _receipt(chain: Chain, tx_hash: str) -> dict | None:
    return chain.backend.request("eth_getTransactionReceipt", [tx_hash])


def test_every_confirmed_transaction_survives_kill_9(project, node_dir):
    node = Node(node_dir)
    try:
        chain = node.chain(project)
        probe = chain.deploy("ChainProbe", 100)
        confirmed = [probe.transact(chain.signers[1], "bump", 1) for _ in range(30)]
        confirmed.append(probe.transact(chain.signers[2], "deposit", value=12345))
        logs_before = chain.backend.request("eth_getLogs", [{"fromBlock": "0x0", "address": probe.address}])
        head_before = chain.backend.latest_block()

        in_flight: list = []
        stop = threading.Event()

        def keep_sending() -> None:
            with contextlib.suppress(ChainError):  # the node dies under us
                while not stop.is_set():
                    in_flight.append(probe.transact(chain.signers[3], "bump", 2))

        sender = threading.Thread(target=keep_sending)
        sender.start()
        while len(in_flight) < 20:
            time.sleep(0.01)
        node.kill()  # mid-stream: a transaction is being mined, written or answered
        stop.set()
        sender.join(timeout=60)
        chain.close()
    finally:
        node.kill()

    node = Node(node_dir)
    try:
        again = node.chain(project)
        for rec in confirmed + in_flight:  # every transaction reported mined is there, where it was
            receipt = _receipt(again, rec.tx_hash)
            assert receipt is not None, f"confirmed {rec.tx_hash} lost"
            assert int(receipt["blockNumber"], 16) == rec.block_number and int(receipt["status"], 16) == 1
        logs_after = again.backend.request("eth_getLogs", [{"fromBlock": "0x0", "address": probe.address}])
        assert logs_after[: len(logs_before)] == logs_before  # event history across the restart
        assert len(logs_after) >= len(logs_before) + len(in_flight)
        assert again.backend.request("eth_getBlockByNumber", [head_before["number"], False])["hash"] == head_before["hash"]
        reprobe = again.at("ChainProbe", probe.address)
        assert reprobe.call("total", chain.signers[1].address) == 30
        assert reprobe.call("total", chain.signers[3].address) >= 2 * len(in_flight)  # one more may have landed
        nonce = int(again.backend.request("eth_getTransactionCount", [chain.signers[1].address, "latest"]), 16)
        assert nonce == 30  # its 30 bumps, none lost, none twice
        assert int(again.backend.request("eth_getBalance", [probe.address, "latest"]), 16) == 12345
        assert reprobe.transact(again.signers[1], "bump", 1).ok  # and it goes on from there
        again.close()
    finally:
        node.kill()


def test_a_write_cut_by_kill_9_is_dropped_on_restart(project, node_dir):
    node = Node(node_dir)
    try:
        chain = node.chain(project)
        probe = chain.deploy("ChainProbe", 100)
        last = probe.transact(chain.signers[1], "bump", 3)
        head = chain.backend.latest_block()
        chain.close()
    finally:
        node.kill()
    log_path = node_dir / LOG_NAME
    whole = log_path.read_bytes()
    records = scan(whole).records
    torn = whole + whole[records[-1].offset: records[-1].offset + 40]  # the next record, cut after 40 bytes
    log_path.write_bytes(torn)
    node = Node(node_dir)
    try:
        again = node.chain(project)
        assert again.backend.latest_block()["hash"] == head["hash"]
        assert _receipt(again, last.tx_hash) is not None
        assert log_path.stat().st_size == len(whole)  # truncated to the last whole record
        again.close()
    finally:
        node.kill()


# -- in this process -------------------------------------------------------------------------


def _open(project, data_dir: Path, accounts: int = 10) -> Chain:
    return Chain(EmbeddedBackend(project.mnemonic, accounts, data_dir=data_dir), project)


def test_a_snapshot_revert_is_kept_as_a_rewind_and_compacted_away(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    snap = chain.backend.snapshot()
    undone = probe.transact(chain.signers[1], "bump", 5)
    chain.backend.revert(snap)
    chain.writer.forget_nonces()
    kept = probe.transact(chain.signers[1], "bump", 7)
    head = chain.backend.latest_block()
    size = (node_dir / LOG_NAME).stat().st_size
    chain.close()
    again = _open(project, node_dir)
    try:
        assert again.backend.latest_block()["hash"] == head["hash"]
        assert _receipt(again, undone.tx_hash) is None and _receipt(again, kept.tx_hash) is not None
        assert again.at("ChainProbe", probe.address).call("total", chain.signers[1].address) == 7
        assert (node_dir / LOG_NAME).stat().st_size < size  # the undone block is gone from the file
    finally:
        again.close()


def test_time_travel_survives_a_restart(project, node_dir):
    chain = _open(project, node_dir)
    chain.backend.increase_time(3600)
    chain.close()
    again = _open(project, node_dir)
    try:
        assert again.backend.clock.offset == 3600
        again.backend.mine()
        assert int(again.backend.latest_block()["timestamp"], 16) >= int(time.time()) + 3600 - 1
    finally:
        again.close()


def test_damage_inside_the_log_is_refused_with_its_place(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    for _ in range(3):
        probe.transact(chain.signers[1], "bump", 1)
    chain.close()
    path = node_dir / LOG_NAME
    second = scan(path.read_bytes()).records[2]
    data = bytearray(path.read_bytes())
    data[second.offset + 40] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ChainLogCorrupt) as info:
        _open(project, node_dir)
    assert info.value.offset == second.offset and str(path) in str(info.value)
    EmbeddedBackend(project.mnemonic, 10, data_dir=node_dir.parent / "elsewhere").close()  # the lock was released


def test_a_chain_made_with_other_accounts_is_refused(project, node_dir):
    _open(project, node_dir).close()
    with pytest.raises(ChainMismatch, match="created with 10 accounts"):
        _open(project, node_dir, accounts=4)


def test_one_process_per_data_directory(project, node_dir):
    first = _open(project, node_dir)
    try:
        with pytest.raises(ChainError, match="in use by another process"):
            _open(project, node_dir)
    finally:
        first.close()


def test_a_disk_that_fills_up_stops_the_chain_instead_of_losing_blocks(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    head = chain.backend.latest_block()
    rpc = chain.backend.rpc
    raw = _signed_bump(chain, probe)
    with file_size_limit((node_dir / LOG_NAME).stat().st_size + 100):  # no room for one more block
        answer = chain.backend.forward({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                        "params": [raw]})
    assert answer["error"]["code"] == -32603 and "block log cannot be written" in answer["error"]["message"]
    assert "block log cannot be written" in chain.backend.failure  # what /healthz can report
    assert rpc.handle("eth_blockNumber", [])["error"]["code"] == -32603  # every later call is refused too
    assert "error" in rpc.handle("eth_getBalance", [chain.signers[0].address])
    chain.close()
    again = _open(project, node_dir)
    try:
        assert again.backend.latest_block()["hash"] == head["hash"]  # the unwritten block never existed
    finally:
        again.close()


def _signed_bump(chain: Chain, probe) -> str:
    signer = chain.signers[1]
    nonce = int(chain.backend.request("eth_getTransactionCount", [signer.address, "latest"]), 16)
    raw, _ = signer.sign_1559(chain_id=chain.backend.chain_id, nonce=nonce, tip=10**9, max_fee=10**10, gas=90_000,
                              to=probe.address, value=0, data=probe.abi.encode_call("bump", (1,)))
    return "0x" + raw.hex()




# -- checkpoints: a shortcut for the start, never trusted over the log


def test_a_clean_close_checkpoints_so_the_next_start_executes_nothing(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    for _ in range(5):
        probe.transact(chain.signers[1], "bump", 1)
    head = chain.backend.latest_block()
    chain.close()
    assert (node_dir / CHECKPOINT_NAME).exists()
    again = _open(project, node_dir)
    try:
        assert again.backend.journal.replay == Replay(6, 6, again.backend.journal.replay.seconds)
        assert again.backend.latest_block() == head
        assert again.at("ChainProbe", probe.address).call("total", chain.signers[1].address) == 5
        assert again.at("ChainProbe", probe.address).transact(again.signers[1], "bump", 1).ok
    finally:
        again.close()


def test_after_a_crash_only_the_blocks_since_the_last_checkpoint_are_executed(project, node_dir):
    chain = _open(project, node_dir)
    chain.backend.journal.checkpoint_every = 4
    probe = chain.deploy("ChainProbe", 100)
    for _ in range(9):
        probe.transact(chain.signers[1], "bump", 1)
    head = chain.backend.latest_block()
    chain.backend.journal.checkpoint(wait=True)  # at block 10 (the chain is idle: its store is still)
    probe.transact(chain.signers[1], "bump", 1)  # block 11, after the newest checkpoint
    chain.backend.journal.log.close()  # a crash: no last checkpoint, the files as they are
    again = _open(project, node_dir)
    try:
        replay = again.backend.journal.replay
        assert replay.blocks == 11 and replay.checkpoint == 10 and head["number"] == "0xa"
        assert again.at("ChainProbe", probe.address).call("total", chain.signers[1].address) == 10
    finally:
        again.close()


def test_a_young_chain_checkpoints_every_tenth_of_its_length(project, node_dir, monkeypatch):
    """The interval grows with the chain (a tenth of it, at least ``CHECKPOINT_MIN``, at most
    ``checkpoint_every``): a crash early in a busy market re-executes a few blocks, not thousands."""
    monkeypatch.setattr(durable, "CHECKPOINT_MIN", 5)
    chain = _open(project, node_dir)
    journal = chain.backend.journal
    journal.checkpoint_every = 10_000
    assert journal.checkpoint_due() == 5
    chain.backend.mine(12)
    deadline = time.monotonic() + 30
    while not (node_dir / CHECKPOINT_NAME).exists():  # written in a thread
        assert time.monotonic() < deadline, "no checkpoint after 12 blocks"
        time.sleep(0.05)
    chain.backend.mine(2)
    journal.log.close()  # a crash: the checkpoints taken on the way are all there is
    again = _open(project, node_dir)
    try:
        assert again.backend.journal.replay.checkpoint >= 5, again.backend.journal.replay
        assert again.backend.latest_block()["number"] == hex(14)
        again.backend.journal.checkpoint_every = 10_000
        monkeypatch.setattr(durable, "CHECKPOINT_MIN", 250)
        assert again.backend.journal.checkpoint_due() == 250  # a tenth of 14 blocks is below the least
    finally:
        again.close()


def test_a_damaged_checkpoint_is_ignored_and_the_log_replayed(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    probe.transact(chain.signers[1], "bump", 4)
    head = chain.backend.latest_block()
    chain.close()
    ckpt = node_dir / CHECKPOINT_NAME
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    again = _open(project, node_dir)
    try:
        assert again.backend.journal.replay.checkpoint == 0 and again.backend.latest_block() == head
    finally:
        again.close()


def test_a_checkpoint_above_a_rewind_is_not_used(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    snap = chain.backend.snapshot()
    for _ in range(3):
        probe.transact(chain.signers[1], "bump", 1)
    chain.backend.journal.checkpoint(wait=True)  # at block 4
    chain.backend.revert(snap)  # back to block 1
    chain.writer.forget_nonces()
    probe.transact(chain.signers[2], "bump", 9)  # a different block 2
    chain.backend.journal.log.close()  # crash
    again = _open(project, node_dir)
    try:
        assert again.backend.journal.replay.checkpoint == 0
        reprobe = again.at("ChainProbe", probe.address)
        assert reprobe.call("total", chain.signers[1].address) == 0 and reprobe.call("total", chain.signers[2].address) == 9
    finally:
        again.close()


def test_discard_starts_over_but_not_under_a_running_chain(project, node_dir):
    chain = _open(project, node_dir)
    probe = chain.deploy("ChainProbe", 100)
    with pytest.raises(ChainError, match="in use by another process"):
        discard(node_dir)
    chain.close()
    assert discard(node_dir) and not discard(node_dir)
    fresh = _open(project, node_dir)
    try:
        assert fresh.backend.block_number() == 0
        assert fresh.backend.request("eth_getCode", [probe.address, "latest"]) in ("0x", "")
    finally:
        fresh.close()
