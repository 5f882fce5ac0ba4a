"""The embedded chain: py-evm's mining chain as eth-tester builds it, with an honest clock and,
given a directory, a durable block log (``durable``).

eth-tester's own chain stamps each block one second after its parent at least, and fixes a
block's timestamp when its parent is mined: under load chain time ran ~29x faster than the wall
clock, and after an idle minute the next block was stamped a minute late. Here:

- a block is stamped by ``ChainClock`` when its first transaction executes (or when it is mined
  empty): the wall clock plus the development offset, never below its parent. Blocks mined in the
  same second share a timestamp, as anvil's do; py-evm requires strictly increasing timestamps
  (Ethereum's consensus rule), so ``HonestClockVM`` relaxes that one check to "not earlier";
- with a directory (``open_embedded(data_dir=...)``), ``durable.BlockJournal`` keeps every
  canonical block on disk before the call that mined it is answered, and ``durable.open_durable``
  replays the log on start (see there);
- while ``refuse_failures`` is set (``EmbeddedRpc``'s ``cona_sendRawTransactionIfSucceeds``), a
  transaction whose execution fails is refused instead of mined (``apply_unless_failed``).

Invariant: a block's timestamp is at most the wall clock plus the development offset, and never
below its parent's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from eth.abc import BlockHeaderAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.vm.forks import PragueVM
from eth.exceptions import TransactionNotFound as PyEvmTransactionNotFound
from eth.vm.spoof import SpoofTransaction as EVMSpoofTransaction
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm import main as pyevm_main
from eth_tester.backends.pyevm.serializers import serialize_transaction, serialize_transaction_receipt
from eth_tester.exceptions import BlockNotFound, TransactionFailed, TransactionNotFound
from eth_utils.toolz import assoc

from marketplace.chain.clock import ChainClock
from marketplace.chain.embedded_rpc import CallReverted, EmbeddedRpc
from marketplace.errors import ChainError

if TYPE_CHECKING:
    from marketplace.chain.durable import BlockJournal

#: eth-tester's chain id, kept so that signatures and the conformance suite see the same chain
CHAIN_ID = 131277322940537


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

        #: set by ``EmbeddedRpc`` while it answers ``cona_sendRawTransactionIfSucceeds``: a transaction
        #: whose execution fails is refused (``TransactionFailed`` with the revert bytes) instead of
        #: mined as failed: no block, no nonce used, no fee charged
        refuse_failures = False

        def apply_transaction(self, transaction: Any) -> Any:
            self.restamp()
            if not self.refuse_failures:
                return super().apply_transaction(transaction)
            return apply_unless_failed(self, transaction)

        def mine_block_extended(self, *args: Any, **kwargs: Any) -> Any:
            self.restamp()
            return super().mine_block_extended(*args, **kwargs)

    return EmbeddedMiningChain

def apply_unless_failed(chain: MiningChain, transaction: Any) -> Any:
    """``MiningChain.apply_transaction`` (py-evm 0.12: the same public calls in the same order), with the
    execution checked before anything is persisted: a failed one is refused with ``TransactionFailed``
    carrying the revert bytes, and its VM dropped unpersisted (``get_vm`` builds a new one, with its own
    state over the database, on every call; only ``state.persist`` writes to the database and only the
    header names the pending block), so the sender's fee and nonce are as before. One EVM run where a
    simulation and a send are two (the embedded chain's placements, marketplace.engine.placing)."""
    vm = chain.get_vm(chain.header)
    base_block = vm.get_block()
    receipt, computation = vm.apply_transaction(base_block.header, transaction)
    if computation.is_error:
        reason = computation.error.args[0] if computation.error.args else b""
        raise TransactionFailed(reason if isinstance(reason, bytes) else str(reason))
    header_with_receipt = vm.add_receipt_to_header(base_block.header, receipt)
    vm.state.persist()
    new_header = header_with_receipt.copy(state_root=vm.state.state_root)
    transactions = base_block.transactions + (transaction,)
    receipts = base_block.get_receipts(chain.chaindb) + (receipt,)
    new_block = vm.set_block_transactions_and_withdrawals(base_block, new_header, transactions, receipts)
    chain.header = new_block.header
    return new_block, receipt, computation


class _EmbeddedEvm(PyEVMBackend):
    """eth-tester's py-evm backend around a chain built here (its own constructor builds its own),
    with three of its methods done as geth and anvil do them, through py-evm's public API only:

    - ``call`` skips the sender's balance check (eth-tester runs ``eth_call`` as a real transaction in
      a throw-away state, so a call from an unfunded address failed with "cannot afford txn gas": the
      sender is credited inside that throw-away state only) and keeps a revert's bytes, which custom
      errors need (``CallReverted``; eth-tester keeps only their text);
    - ``get_transaction_by_hash`` and ``get_transaction_receipt`` find a transaction through py-evm's
      hash index, checked against the canonical chain (a snapshot revert orphans blocks), instead of
      eth-tester's scan of every block back from the head, which made a receipt O(chain length).
    """

    def __init__(self, chain: MiningChain, account_keys: tuple[Any, ...]) -> None:  # noqa: D107
        self.chain = chain
        self.account_keys = account_keys

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise ChainError("the embedded chain cannot be reset to genesis; open a new one")

    def call(self, transaction: dict[str, Any], block_number: Any = "latest") -> bytes:
        tx = dict(transaction)
        tx.setdefault("gas", self._max_available_gas())
        unsigned = self._get_normalized_and_unsigned_evm_transaction(tx, block_number)
        state = self.chain.get_vm(at_header=self._header(block_number)).state
        spoofed = EVMSpoofTransaction(unsigned, from_=transaction["from"])
        snapshot = state.snapshot()
        try:
            price = getattr(spoofed, "max_fee_per_gas", None) or getattr(spoofed, "gas_price", 0)
            need = spoofed.gas * price + spoofed.value
            if state.get_balance(spoofed.sender) < need:
                state.set_balance(spoofed.sender, need)
            computation = state.apply_transaction(spoofed)
        finally:
            state.revert(snapshot)
        if computation.is_error:
            reason = computation.error.args[0] if computation.error.args else b""
            if isinstance(reason, bytes):
                raise CallReverted(reason)
            raise TransactionFailed(str(reason))
        return computation.output

    def _header(self, block_number: Any) -> BlockHeaderAPI:
        """The header a call at ``block_number`` runs on top of (eth-tester's reading of block ids: its
        head block is the pending one)."""
        head = self.chain.get_block()
        if block_number in ("latest", "safe", "finalized"):
            return self.chain.get_canonical_block_header_by_number(max(0, head.number - 1))
        if block_number == "pending":
            return head.header
        if block_number == "earliest":
            return self.chain.get_canonical_block_header_by_number(0)
        if isinstance(block_number, int) and 0 <= block_number < head.number:
            return self.chain.get_canonical_block_header_by_number(block_number)
        raise BlockNotFound(f"No block found for block number: {block_number}")

    def _find(self, transaction_hash: bytes) -> tuple[Any, Any, int]:
        head = self.chain.get_block()
        for index, tx in enumerate(head.transactions):
            if tx.hash == transaction_hash:
                return head, tx, index
        try:
            number, index = self.chain.chaindb.get_transaction_index(transaction_hash)
        except PyEvmTransactionNotFound:
            raise TransactionNotFound(f"No transaction found for transaction hash: 0x{transaction_hash.hex()}") \
                from None
        block = self.chain.get_canonical_block_by_number(number)
        if index < len(block.transactions) and block.transactions[index].hash == transaction_hash:
            return block, block.transactions[index], index
        raise TransactionNotFound(f"No transaction found for transaction hash: 0x{transaction_hash.hex()}")

    def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
        block, tx, index = self._find(transaction_hash)
        return serialize_transaction(block, tx, index, block.number == self.chain.get_block().number)

    def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
        block, tx, index = self._find(transaction_hash)
        return serialize_transaction_receipt(block, block.get_receipts(self.chain.chaindb), tx, index,
                                             block.number == self.chain.get_block().number, self.chain.get_vm())

def build_chain(mnemonic: str, accounts: int, hd_path: str, clock: ChainClock,
                genesis_timestamp: int) -> tuple[tuple[Any, ...], MiningChain, dict[bytes, bytes]]:
    """The account keys, a chain at genesis funded as eth-tester funds its accounts, and its
    key-value store (what a checkpoint copies)."""
    keys = tuple(pyevm_main.get_account_keys_from_mnemonic(mnemonic, quantity=accounts, hd_path=hd_path))
    state = pyevm_main.generate_genesis_state_for_keys(keys)
    params = pyevm_main.get_default_genesis_params({"timestamp": int(genesis_timestamp)})
    store = MemoryDB()
    return keys, chain_class(clock).from_genesis(AtomicDB(store), params, state), store.kv_store

def chain_from_store(store: dict[bytes, bytes], clock: ChainClock) -> MiningChain:
    """The chain a key-value store holds (a checkpoint's), at the head it records."""
    return chain_class(clock)(AtomicDB(MemoryDB(store)))

@dataclass
class EmbeddedChain:
    """What ``EmbeddedBackend`` holds: eth-tester's backend and tester, the RPC, and the journal if durable."""

    evm: PyEVMBackend
    tester: EthereumTester
    rpc: EmbeddedRpc
    clock: ChainClock
    journal: "BlockJournal | None"

    def close(self) -> None:
        """Close the journal (a last checkpoint, then the log) with the chain still. Idempotent."""
        if self.journal is not None:
            with self.rpc.lock:
                self.journal.close()

def assemble(chain: MiningChain, keys: tuple[Any, ...], clock: ChainClock,
             journal_for: "Callable[[PyEVMBackend], BlockJournal] | None" = None) -> EmbeddedChain:
    """eth-tester and the RPC around ``chain``; ``journal_for`` builds the journal on the backend."""
    evm = _EmbeddedEvm(chain, keys)
    tester = EthereumTester(evm)
    journal = journal_for(evm) if journal_for is not None else None
    rpc = EmbeddedRpc(tester, CHAIN_ID, clock=clock, journal=journal)
    return EmbeddedChain(evm, tester, rpc, clock, journal)

def open_embedded(mnemonic: str, accounts: int, hd_path: str, *, data_dir: Path | None = None,
                  clock: ChainClock | None = None) -> EmbeddedChain:
    """A new in-memory chain, or (``data_dir``) the chain kept there, or a new one created there."""
    clock = clock or ChainClock()
    if data_dir is not None:
        from marketplace.chain.durable import open_durable  # durable builds on this module

        return open_durable(Path(data_dir), mnemonic, accounts, hd_path, clock)
    keys, chain, _ = build_chain(mnemonic, accounts, hd_path, clock, clock.now())
    return assemble(chain, keys, clock)
