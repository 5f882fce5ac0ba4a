"""The event indexer: complete history from logs, a persisted cursor, and reorganisations."""

from __future__ import annotations

import pytest

from marketplace.chain.contracts import Chain
from marketplace.chain.indexer import EventIndexer
from marketplace.errors import ChainError


@pytest.fixture
def probe(isolated: Chain):
    return isolated.deploy("ChainProbe", 1000)


def _indexer(chain: Chain, probe, **kw) -> EventIndexer:
    return EventIndexer(chain.backend, {"ChainProbe": (probe.address, probe.abi)}, **kw)


def test_history_has_every_event_with_block_time_and_tx(isolated: Chain, probe):
    a, b = isolated.signers[1], isolated.signers[2]
    receipts = [probe.transact(a, "bump", 5), probe.transact(b, "deposit", value=9), probe.transact(a, "bump", 6)]
    idx = _indexer(isolated, probe)
    assert idx.sync() == 3
    events = idx.events()
    assert [(e.name, e.tx_hash) for e in events] == [
        ("Bumped", receipts[0].tx_hash), ("Received", receipts[1].tx_hash), ("Bumped", receipts[2].tx_hash)]
    assert events[1].args == {"from": b.address, "amount": 9}
    block = isolated.backend.request("eth_getBlockByNumber", [hex(events[0].block_number), False])
    assert events[0].timestamp == int(block["timestamp"], 16) and events[0].block_hash == block["hash"]
    # queries by argument value (addresses case-insensitively)
    assert [e.args["value"] for e in idx.events(name="Bumped", by=a.address.lower())] == [5, 6]
    assert [e.args["value"] for e in idx.events(name="Bumped", counter=2)] == [6]
    assert idx.events(name="Received", by=a.address) == []


def test_cursor_persists_and_resumes(isolated: Chain, probe, tmp_path):
    db = tmp_path / "index.sqlite"
    probe.transact(isolated.signers[1], "bump", 1)
    first = _indexer(isolated, probe, db_path=db)
    assert first.sync() == 1
    cursor = first.cursor
    first.close()
    probe.transact(isolated.signers[1], "bump", 2)
    again = _indexer(isolated, probe, db_path=db)  # a fresh process
    assert again.cursor == cursor
    assert again.sync() == 1  # only the new one
    assert [e.args["value"] for e in again.events()] == [1, 2]


def test_index_refuses_another_chain_or_deployment(isolated: Chain, probe, tmp_path):
    db = tmp_path / "index.sqlite"
    _indexer(isolated, probe, db_path=db).close()
    other = isolated.deploy("ChainProbe", 1)
    with pytest.raises(ChainError, match="another chain or another deployment"):
        EventIndexer(isolated.backend, {"ChainProbe": (other.address, other.abi)}, db_path=db)


def test_reorganisation_replaces_the_orphaned_branch(isolated: Chain, probe):
    signer = isolated.signers[3]
    probe.transact(signer, "bump", 1)
    fork = isolated.backend.snapshot()
    probe.transact(signer, "bump", 2)
    probe.transact(signer, "bump", 3)
    idx = _indexer(isolated, probe)
    idx.sync()
    assert [e.args["value"] for e in idx.events()] == [1, 2, 3]
    # the chain goes back and grows another branch past the old head
    isolated.backend.revert(fork)
    isolated.writer.forget_nonces()
    probe.transact(signer, "bump", 20)
    probe.transact(signer, "bump", 30)
    probe.transact(signer, "bump", 40)
    idx.sync()
    assert [e.args["value"] for e in idx.events()] == [1, 20, 30, 40]
    hashes = {e.block_hash for e in idx.events()}
    for e in idx.events():
        assert isolated.backend.request("eth_getBlockByNumber", [hex(e.block_number), False])["hash"] == e.block_hash
    assert len(hashes) == 4


def test_a_sync_reads_one_stored_block_unless_it_was_replaced_even_by_a_shorter_branch(isolated: Chain, probe,
                                                                                      monkeypatch):
    signer = isolated.signers[3]
    probe.transact(signer, "bump", 1)
    fork = isolated.backend.snapshot()
    probe.transact(signer, "bump", 2)
    probe.transact(signer, "bump", 3)
    idx = _indexer(isolated, probe)
    idx.sync()
    reads: list[str] = []
    backend = isolated.backend
    batch, request = backend.batch, backend.request

    def counting_batch(calls):
        calls = list(calls)
        reads.extend(hex_n for m, p in calls if m == "eth_getBlockByNumber" for hex_n in p[:1])
        return batch(calls)

    def counting_request(method, params=()):
        if method == "eth_getBlockByNumber":
            reads.append(params[0])
        return request(method, params)

    monkeypatch.setattr(backend, "batch", counting_batch)
    monkeypatch.setattr(backend, "request", counting_request)
    idx.sync()  # nothing new, nothing replaced: the newest indexed block's hash is the only read
    assert reads == [hex(idx.cursor)]
    # the chain goes back and grows a branch SHORTER than the indexed one: the head's old number
    # is gone, so the stored hashes are walked back to the fork
    backend.revert(fork)
    isolated.writer.forget_nonces()
    probe.transact(signer, "bump", 20)
    reads.clear()
    idx.sync()
    assert len(reads) > 2
    assert [e.args["value"] for e in idx.events()] == [1, 20]
    for e in idx.events():
        assert request("eth_getBlockByNumber", [hex(e.block_number), False])["hash"] == e.block_hash
