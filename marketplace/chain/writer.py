"""The transaction writer: the single path by which CONA writes to any chain.

It owns each sender's nonce, signs locally (EIP-1559, with coincurve), sends raw
transactions one at a time or as a JSON-RPC batch, waits for receipts, and
decodes every revert into the contract's custom error.

Invariants:
- one intent is never broadcast as two different transactions. A caller-given
  idempotency key maps to the signed bytes, which are journalled *before* they
  are sent; a retry (or a restart with the journal) re-sends the same bytes,
  whose hash the node already knows;
- a nonce is consumed only by a transaction the node accepted; after
  ``nonce too low`` or any rejected send, the nonce is re-read from the chain;
- private keys never appear in logs, errors or reprs (``Signer`` keeps the key
  in a coincurve object and shows only the address).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import rlp
from coincurve import PrivateKey
from eth_utils import keccak, to_canonical_address, to_checksum_address

from marketplace.chain.backends import ChainBackend, RpcError
from marketplace.chain.revert import RevertDecoder
from marketplace.errors import ChainError, InputError, InsufficientFunds, NonceConflict, TransactionReverted

log = logging.getLogger(__name__)

GWEI = 10**9
#: gas added to every estimate (after the multiplier). A block can be stamped a second after the
#: estimate ran (the clock moves on between estimate and inclusion, on any chain), and a contract's
#: path can depend on the time: a lease failed in its first second is estimated with nothing served
#: and mined with one second served, which pays the provider and the fee recipient, credits the
#: buyer's compensation and counts both in the order (``paid``, ``compensated``): about 100,000 gas
#: more, measured (tests/chain/test_embedded_clock.py). Half as much again covers the next such
#: path. Unused gas is not charged.
GAS_HEADROOM = 150_000


class Signer:
    """A secp256k1 key that signs EIP-1559 transactions. Its repr shows the address only."""

    __slots__ = ("_key", "address", "_canonical")

    def __init__(self, private_key: bytes | str | Any) -> None:
        raw = _key_bytes(private_key)
        self._key = PrivateKey(raw)
        pub = self._key.public_key.format(compressed=False)[1:]
        self._canonical = keccak(pub)[-20:]
        self.address = to_checksum_address(self._canonical)

    def __repr__(self) -> str:
        return f"Signer({self.address})"

    __str__ = __repr__

    def sign_digest(self, digest: bytes) -> tuple[int, int, int]:
        """(v in {0,1}, r, s) over a 32-byte digest; low-s as libsecp256k1 makes them."""
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[64], int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")

    def sign_1559(self, *, chain_id: int, nonce: int, tip: int, max_fee: int, gas: int, to: str | None,
                  value: int, data: bytes) -> tuple[bytes, str]:
        """The raw signed type-2 transaction and its hash (0x-hex)."""
        to_b = to_canonical_address(to) if to else b""
        fields = [chain_id, nonce, tip, max_fee, gas, to_b, value, data, []]
        v, r, s = self.sign_digest(keccak(b"\x02" + rlp.encode(fields)))
        raw = b"\x02" + rlp.encode(fields + [v, r, s])
        return raw, "0x" + keccak(raw).hex()


def _key_bytes(key: Any) -> bytes:
    if isinstance(key, Signer):
        raise InputError("already a Signer", field="private_key")
    if hasattr(key, "key"):  # eth_account LocalAccount
        key = key.key
    if isinstance(key, str):
        key = bytes.fromhex(key[2:] if key.startswith("0x") else key)
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise InputError("a private key must be 32 bytes", field="private_key")
    return bytes(key)


def as_signer(key_or_signer: Any) -> Signer:
    return key_or_signer if isinstance(key_or_signer, Signer) else Signer(key_or_signer)


@dataclass(frozen=True)
class TxRequest:
    """One intent to write: a call (``to`` set) or a deployment (``to`` None)."""

    to: str | None
    data: bytes = b""
    value: int = 0
    gas: int | None = None
    key: str | None = None  # idempotency key
    label: str = ""  # for errors and logs: "ComputeMarket.assign(7)"


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    status: int
    gas_used: int
    contract_address: str | None
    logs: tuple[dict[str, Any], ...]
    effective_gas_price: int
    error: TransactionReverted | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == 1

    @classmethod
    def from_rpc(cls, raw: dict[str, Any]) -> "Receipt":
        ca = raw.get("contractAddress")
        return cls(
            tx_hash=raw["transactionHash"],
            block_number=int(raw["blockNumber"], 16),
            status=int(raw["status"], 16),
            gas_used=int(raw["gasUsed"], 16),
            contract_address=to_checksum_address(ca) if ca else None,
            logs=tuple(raw.get("logs") or ()),
            effective_gas_price=int(raw.get("effectiveGasPrice") or "0x0", 16),
        )


class IdempotencyJournal:
    """Idempotency key -> signed transaction, kept in memory and optionally in a JSON-lines file.

    The entry is written before the transaction is sent, so after a crash the same
    bytes (same nonce, same hash) are re-sent rather than a second transaction.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        log.warning("journal %s: skipping a torn line", path)
                        continue
                    self._entries[entry["key"]] = entry

    def get(self, key: str) -> dict[str, str] | None:
        return self._entries.get(key)

    def put(self, key: str, tx_hash: str, raw: bytes, sender: str) -> None:
        entry = {"key": key, "tx_hash": tx_hash, "raw": "0x" + raw.hex(), "sender": sender}
        with self._lock:
            self._entries[key] = entry
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                    fh.flush()


_NONCE_LOW = ("nonce too low", "nonce is too low", "oldnonce", "already been used", "invalid nonce",
              "invalid transaction nonce")
_KNOWN = ("already known", "known transaction", "alreadyknown", "already imported")
_FUNDS = ("insufficient funds", "cannot afford", "insufficientfunds")
_FEE_LOW = ("max fee per gas less than block base fee", "feecap", "fee cap less than", "underpriced")


def _has(msg: str, needles: Sequence[str]) -> bool:
    low = msg.lower()
    return any(n in low for n in needles)


class TransactionWriter:
    """Signs, sends and confirms transactions for any number of senders on one backend."""

    def __init__(self, backend: ChainBackend, decoder: RevertDecoder | None = None, *,
                 journal: IdempotencyJournal | None = None, gas_multiplier: float = 1.25,
                 receipt_timeout: float = 120.0, tip: int = 1 * GWEI) -> None:
        self.backend = backend
        self.decoder = decoder or RevertDecoder()
        self.journal = journal or IdempotencyJournal()
        self.gas_multiplier = gas_multiplier
        self.receipt_timeout = receipt_timeout
        self.tip = tip
        self._nonces: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._meta = threading.Lock()
        self._fee: tuple[float, int] | None = None
        self._chain_id = backend.chain_id
        self._gas_cap: int | None = None

    # -- nonce and fees ----------------------------------------------------------

    def _lock_for(self, address: str) -> threading.Lock:
        with self._meta:
            return self._locks.setdefault(address, threading.Lock())

    def _sync_nonce(self, address: str) -> int:
        n = int(self.backend.request("eth_getTransactionCount", [address, "pending"]), 16)
        self._nonces[address] = n
        return n

    def _next_nonce(self, address: str) -> int:
        if address not in self._nonces:
            self._sync_nonce(address)
        n = self._nonces[address]
        self._nonces[address] = n + 1
        return n

    def forget_nonces(self) -> None:
        """Drop cached nonces (after a snapshot revert or a chain reorganisation); re-read on next use."""
        with self._meta:
            self._nonces.clear()

    @property
    def gas_cap(self) -> int | None:
        """The block gas limit the writer last read (with the fee, ``max_fee``); None before that."""
        return self._gas_cap

    def max_fee(self, refresh: bool = False) -> int:
        now = time.monotonic()
        if refresh or self._fee is None or now - self._fee[0] > 5.0:
            block = self.backend.latest_block()
            base = int(block.get("baseFeePerGas") or "0x0", 16)
            self._gas_cap = int(block["gasLimit"], 16)
            self._fee = (now, 2 * base + self.tip)
        return self._fee[1]

    # -- preparing -------------------------------------------------------------

    def estimate_gas(self, sender: str, req: TxRequest) -> int:
        call: dict[str, Any] = {"from": sender, "data": "0x" + req.data.hex(), "value": hex(req.value)}
        if req.to:
            call["to"] = req.to
        try:
            est = int(self.backend.request("eth_estimateGas", [call]), 16)
        except RpcError as exc:
            raise self._classify(exc, sender, req) from None
        self.max_fee()
        cap = self._gas_cap or est * 2
        return min(int(est * self.gas_multiplier) + GAS_HEADROOM, cap)

    def _sign(self, signer: Signer, req: TxRequest) -> tuple[bytes, str]:
        # estimate first: a request that would revert must not consume a nonce
        gas = req.gas if req.gas is not None else self.estimate_gas(signer.address, req)
        return signer.sign_1559(chain_id=self._chain_id, nonce=self._next_nonce(signer.address), tip=self.tip,
                                max_fee=self.max_fee(), gas=gas, to=req.to, value=req.value, data=req.data)

    def _classify(self, exc: RpcError, sender: str, req: TxRequest, tx_hash: str | None = None) -> ChainError:
        msg = str(exc)
        what = req.label or (f"call to {req.to}" if req.to else "deployment")
        revert = exc.revert_data
        if revert is not None or "revert" in msg.lower():
            return self.decoder.to_exception(revert, context=what, tx_hash=tx_hash)
        if _has(msg, _FUNDS):
            return InsufficientFunds(
                f"{sender} cannot pay for {what}: {exc.message}",
                hint=f"fund {sender} with ETH for gas (and the value sent)",
            )
        if _has(msg, _NONCE_LOW):
            return NonceConflict(f"{what} from {sender}: {exc.message}", hint="another writer uses this account")
        return ChainError(f"{what} from {sender} was refused: {exc.message}")

    # -- sending ---------------------------------------------------------------

    def transact(self, sender: Any, req: TxRequest | None = None, /, **kw: Any) -> Receipt:
        """Send one transaction and wait for its receipt; raise ``TransactionReverted`` on revert."""
        req = req or TxRequest(**kw)
        (receipt,) = self.transact_many(sender, [req])
        if receipt.error is not None:
            raise receipt.error
        return receipt

    def transact_many(self, sender: Any, reqs: Sequence[TxRequest], *, wait: bool = True,
                      if_succeeds: bool = False) -> list[Receipt]:
        """Sign all, send them as one JSON-RPC batch, then fetch receipts as a batch.

        Reverted transactions come back with ``status == 0`` and a decoded ``error``;
        they are not raised, because the others in the batch still happened. ``if_succeeds``
        (a node with ``backend.refuses_failed_sends`` only): a transaction whose execution would
        fail is refused by the node instead of mined, and raised as ``TransactionReverted``;
        nothing is spent and its nonce is not used.
        """
        signer = as_signer(sender)
        addr = signer.address
        if if_succeeds and not self.backend.refuses_failed_sends:
            raise ChainError(f"{self.backend.describe()} cannot refuse a failing transaction; simulate it first")
        method = "cona_sendRawTransactionIfSucceeds" if if_succeeds else "eth_sendRawTransaction"
        with self._lock_for(addr):
            hashes = self._send_signed(signer, list(reqs), method)
        if not wait:
            return []
        receipts = self.wait_receipts(hashes)
        out = []
        for req, rec in zip(reqs, receipts):
            if not rec.ok:
                rec = Receipt(**{**rec.__dict__, "error": self._explain_failure(addr, req, rec)})
            out.append(rec)
        return out

    def _send_signed(self, signer: Signer, reqs: list[TxRequest], method: str = "eth_sendRawTransaction") -> list[str]:
        addr = signer.address
        pending: list[tuple[int, TxRequest, bytes, str]] = []  # index, req, raw, hash
        hashes: list[str | None] = [None] * len(reqs)
        for i, req in enumerate(reqs):
            if req.key is not None:
                prior = self.journal.get(req.key)
                if prior is not None:
                    # already signed once: re-send the very same bytes (a no-op if the node has them)
                    log.info("idempotency key %s already used by tx %s; not sending again", req.key, prior["tx_hash"])
                    pending.append((i, req, bytes.fromhex(prior["raw"][2:]), prior["tx_hash"]))
                    continue
            raw, h = self._sign(signer, req)
            if req.key is not None:
                self.journal.put(req.key, h, raw, addr)
            pending.append((i, req, raw, h))

        for attempt in range(3):
            answers = self.backend.batch((method, ["0x" + raw.hex()]) for _, _, raw, _ in pending)
            retry: list[tuple[int, TxRequest, bytes, str]] = []
            for (i, req, raw, h), ans in zip(pending, answers):
                if not isinstance(ans, RpcError):
                    hashes[i] = h
                    continue
                msg = str(ans)
                if _has(msg, _KNOWN):
                    hashes[i] = h
                elif _has(msg, _NONCE_LOW) or _has(msg, _FEE_LOW):
                    if self._known(h):
                        # these very bytes already reached the node (an earlier run, or a transport
                        # retry of a batch that partly landed): re-signing would send the intent twice
                        hashes[i] = h
                        continue
                    retry.append((i, req, raw, h))
                else:
                    self._sync_nonce(addr)
                    raise self._classify(ans, addr, req)
            if not retry:
                break
            # nonces moved under us (another writer, a restarted node): re-read and re-sign the rest
            log.warning("%d tx from %s refused (nonce/fee); re-syncing nonce, attempt %d", len(retry), addr, attempt + 1)
            self._sync_nonce(addr)
            self.max_fee(refresh=True)
            pending = []
            for i, req, _, _ in retry:
                raw, h = self._sign(signer, req)
                if req.key is not None:
                    self.journal.put(req.key, h, raw, addr)
                pending.append((i, req, raw, h))
        else:
            self._sync_nonce(addr)
            raise NonceConflict(f"could not place {len(pending)} transaction(s) from {addr} after 3 nonce re-syncs",
                                hint="is another process sending from the same account?")
        return [h for h in hashes if h is not None]

    def _known(self, tx_hash: str) -> bool:
        """Whether the node has this exact signed transaction, mined or pending."""
        try:
            return self.backend.request("eth_getTransactionByHash", [tx_hash]) is not None
        except RpcError:
            return False

    def wait_receipts(self, hashes: Sequence[str]) -> list[Receipt]:
        found: dict[str, Receipt] = {}
        deadline = time.monotonic() + self.receipt_timeout
        # an automining node has the receipt within a fraction of a millisecond: poll fast first
        delay = 0.0002
        todo = list(dict.fromkeys(hashes))
        while todo:
            answers = self.backend.batch(("eth_getTransactionReceipt", [h]) for h in todo)
            still = []
            for h, ans in zip(todo, answers):
                if isinstance(ans, dict):
                    found[h] = Receipt.from_rpc(ans)
                else:
                    still.append(h)
            todo = still
            if todo:
                if time.monotonic() > deadline:
                    raise ChainError(f"{len(todo)} transaction(s) not mined after {self.receipt_timeout:.0f}s",
                                     hint="is the node mining? (anvil --no-mining needs evm_mine)")
                time.sleep(delay)
                delay = min(delay * 1.5, 0.2)
        return [found[h] for h in hashes]

    def _explain_failure(self, sender: str, req: TxRequest, rec: Receipt) -> TransactionReverted:
        """Replay a failed transaction as a call on the state before its block to get the revert data."""
        call: dict[str, Any] = {"from": sender, "data": "0x" + req.data.hex(), "value": hex(req.value)}
        if req.to:
            call["to"] = req.to
        what = req.label or (f"call to {req.to}" if req.to else "deployment")
        try:
            self.backend.request("eth_call", [call, hex(max(rec.block_number - 1, 0))])
        except RpcError as exc:
            return self.decoder.to_exception(exc.revert_data, context=what, tx_hash=rec.tx_hash)
        return TransactionReverted(f"{what} failed on chain (out of gas or state changed within its block)",
                                   error="unknown", tx_hash=rec.tx_hash)

    # -- reads -------------------------------------------------------------------

    def call(self, to: str, data: bytes, *, sender: str | None = None, value: int = 0, block: str = "latest",
             label: str = "") -> bytes:
        call: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            call["from"] = sender
        if value:
            call["value"] = hex(value)
        try:
            out = self.backend.request("eth_call", [call, block])
        except RpcError as exc:
            raise self._classify(exc, sender or "0x0", TxRequest(to=to, data=data, label=label)) from None
        return bytes.fromhex(out[2:]) if isinstance(out, str) else bytes(out or b"")
