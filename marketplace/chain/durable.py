"""The durable embedded chain: a data directory that holds the chain across restarts and crashes.

The directory holds ``blocks.log`` (``blocklog``: the genesis, every canonical block, rewinds and
time offsets, each append fsynced) and ``state.ckpt`` (``checkpoint``: py-evm's store at some
block, a shortcut for the start). ``BlockJournal.sync`` runs under ``EmbeddedRpc``'s lock after
every call: it appends the blocks that became canonical since the last sync (a snapshot revert
becomes a rewind, a change of the time offset a clock record) and returns only once they are on
disk, so a transaction is answered only after its block is. ``open_durable`` creates the
directory's chain, or replays it: the genesis is rebuilt from the mnemonic and the logged
timestamp and checked against the logged hash; the newest checkpoint whose head is a block of the
log is loaded; every block after it is imported (py-evm re-executes and validates it, checking its
state root). A log holding rewound blocks is compacted.

Invariants: the log's blocks are exactly the canonical chain as last answered; ``durable_head`` is
the newest block on disk (the RPC names no block above it); a checkpoint is taken from a copy of
the store made under the lock, written in the background, and never trusted unless whole and on
the log's chain.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth.chains.base import MiningChain
from eth_tester import PyEVMBackend

from marketplace.chain import checkpoint
from marketplace.chain.blocklog import BlockLog, Record, RecordKind, lock_directory
from marketplace.chain.clock import ChainClock
from marketplace.chain.embedded_chain import (
    CHAIN_ID,
    EmbeddedChain,
    HonestClockVM,
    assemble,
    build_chain,
    chain_from_store,
)
from marketplace.errors import ChainLogCorrupt, ChainMismatch

log = logging.getLogger(__name__)

LOG_NAME = "blocks.log"
CHECKPOINT_NAME = "state.ckpt"
LOG_FORMAT = 1
#: blocks between two checkpoints: the most a start after a crash re-executes beyond the last one
CHECKPOINT_EVERY = 2000
_NUMBER = struct.Struct(">Q")
_OFFSET = struct.Struct(">q")
_RESTORE = "restore the data directory from a backup, or move it away to start afresh"


@dataclass(frozen=True)
class Replay:
    """How the chain came back at start: ``blocks`` in the log, from the checkpoint at block
    ``checkpoint`` (0: from genesis), so ``blocks - checkpoint`` re-executed, in ``seconds``."""

    blocks: int
    checkpoint: int
    seconds: float


class BlockJournal:
    """Keeps the block log equal to the canonical chain: ``sync`` appends what changed, fsynced."""

    def __init__(self, block_log: BlockLog, evm: PyEVMBackend, clock: ChainClock, store: dict[bytes, bytes],
                 hashes: list[bytes], logged_offset: int, checkpointed: int) -> None:
        self.log = block_log
        self._evm = evm
        self._clock = clock
        self._store = store
        self._hashes = hashes  # hash of each durable canonical block, by number
        self._logged_offset = logged_offset
        self._checkpointed = checkpointed  # the block of the newest checkpoint (0: none)
        self._checkpointing: threading.Thread | None = None
        self.checkpoint_every = CHECKPOINT_EVERY
        #: how the chain was opened (None: created new)
        self.replay: Replay | None = None
        #: appends made, blocks they carried, and the seconds they took (read, encode, write, fdatasync)
        self.appends = 0
        self.blocks_appended = 0
        self.append_seconds = 0.0

    @property
    def durable_head(self) -> int:
        return len(self._hashes) - 1

    def sync(self) -> None:
        """Append the blocks that became canonical (and a rewind, a clock change) since the last sync."""
        started = time.perf_counter()
        chain = self._evm.chain
        head_hash = chain.header.parent_hash  # a mining chain's pending header sits on the canonical head
        hashes = self._hashes
        records: list[tuple[RecordKind, bytes]] = []
        keep = len(hashes)
        fresh: list[BlockHeaderAPI] = []
        if head_hash != hashes[-1]:
            header = chain.get_block_header_by_hash(head_hash)
            while header.block_number >= len(hashes) or hashes[header.block_number] != header.hash:
                fresh.append(header)
                header = chain.get_block_header_by_hash(header.parent_hash)
            keep = header.block_number + 1
            if keep < len(hashes):
                records.append((RecordKind.REWIND, _NUMBER.pack(header.block_number)))
            fresh.reverse()
            records.extend((RecordKind.BLOCK, rlp.encode(chain.get_block_by_header(h))) for h in fresh)
        offset = self._clock.offset
        if offset != self._logged_offset:
            records.append((RecordKind.CLOCK, _OFFSET.pack(offset)))
        if not records:
            return
        self.log.append(records)  # raises before anything below changes: memory stays as the disk is
        self.append_seconds += time.perf_counter() - started
        self.appends += 1
        self.blocks_appended += len(fresh)
        del hashes[keep:]
        hashes.extend(h.hash for h in fresh)
        self._logged_offset = offset
        if keep <= self._checkpointed:
            self._checkpointed = 0  # rewound below the checkpoint: it no longer names a block of the log
        if self.durable_head - self._checkpointed >= self.checkpoint_every:
            self.checkpoint(wait=False)

    def checkpoint(self, *, wait: bool) -> None:
        """Checkpoint the durable head (under the chain's lock): copy the store now, write it in a
        thread (``wait``: in this one). Skipped while the previous checkpoint is still being written."""
        running = self._checkpointing
        if running is not None and running.is_alive():
            if not wait:
                return
            running.join()
        number, block_hash, store = self.durable_head, self._hashes[-1], dict(self._store)
        self._checkpointed = number
        path = self.log.path.with_name(CHECKPOINT_NAME)
        if wait:
            _write_checkpoint(path, number, block_hash, store)
        else:
            self._checkpointing = threading.Thread(target=_write_checkpoint, args=(path, number, block_hash, store),
                                                   name=f"checkpoint-{number}", daemon=True)
            self._checkpointing.start()

    def close(self) -> None:
        """A last checkpoint if blocks came since the newest one, then close the log (call under the lock)."""
        if self.log.closed:
            return
        if self.durable_head > self._checkpointed:
            self.checkpoint(wait=True)
        elif self._checkpointing is not None:
            self._checkpointing.join()
        self.log.close()


def _write_checkpoint(path: Path, number: int, block_hash: bytes, store: dict[bytes, bytes]) -> None:
    started = time.perf_counter()
    try:
        size = checkpoint.write(path, number, block_hash, store)
    except OSError as exc:  # a shortcut only: the log still holds everything
        log.warning("embedded chain: checkpoint at block %d not written to %s: %s", number, path, exc)
        return
    log.info("embedded chain: checkpoint at block %d (%d entries, %d bytes) in %.2f s", number, len(store), size,
             time.perf_counter() - started)


# ----------------------------------------------------------------------------- opening


def open_durable(data_dir: Path, mnemonic: str, accounts: int, hd_path: str, clock: ChainClock) -> EmbeddedChain:
    """The chain kept in ``data_dir``, replayed; or a new chain created there."""
    path = data_dir / LOG_NAME
    if path.exists():
        block_log, records = BlockLog.open(path)
        try:
            return _replay(block_log, records, mnemonic, accounts, hd_path, clock)
        except BaseException:
            block_log.close()
            raise
    keys, chain, store = build_chain(mnemonic, accounts, hd_path, clock, clock.now())
    genesis = chain.get_canonical_head()
    payload = json.dumps({"format": LOG_FORMAT, "chain_id": CHAIN_ID, "accounts": accounts, "hd_path": hd_path,
                          "timestamp": genesis.timestamp, "genesis_hash": "0x" + genesis.hash.hex()}).encode()
    block_log = BlockLog.create(path, [(RecordKind.GENESIS, payload)])
    (data_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # from an earlier chain in this directory
    log.info("embedded chain: new chain in %s (genesis %s)", data_dir, "0x" + genesis.hash.hex())
    return assemble(chain, keys, clock, lambda evm: BlockJournal(block_log, evm, clock, store, [genesis.hash], 0, 0))


def discard(data_dir: Path) -> bool:
    """Delete the chain kept in ``data_dir`` (``cona up --fresh``); False if there was none.
    Refused (``ChainError``) while a process has the chain open."""
    if not (data_dir / LOG_NAME).exists():
        return False
    fd = lock_directory(data_dir)
    try:
        for name in (LOG_NAME, CHECKPOINT_NAME, LOG_NAME + ".tmp", CHECKPOINT_NAME + ".tmp"):
            (data_dir / name).unlink(missing_ok=True)
    finally:
        os.close(fd)
    log.info("embedded chain: discarded the chain in %s", data_dir)
    return True


def _corrupt(block_log: BlockLog, record: Record, why: str) -> ChainLogCorrupt:
    return ChainLogCorrupt(f"{block_log.path}: record {record.index} at byte {record.offset} {why}",
                           path=str(block_log.path), offset=record.offset, record=record.index, hint=_RESTORE)


def _genesis(block_log: BlockLog, records: tuple[Record, ...], accounts: int) -> dict[str, Any]:
    if not records or records[0].kind is not RecordKind.GENESIS:
        raise ChainLogCorrupt(f"{block_log.path} has no genesis record", path=str(block_log.path),
                              offset=0, record=0, hint=_RESTORE)
    genesis = json.loads(records[0].payload)
    if genesis.get("format") != LOG_FORMAT:
        raise _corrupt(block_log, records[0], f"is in log format {genesis.get('format')}, not {LOG_FORMAT}")
    if genesis["accounts"] != accounts:
        raise ChainMismatch(f"the chain in {block_log.path.parent} was created with {genesis['accounts']} accounts, "
                            f"not {accounts}", hint="open it as it was created, or use another data directory")
    return genesis


def _replay(block_log: BlockLog, records: tuple[Record, ...], mnemonic: str, accounts: int, hd_path: str,
            clock: ChainClock) -> EmbeddedChain:
    genesis = _genesis(block_log, records, accounts)
    keys, chain, store = build_chain(mnemonic, accounts, genesis["hd_path"], clock, genesis["timestamp"])
    if "0x" + chain.get_canonical_head().hash.hex() != genesis["genesis_hash"]:
        raise ChainMismatch(f"the chain in {block_log.path.parent} was created from another mnemonic "
                            f"(genesis {genesis['genesis_hash']})",
                            hint="open it with the project's mnemonic, or use another data directory")
    blocks, offset = _surviving(block_log, records)
    started = time.perf_counter()
    block_class = HonestClockVM.get_block_class()
    ck = checkpoint.read(block_log.path.with_name(CHECKPOINT_NAME))
    if ck is not None and 0 < ck.number <= len(blocks):  # a shortcut only if its head is a block of the log
        if rlp.decode(blocks[ck.number - 1].payload, sedes=block_class).hash == ck.block_hash:
            chain, store = _from_checkpoint(ck, clock) or (chain, store)
    start = chain.get_canonical_head().block_number
    if start:
        log.info("embedded chain: checkpoint at block %d of %d", start, len(blocks))
    for record in blocks[start:]:
        try:
            chain.import_block(rlp.decode(record.payload, sedes=block_class))
        except Exception as exc:  # py-evm's validation errors, rlp's decoding errors
            raise _corrupt(block_log, record, f"does not replay: {type(exc).__name__}: {exc}") from exc
    hashes = [chain.get_canonical_block_hash(n) for n in range(len(blocks) + 1)]
    clock.restore(offset)
    _compact(block_log, records, blocks, offset)
    replay = Replay(len(blocks), start, time.perf_counter() - started)
    log.info("embedded chain: %d blocks from %s (%d re-executed) in %.2f s", replay.blocks, block_log.path,
             replay.blocks - replay.checkpoint, replay.seconds)

    def journal(evm: PyEVMBackend) -> BlockJournal:
        opened = BlockJournal(block_log, evm, clock, store, hashes, offset, start)
        opened.replay = replay
        return opened

    return assemble(chain, keys, clock, journal)


def _from_checkpoint(ck: checkpoint.Checkpoint, clock: ChainClock) -> tuple[MiningChain, dict[bytes, bytes]] | None:
    try:
        chain = chain_from_store(ck.store, clock)
        if chain.get_canonical_head().hash == ck.block_hash:
            return chain, ck.store
    except Exception as exc:  # a store py-evm cannot read: the log is still there
        log.warning("embedded chain: checkpoint at block %d unusable (%s); replaying the log", ck.number, exc)
    return None


def _surviving(block_log: BlockLog, records: tuple[Record, ...]) -> tuple[list[Record], int]:
    """The block records still canonical after the rewinds, and the last time offset."""
    blocks: list[Record] = []
    offset = 0
    for record in records[1:]:
        if record.kind is RecordKind.BLOCK:
            blocks.append(record)
        elif record.kind is RecordKind.REWIND:
            (number,) = _NUMBER.unpack(record.payload)
            del blocks[number:]
        elif record.kind is RecordKind.CLOCK:
            (offset,) = _OFFSET.unpack(record.payload)
        else:
            raise _corrupt(block_log, record, "is a second genesis")
    return blocks, offset


def _compact(block_log: BlockLog, records: tuple[Record, ...], blocks: list[Record], offset: int) -> None:
    """Rewrite the log without rewound blocks and superseded clock records, if it holds any."""
    kept = [(RecordKind.GENESIS, records[0].payload), *((RecordKind.BLOCK, r.payload) for r in blocks)]
    if offset:
        kept.append((RecordKind.CLOCK, _OFFSET.pack(offset)))
    if len(kept) < len(records):
        before = block_log.size
        block_log.rewrite(kept)
        log.info("embedded chain: compacted %s from %d to %d bytes", block_log.path, before, block_log.size)
