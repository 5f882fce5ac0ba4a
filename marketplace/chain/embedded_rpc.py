"""Standard Ethereum JSON-RPC over an in-process eth-tester chain.

eth-tester speaks Python (snake_case keys, ints, exceptions). Wallets, agents in
other processes and CONA's own writer speak JSON-RPC (camelCase, hex quantities,
error objects). ``EmbeddedRpc.handle`` translates one request into the other, so
the embedded chain behaves like a node: the writer uses it directly, and the API
serves it at ``/rpc``.

Only what a node's clients need is implemented; an unknown method answers the
standard "method not found" error. One method is CONA's own: ``cona_sendRawTransactionIfSucceeds``
(a transaction that would fail is refused rather than mined: see ``embedded_chain``), which the
engine's placements use and the API's ``/rpc`` never relays.

Hot reads are cheap, because every reader in ``cona up`` shares one interpreter with the API
(``cona bench api``): ``eth_blockNumber`` is read from the chain's pending header without the
chain lock (the engine, the views and every agent ask it several times a second; eth-tester
builds, validates and normalises the whole latest block to answer it), and a mined block is
encoded once and kept. Invariants: the head number only moves after its block is persisted
(py-evm replaces the pending header after the import), so an answer never names a block that
a locked call cannot read; a kept block is keyed by the head's hash, which commits to every
block below it, so a new block or a snapshot revert drops the whole cache.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from eth_tester import EthereumTester
from eth_tester.exceptions import (
    BlockNotFound,
    FilterNotFound,
    SnapshotNotFound,
    TransactionFailed,
    TransactionNotFound,
    ValidationError,
)

from marketplace.errors import InputError

if TYPE_CHECKING:
    from marketplace.chain.clock import ChainClock
    from marketplace.chain.durable import BlockJournal

log = logging.getLogger(__name__)

_SNAKE = re.compile(r"_([a-z0-9])")
_KEEP = {"sha3_uncles": "sha3Uncles"}


def _camel(key: str) -> str:
    return _KEEP.get(key) or _SNAKE.sub(lambda m: m.group(1).upper(), key)


def to_rpc(value: Any, key: str = "") -> Any:
    """eth-tester value to its JSON-RPC form (hex quantities, camelCase keys)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if key == "logs_bloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {_camel(k): to_rpc(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_rpc(v, key) for v in value]
    return value


_TX_KEYS = {
    "from": "from", "to": "to", "gas": "gas", "gasPrice": "gas_price", "value": "value", "data": "data",
    "input": "data", "nonce": "nonce", "maxFeePerGas": "max_fee_per_gas",
    "maxPriorityFeePerGas": "max_priority_fee_per_gas", "accessList": "access_list", "chainId": "chain_id",
}
_QUANTITIES = {"gas", "gas_price", "value", "nonce", "max_fee_per_gas", "max_priority_fee_per_gas", "chain_id"}


def tx_from_rpc(tx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tx.items():
        name = _TX_KEYS.get(k)
        if name is None or v is None:
            continue
        if name in _QUANTITIES and isinstance(v, str):
            v = int(v, 16)
        out[name] = v
    out.setdefault("from", "0x" + "00" * 20)
    if "data" not in out:
        out["data"] = "0x"
    return out


def _block_id(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    if isinstance(value, dict):  # EIP-1898 {blockNumber} / {blockHash}
        return _block_id(value.get("blockNumber", "latest"))
    return value if value is not None else "latest"


class RpcFailure(Exception):
    """An error answer: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


#: methods answered without the chain lock: they read one attribute set atomically (see the docstring)
_LOCK_FREE = frozenset({"eth_blockNumber", "eth_chainId", "net_version", "web3_clientVersion"})
#: mined blocks kept encoded (per head: the cache is dropped whenever the head moves)
MAX_KEPT_BLOCKS = 64
#: methods that may change the chain (and so the block log); anything else only reads
WRITES = frozenset({"eth_sendRawTransaction", "cona_sendRawTransactionIfSucceeds", "eth_sendTransaction",
                    "evm_mine", "anvil_mine", "evm_revert", "evm_increaseTime", "evm_setNextBlockTimestamp",
                    "evm_setAutomine"})


class EmbeddedRpc:
    """JSON-RPC methods over an ``EthereumTester``. Thread-safe (one lock: py-evm is not)."""

    def __init__(self, tester: EthereumTester, chain_id: int, *, clock: "ChainClock",
                 journal: "BlockJournal | None" = None) -> None:
        self.tester = tester
        self.clock = clock
        self.journal = journal
        #: why the chain stopped (the block log could not be written), or None
        self.failure: str | None = None
        self._snapshot_offsets: dict[int, int] = {}
        # the instance has its estimator already; the class serves the chain objects that
        # eth-tester builds anew on every revert
        type(tester.backend.chain).gas_estimator = staticmethod(fast_gas_estimate)
        tester.backend.chain.gas_estimator = fast_gas_estimate
        self.chain_id = chain_id
        self.lock = threading.RLock()
        self._methods: dict[str, Callable[..., Any]] = {
            name[4:].replace("__", "_"): getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }
        #: (head hash, {(number, full): encoded block}); replaced whole when the head moves
        self._blocks: tuple[bytes, dict[tuple[int, bool], dict[str, Any]]] = (b"", {})

    def head_number(self) -> int:
        """The latest mined block's number, without the lock: the pending header is one attribute,
        replaced only after its parent is persisted (eth-tester's "latest" is the pending's parent),
        and never above the durable head when the chain keeps a log."""
        head = max(0, self.tester.backend.chain.header.block_number - 1)
        return head if self.journal is None else min(head, self.journal.durable_head)

    def handle_batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Answer calls in order. A batch that writes runs under the lock once and syncs the log once."""
        if self.journal is None or not any(method in WRITES for method, _ in calls):
            return [self.handle(method, params) for method, params in calls]
        with self.lock:
            if self.failure is not None:
                return [self._stopped()] * len(calls)
            answers = [self._call(method, params) for method, params in calls]
            failed = self._sync()
        return [failed] * len(answers) if failed else answers

    def handle(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method in _LOCK_FREE and self.failure is None:
            return self._call(method, params)
        with self.lock:
            if self.failure is not None:
                return self._stopped()
            answer = self._call(method, params)
            return self._sync() or answer

    def _stopped(self) -> dict[str, Any]:
        return {"error": {"code": -32603, "message": self.failure}}

    def _sync(self) -> dict[str, Any] | None:
        """Bring the block log up to the chain (under the lock); an error answer if it cannot be."""
        if self.journal is None:
            return None
        try:
            self.journal.sync()
        except Exception as exc:  # OSError inside ChainError, or anything the encoding raises
            self.failure = f"the embedded chain stopped: its block log cannot be written ({exc}); restart the market"
            log.error("embedded chain: %s", self.failure)
            return self._stopped()
        return None

    def _call(self, method: str, params: list[Any]) -> dict[str, Any]:
        fn = self._methods.get(method)
        if fn is None:
            return {"error": {"code": -32601, "message": f"the method {method} does not exist/is not available"}}
        try:
            return {"result": fn(*params)}
        except InputError as exc:  # the clock refused to move backwards
            return {"error": {"code": -32602, "message": exc.message}}
        except RpcFailure as exc:
            err: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                err["data"] = exc.data
            return {"error": err}
        except TransactionFailed as exc:
            return {"error": _revert_error(exc)}
        except (TransactionNotFound, BlockNotFound):
            return {"result": None}
        except (ValidationError, FilterNotFound, SnapshotNotFound) as exc:
            return {"error": {"code": -32000, "message": str(exc) or type(exc).__name__}}
        except Exception as exc:  # the RPC boundary: py-evm and eth-utils raise their own validation errors
            log.debug("embedded rpc %s failed: %r", method, exc)
            return {"error": {"code": -32000, "message": f"{type(exc).__name__}: {exc}"}}

    # -- chain ---------------------------------------------------------------------------

    def rpc_eth_chainId(self) -> str:
        return hex(self.chain_id)

    def rpc_net_version(self) -> str:
        return str(self.chain_id)

    def rpc_web3_clientVersion(self) -> str:
        return "cona-embedded/eth-tester"

    def rpc_eth_blockNumber(self) -> str:
        return hex(self.head_number())

    def rpc_eth_getBlockByNumber(self, number: Any = "latest", full: bool = False) -> Any:
        number = _block_id(number)
        pending = self.tester.backend.chain.header
        if number in ("latest", "safe", "finalized"):
            number = max(0, pending.block_number - 1)
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < pending.block_number:
            return to_rpc(self.tester.get_block_by_number(number, full))  # pending, earliest, or not found
        # a mined block never changes while the head's hash (which commits to it) stays the same
        head, kept = self._blocks
        if head != pending.parent_hash:
            kept = {}
            self._blocks = (pending.parent_hash, kept)
        key = (number, bool(full))
        block = kept.get(key)
        if block is None:
            block = to_rpc(self.tester.get_block_by_number(number, full))
            if len(kept) >= MAX_KEPT_BLOCKS:
                kept.pop(next(iter(kept)))
            kept[key] = block
        return dict(block)  # a caller may change its top level; the kept one stays as encoded

    def rpc_eth_getBlockByHash(self, block_hash: str, full: bool = False) -> Any:
        return to_rpc(self.tester.get_block_by_hash(block_hash, full))

    def rpc_eth_accounts(self) -> list[str]:
        return list(self.tester.get_accounts())

    def rpc_eth_getBalance(self, account: str, block: Any = "latest") -> str:
        return hex(self.tester.get_balance(account, _block_id(block)))

    def rpc_eth_getTransactionCount(self, account: str, block: Any = "latest") -> str:
        return hex(self.tester.get_nonce(account, _block_id(block)))

    def rpc_eth_getCode(self, account: str, block: Any = "latest") -> str:
        return to_rpc(self.tester.get_code(account, _block_id(block)))

    def rpc_eth_getStorageAt(self, account: str, slot: str, block: Any = "latest") -> str:
        value = self.tester.get_storage_at(account, slot, _block_id(block))
        if isinstance(value, int):
            return "0x" + value.to_bytes(32, "big").hex()
        return to_rpc(value)

    def rpc_eth_gasPrice(self) -> str:
        return hex(self.tester.get_block_by_number("latest").get("base_fee_per_gas") or 10**9)

    def rpc_eth_maxPriorityFeePerGas(self) -> str:
        return hex(10**9)

    def rpc_eth_feeHistory(self, count: Any, newest: Any, percentiles: list[int] | None = None) -> Any:
        count = int(count, 16) if isinstance(count, str) else int(count)
        return to_rpc(self.tester.get_fee_history(count, _block_id(newest), percentiles or []))

    # -- execution -----------------------------------------------------------------------

    def rpc_eth_call(self, tx: dict[str, Any], block: Any = "latest") -> str:
        if block == "pending":
            self._restamp()  # the pending block is stamped now, as anvil's is
        try:
            return to_rpc(self.tester.call(tx_from_rpc(tx), _block_id(block)))
        except CallReverted as exc:  # the revert bytes a custom error needs (EmbeddedEvm.call keeps them)
            raise RpcFailure(3, "execution reverted", "0x" + exc.data.hex()) from None

    def rpc_eth_estimateGas(self, tx: dict[str, Any], block: Any = "pending") -> str:
        # "latest" and "pending" both simulate a block on top of the head stamped by the clock now:
        # anvil's default, so a transaction that becomes valid with time (a timeout) is estimated
        # as it will be mined, even on an idle chain
        block = "latest" if block == "pending" else _block_id(block)
        return hex(self.tester.estimate_gas(tx_from_rpc(tx), block))

    def rpc_eth_sendRawTransaction(self, raw: str) -> str:
        return self.tester.send_raw_transaction(raw)

    def rpc_cona_sendRawTransactionIfSucceeds(self, raw: str) -> str:
        """``eth_sendRawTransaction``, except that a transaction whose execution fails is refused (error 3
        with the revert bytes, as a failed ``eth_call``) rather than mined as failed: the simulation and
        the send in one EVM run. CONA's own writer uses it (``transact_many(if_succeeds=True)``); the
        API's ``/rpc`` does not serve it."""
        chain = self.tester.backend.chain
        chain.refuse_failures = True
        try:
            return self.tester.send_raw_transaction(raw)
        finally:
            chain.refuse_failures = False

    def rpc_eth_getTransactionReceipt(self, tx_hash: str) -> Any:
        receipt = self.tester.get_transaction_receipt(tx_hash)
        if receipt.get("block_number") is None:
            return None
        return to_rpc(receipt)

    def rpc_eth_getTransactionByHash(self, tx_hash: str) -> Any:
        return to_rpc(self.tester.get_transaction_by_hash(tx_hash))

    # -- logs and filters ----------------------------------------------------------------

    @staticmethod
    def _filter_args(flt: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "fromBlock" in flt:
            out["from_block"] = _block_id(flt["fromBlock"])
        if "toBlock" in flt:
            out["to_block"] = _block_id(flt["toBlock"])
        if flt.get("address") is not None:
            out["address"] = flt["address"]
        if flt.get("topics") is not None:
            out["topics"] = flt["topics"]
        return out

    def rpc_eth_getLogs(self, flt: dict[str, Any]) -> Any:
        args = self._filter_args(flt)
        if "blockHash" in flt:
            number = self.tester.get_block_by_hash(flt["blockHash"])["number"]
            args["from_block"] = args["to_block"] = number
        return to_rpc(list(self.tester.get_logs(**args)))

    def rpc_eth_newFilter(self, flt: dict[str, Any]) -> str:
        return hex(self.tester.create_log_filter(**self._filter_args(flt)))

    def rpc_eth_newBlockFilter(self) -> str:
        return hex(self.tester.create_block_filter())

    def rpc_eth_getFilterChanges(self, filter_id: str) -> Any:
        return to_rpc(list(self.tester.get_only_filter_changes(int(filter_id, 16))))

    def rpc_eth_getFilterLogs(self, filter_id: str) -> Any:
        return to_rpc(list(self.tester.get_all_filter_logs(int(filter_id, 16))))

    def rpc_eth_uninstallFilter(self, filter_id: str) -> bool:
        self.tester.delete_filter(int(filter_id, 16))
        return True

    # -- test controls (the names anvil and hardhat use) ---------------------------------

    def rpc_evm_snapshot(self) -> str:
        snap = self.tester.take_snapshot()
        if isinstance(snap, int):
            self._snapshot_offsets[snap] = self.clock.offset
        return hex(snap) if isinstance(snap, int) else to_rpc(snap)

    def rpc_evm_revert(self, snapshot: Any) -> bool:
        if isinstance(snapshot, str) and len(snapshot) <= 18:
            snapshot = int(snapshot, 16)
        self.tester.revert_to_snapshot(snapshot)
        if snapshot in self._snapshot_offsets:
            self.clock.restore(self._snapshot_offsets[snapshot])
        self._restamp()
        return True

    def rpc_evm_increaseTime(self, seconds: Any) -> str:
        self.clock.advance(_quantity(seconds, "seconds"))
        self._restamp()
        return hex(self.clock.offset)

    def rpc_evm_setNextBlockTimestamp(self, ts: Any) -> None:
        self.clock.set_next(_quantity(ts, "timestamp"), self.tester.get_block_by_number("latest")["timestamp"])
        self._restamp()

    def _restamp(self) -> None:
        """Re-stamp the (empty) pending block after the clock moved, so reads of "pending" agree."""
        self.tester.backend.chain.restamp()

    def rpc_evm_mine(self, *_: Any) -> str:
        self.tester.mine_blocks(1)
        return "0x0"

    def rpc_anvil_mine(self, blocks: Any = 1, *_: Any) -> None:
        self.tester.mine_blocks(int(blocks, 16) if isinstance(blocks, str) else int(blocks))

    def rpc_evm_setAutomine(self, enabled: bool) -> None:
        if enabled:
            self.tester.enable_auto_mine_transactions()
        else:
            self.tester.disable_auto_mine_transactions()


def _quantity(value: Any, name: str) -> int:
    try:
        return int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise RpcFailure(-32602, f"{name} must be a quantity, got {value!r}") from None


def _revert_error(exc: TransactionFailed) -> dict[str, Any]:
    payload = exc.args[0] if exc.args else b""
    while isinstance(payload, BaseException):  # estimateGas wraps py-evm's Revert(bytes)
        payload = payload.args[0] if payload.args else b""
    if isinstance(payload, (bytes, bytearray)):
        return {"code": 3, "message": "execution reverted", "data": "0x" + bytes(payload).hex()}
    return {"code": 3, "message": f"execution reverted: {payload}"}


def fast_gas_estimate(state: Any, transaction: Any) -> int:
    """Gas estimation in two executions instead of py-evm's binary search (about 13).

    The transaction runs once with the block's gas limit; what it used (intrinsic plus
    execution, before refunds) is then tried as the limit. Only when the 63/64 rule of
    EIP-150 makes a call need more than it finally uses does that fail, and the limit
    grows by 1/63 plus a stipend until it passes, as geth's estimator converges. The
    result is never below what the transaction needs: each answer is verified by a run.
    """
    from eth.estimators.gas import binary_gas_search_1000_tolerance
    from eth.vm.spoof import SpoofTransaction

    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0))
    finally:
        state.revert(snapshot)
    if computation.is_error:
        raise computation.error
    guess = min(transaction.intrinsic_gas + computation.get_gas_used(), state.gas_limit)
    for _ in range(4):
        if _runs_clean(state, SpoofTransaction(transaction, gas=guess)):
            return guess
        guess = min(guess + guess // 63 + 2_300, state.gas_limit)
    return binary_gas_search_1000_tolerance(state, transaction)


def _runs_clean(state: Any, transaction: Any) -> bool:
    """Whether ``transaction`` runs without an error on ``state`` (left as it was)."""
    snapshot = state.snapshot()
    try:
        return not state.apply_transaction(transaction).is_error
    finally:
        state.revert(snapshot)


class CallReverted(TransactionFailed):
    """An ``eth_call`` that reverted, with the revert bytes (eth-tester keeps only their text)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.data = data
