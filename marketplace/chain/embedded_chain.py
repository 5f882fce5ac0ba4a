"""The embedded chain: py-evm's mining chain as eth-tester builds it, with an honest clock and,
given a directory, a durable block log.

eth-tester's own chain stamps each block one second after its parent at least, and fixes a
block's timestamp when its parent is mined: under load chain time ran ~29x faster than the wall
clock, and after an idle minute the next block was stamped a minute late. Here:

- a block is stamped by ``ChainClock`` when its first transaction executes (or when it is mined
  empty): the wall clock plus the development offset, never below its parent. Blocks mined in the
  same second share a timestamp, as anvil's do; py-evm requires strictly increasing timestamps
  (Ethereum's consensus rule), so ``HonestClockVM`` relaxes that one check to "not earlier";
- with a directory, every block that becomes canonical is appended to the block log
  (``blocklog.BlockLog``) and fsynced before the call that mined it is answered (``BlockJournal.sync``,
  run by ``EmbeddedRpc`` under its lock); a snapshot revert is logged as a rewind, a change of the
  time offset as a clock record. On start the log is replayed: the genesis is rebuilt from the
  mnemonic and the logged timestamp and checked against the logged hash, and each block is
  imported (re-executed and validated by py-evm, which checks its state root), so the chain comes
  back with the same blocks, hashes, receipts and logs. A log whose records were rewound away is
  compacted on start.

Invariants: the log's blocks are exactly the canonical chain as last answered; ``durable_head`` is
the newest block on disk, and no reader is told of a block above it.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth.chains.base import MiningChain
from eth.db import get_db_backend
from eth.vm.forks import PragueVM
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm import main as pyevm_main
from eth_utils.toolz import assoc

from marketplace.chain.blocklog import BlockLog, Record, RecordKind
from marketplace.chain.clock import ChainClock
from marketplace.chain.embedded_rpc import EmbeddedRpc
from marketplace.errors import ChainError, ChainLogCorrupt, ChainMismatch

log = logging.getLogger(__name__)

#: eth-tester's chain id, kept so that signatures and the conformance suite see the same chain
CHAIN_ID = 131277322940537
LOG_NAME = "blocks.log"
LOG_FORMAT = 1
_NUMBER = struct.Struct(">Q")
_OFFSET = struct.Struct(">q")


class HonestClockVM(PragueVM):
    """Prague, except that a block may share its parent's timestamp (several blocks in one second)."""

    @classmethod
    def validate_header(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        if parent_header is not None and header.timestamp == parent_header.timestamp:
            # every other rule is checked as usual, against a parent one second older
            parent_header = parent_header.copy(timestamp=parent_header.timestamp - 1)
        super().validate_header(header, parent_header)


def chain_class(clock: ChainClock) -> type[MiningChain]:
    """A mining chain stamped by ``clock``. One class per clock: eth-tester rebuilds the chain object
    from its class on a revert to genesis, and py-evm asks the VM class for the header of a block it
    only simulates (``eth_estimateGas`` runs on top of the head at the clock's now, as anvil's does)."""
    unstamped = HonestClockVM.create_header_from_parent

    def stamped(parent_header: BlockHeaderAPI | None, **params: Any) -> BlockHeaderAPI:
        if parent_header is not None:
            params.setdefault("timestamp", clock.stamp(parent_header.timestamp))
        return unstamped(parent_header, **params)

    vm_class = type("ClockedVM", (HonestClockVM,), {"create_header_from_parent": staticmethod(stamped)})

    class EmbeddedMiningChain(MiningChain):
        chain_id = CHAIN_ID
        vm_configuration = ((0, vm_class),)

        def create_header_from_parent(self, parent_header: BlockHeaderAPI, **params: Any) -> BlockHeaderAPI:
            return super().create_header_from_parent(parent_header, **assoc(params, "gas_limit", parent_header.gas_limit))

        def get_transaction_builder(self) -> Any:
            return super().get_vm().get_transaction_builder()

        def restamp(self) -> None:
            """Stamp the pending block now, unless a transaction already executed in it."""
            if self.header.gas_used:
                return
            parent = self.get_block_header_by_hash(self.header.parent_hash)
            stamp = clock.stamp(parent.timestamp)
            if stamp != self.header.timestamp:
                self.header = self.header.copy(timestamp=stamp)

        def apply_transaction(self, transaction: Any) -> Any:
            self.restamp()
            return super().apply_transaction(transaction)

        def mine_block_extended(self, *args: Any, **kwargs: Any) -> Any:
            self.restamp()
            return super().mine_block_extended(*args, **kwargs)

    return EmbeddedMiningChain


class _EmbeddedEvm(PyEVMBackend):
    """eth-tester's py-evm backend around a chain built here (its own constructor builds its own)."""

    def __init__(self, chain: MiningChain, account_keys: tuple[Any, ...]) -> None:  # noqa: D107
        self.chain = chain
        self.account_keys = account_keys

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise ChainError("the embedded chain cannot be reset to genesis; open a new one")


def build_chain(mnemonic: str, accounts: int, hd_path: str, clock: ChainClock,
                genesis_timestamp: int) -> tuple[tuple[Any, ...], MiningChain]:
    """The account keys and a chain at genesis, funded as eth-tester funds its accounts."""
    keys = tuple(pyevm_main.get_account_keys_from_mnemonic(mnemonic, quantity=accounts, hd_path=hd_path))
    state = pyevm_main.generate_genesis_state_for_keys(keys)
    params = pyevm_main.get_default_genesis_params({"timestamp": int(genesis_timestamp)})
    return keys, chain_class(clock).from_genesis(get_db_backend(), params, state)


# ----------------------------------------------------------------------------- the journal


class BlockJournal:
    """Keeps the block log equal to the canonical chain: ``sync`` appends what changed, fsynced."""

    def __init__(self, block_log: BlockLog, evm: PyEVMBackend, clock: ChainClock, hashes: list[bytes],
                 logged_offset: int) -> None:
        self.log = block_log
        self._evm = evm
        self._clock = clock
        self._hashes = hashes  # hash of each durable canonical block, by number
        self._logged_offset = logged_offset

    @property
    def durable_head(self) -> int:
        return len(self._hashes) - 1

    def sync(self) -> None:
        """Append the blocks that became canonical (and a rewind, a clock change) since the last sync."""
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
        del hashes[keep:]
        hashes.extend(h.hash for h in fresh)
        self._logged_offset = offset

    def close(self) -> None:
        self.log.close()


# ----------------------------------------------------------------------------- opening


@dataclass
class EmbeddedChain:
    """What ``EmbeddedBackend`` holds: eth-tester's backend and tester, the RPC, and the journal if durable."""

    evm: PyEVMBackend
    tester: EthereumTester
    rpc: EmbeddedRpc
    clock: ChainClock
    journal: BlockJournal | None

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


def open_embedded(mnemonic: str, accounts: int, hd_path: str, *, data_dir: Path | None = None,
                  clock: ChainClock | None = None) -> EmbeddedChain:
    """A new in-memory chain, or (``data_dir``) the chain kept there, replayed, or created there."""
    clock = clock or ChainClock()
    if data_dir is None:
        keys, chain = build_chain(mnemonic, accounts, hd_path, clock, clock.now())
        return _assemble(chain, keys, clock, None)
    path = Path(data_dir) / LOG_NAME
    if path.exists():
        block_log, records = BlockLog.open(path)
        try:
            return _replay(block_log, records, mnemonic, accounts, hd_path, clock)
        except BaseException:
            block_log.close()
            raise
    keys, chain = build_chain(mnemonic, accounts, hd_path, clock, clock.now())
    genesis = chain.get_canonical_head()
    payload = json.dumps({"format": LOG_FORMAT, "chain_id": CHAIN_ID, "accounts": accounts, "hd_path": hd_path,
                          "timestamp": genesis.timestamp, "genesis_hash": "0x" + genesis.hash.hex()}).encode()
    block_log = BlockLog.create(path, [(RecordKind.GENESIS, payload)])
    log.info("embedded chain: new chain in %s (genesis %s)", data_dir, "0x" + genesis.hash.hex())
    return _assemble(chain, keys, clock, (block_log, [genesis.hash], 0))


def _assemble(chain: MiningChain, keys: tuple[Any, ...], clock: ChainClock,
              durable: tuple[BlockLog, list[bytes], int] | None) -> EmbeddedChain:
    evm = _EmbeddedEvm(chain, keys)
    tester = EthereumTester(evm)
    journal = BlockJournal(durable[0], evm, clock, durable[1], durable[2]) if durable else None
    rpc = EmbeddedRpc(tester, CHAIN_ID, clock=clock, journal=journal)
    return EmbeddedChain(evm, tester, rpc, clock, journal)


def _corrupt(block_log: BlockLog, record: Record, why: str) -> ChainLogCorrupt:
    return ChainLogCorrupt(f"{block_log.path}: record {record.index} at byte {record.offset} {why}",
                           path=str(block_log.path), offset=record.offset, record=record.index,
                           hint="restore the data directory from a backup, or move it away to start afresh")


def _replay(block_log: BlockLog, records: tuple[Record, ...], mnemonic: str, accounts: int, hd_path: str,
            clock: ChainClock) -> EmbeddedChain:
    if not records or records[0].kind is not RecordKind.GENESIS:
        raise ChainLogCorrupt(f"{block_log.path} has no genesis record", path=str(block_log.path),
                              offset=0, record=0, hint="move the data directory away to start afresh")
    genesis = json.loads(records[0].payload)
    if genesis.get("format") != LOG_FORMAT:
        raise ChainLogCorrupt(f"{block_log.path} is in log format {genesis.get('format')}, not {LOG_FORMAT}",
                              path=str(block_log.path), offset=records[0].offset, record=0)
    keys, chain = build_chain(mnemonic, int(genesis["accounts"]), genesis["hd_path"], clock, genesis["timestamp"])
    if "0x" + chain.get_canonical_head().hash.hex() != genesis["genesis_hash"] or genesis["accounts"] != accounts:
        raise ChainMismatch(f"the chain in {block_log.path.parent} was created with {genesis['accounts']} accounts "
                            f"of another mnemonic or count (genesis {genesis['genesis_hash']})",
                            hint="open it with the project's mnemonic and account count, or use another data directory")
    blocks, offset = _surviving(block_log, records)
    started = time.perf_counter()
    block_class = HonestClockVM.get_block_class()
    hashes = [chain.get_canonical_head().hash]
    for record in blocks:
        try:
            block = rlp.decode(record.payload, sedes=block_class)
            chain.import_block(block)
        except Exception as exc:  # py-evm's validation errors, rlp's decoding errors
            raise _corrupt(block_log, record, f"does not replay: {type(exc).__name__}: {exc}") from exc
        hashes.append(block.hash)
    clock.restore(offset)
    kept = [(RecordKind.GENESIS, records[0].payload), *((RecordKind.BLOCK, r.payload) for r in blocks)]
    if offset:
        kept.append((RecordKind.CLOCK, _OFFSET.pack(offset)))
    if len(kept) < len(records):  # rewinds (snapshot reverts) or superseded clock records: compact
        before = block_log.size
        block_log.rewrite(kept)
        log.info("embedded chain: compacted %s from %d to %d bytes", block_log.path, before, block_log.size)
    log.info("embedded chain: replayed %d blocks from %s in %.2f s", len(blocks), block_log.path,
             time.perf_counter() - started)
    return _assemble(chain, keys, clock, (block_log, hashes, offset))


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
