"""Buyer-signed writes relayed by the API: ``POST /v1/orders/{id}/cancel`` and ``/dispute``.

Only an order's owner may cancel or dispute it, and the API never holds a buyer's key. So
the buyer signs the transaction itself (``ComputeMarket.cancel(id)`` / ``dispute(id)``)
and posts its raw bytes, ``{"raw_tx": "0x..."}``; the API checks it and relays it to the
chain as it is. The signature *is* the authentication: the relayed bytes can do nothing
but what the buyer signed.

Checks, in order, each failing with a problem detail naming the field:
  1. ``raw_tx`` decodes as a signed transaction (EIP-1559, EIP-2930 or EIP-155 legacy) and
     its sender recovers (422 ``raw_tx``);
  2. its ``chainId`` is this chain's (422 ``chain_id``: a transaction for another chain
     would be refused or, worse, replayed there);
  3. ``to`` is the market (422 ``to``), it sends no ether (422 ``value``), its calldata is
     exactly ``cancel(uint256)`` / ``dispute(uint256)`` as the path says (422
     ``data.selector``) with the path's order id (422 ``data.order``);
  4. the order exists (404 ``order_id``) and the sender is its buyer (403 ``from``).

Then ``eth_sendRawTransaction``, wait for the receipt, and answer 200 with the decoded
events, or 409 with the contract's decoded custom error (``WrongState``,
``DisputeWindowClosed``, ...) when it reverted on chain.

Invariant: nothing is relayed unless every check passed; the API adds no transaction of
its own (the buyer pays the gas).

The routes are in ``marketplace.api.routes.orders``; this module is what they call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import rlp
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import keccak, to_checksum_address

from marketplace.chain.backends import RpcError
from marketplace.chain.market import Market
from marketplace.chain.writer import Receipt
from marketplace.errors import ChainError, InputError, NotFound, Rejected, TransactionReverted

log = logging.getLogger(__name__)

#: the buyer-only calls this relay accepts, by path action
ACTIONS = ("cancel", "dispute")
SELECTORS = {name: keccak(f"{name}(uint256)".encode())[:4] for name in ACTIONS}
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class NotOrderOwner(Rejected):
    """A buyer-only write signed by someone else."""

    http_status = 403
    code = "not-order-owner"


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A decoded signed transaction: what the relay needs to judge it."""

    tx_type: int
    chain_id: int | None
    nonce: int
    to: str | None
    value: int
    data: bytes
    sender: str
    tx_hash: str


def _int(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _recover(sighash: bytes, v: int, r: int, s: int) -> str:
    if not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2) or v not in (0, 1):
        raise InputError("raw_tx has an invalid signature (r, s or v out of range)", field="raw_tx")
    try:
        return keys.Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(sighash).to_checksum_address()
    except (BadSignature, ValueError):
        raise InputError("raw_tx: the sender cannot be recovered from its signature", field="raw_tx") from None


def decode_signed_tx(raw: bytes) -> SignedTx:
    """Decode a signed transaction and recover its sender; faults raise ``InputError(field="raw_tx")``."""
    if not raw:
        raise InputError("raw_tx is empty", field="raw_tx")
    tx_hash = "0x" + keccak(raw).hex()
    try:
        if raw[0] in (1, 2):
            fields = rlp.decode(raw[1:])
            n = 8 if raw[0] == 1 else 9  # fields before (v, r, s)
            if not isinstance(fields, list) or len(fields) != n + 3:
                raise ValueError(f"a type-{raw[0]} transaction has {n + 3} fields")
            body, (v, r, s) = fields[:n], fields[n:]
            sighash = keccak(bytes([raw[0]]) + rlp.encode(body))
            sender = _recover(sighash, _int(v), _int(r), _int(s))
            if raw[0] == 2:
                chain_id, nonce, _tip, _fee, _gas, to, value, data, _al = body
            else:
                chain_id, nonce, _price, _gas, to, value, data, _al = body
            return SignedTx(raw[0], _int(chain_id), _int(nonce), to_checksum_address(to) if to else None,
                            _int(value), bytes(data), sender, tx_hash)
        if raw[0] >= 0xC0:  # legacy RLP list
            fields = rlp.decode(raw)
            if not isinstance(fields, list) or len(fields) != 9:
                raise ValueError("a legacy transaction has 9 fields")
            nonce, price, gas, to, value, data, v_b, r, s = fields
            v = _int(v_b)
            if v in (27, 28):
                raise InputError("raw_tx is a pre-EIP-155 transaction without a chain id (replayable anywhere)",
                                 field="raw_tx", hint="sign it with a chain id (EIP-155) or as EIP-1559")
            chain_id = (v - 35) // 2
            sighash = keccak(rlp.encode([nonce, price, gas, to, value, data, chain_id, 0, 0]))
            sender = _recover(sighash, (v - 35) % 2, _int(r), _int(s))
            return SignedTx(0, chain_id, _int(nonce), to_checksum_address(to) if to else None, _int(value),
                            bytes(data), sender, tx_hash)
        raise ValueError(f"unknown transaction type 0x{raw[0]:02x}")
    except InputError:
        raise
    except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError, ValueError, TypeError) as exc:
        raise InputError(f"raw_tx is not a signed transaction: {exc}", field="raw_tx") from None


def _raw_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise InputError("raw_tx must be 0x-prefixed hex", field="raw_tx") from None


def check_buyer_call(tx: SignedTx, *, action: str, order_id: int, chain_id: int, market: str) -> None:
    """Checks 2 and 3 of the module docstring (the ones that need no chain read)."""
    if tx.chain_id != chain_id:
        raise InputError(f"raw_tx is signed for chain {tx.chain_id}, this market is on chain {chain_id}",
                         field="chain_id")
    if tx.to is None or tx.to != to_checksum_address(market):
        raise InputError(f"raw_tx calls {tx.to or 'no contract (a deployment)'}, not the market {market}",
                         field="to", hint="send cancel/dispute to the ComputeMarket of /v1/deployment")
    if tx.value:
        raise InputError(f"raw_tx sends {tx.value} wei; {action} takes none", field="value")
    want = SELECTORS[action]
    if tx.data[:4] != want:
        names = {v: k for k, v in SELECTORS.items()}
        got = names.get(tx.data[:4], "0x" + tx.data[:4].hex())
        raise InputError(f"raw_tx calls {got}, but this endpoint relays {action}(uint256) (0x{want.hex()})",
                         field="data.selector")
    if len(tx.data) != 36:
        raise InputError(f"raw_tx calldata is {len(tx.data)} bytes; {action}(uint256) takes 36",
                         field="data.order")
    got_id = _int(tx.data[4:])
    if got_id != order_id:
        raise InputError(f"raw_tx {action}s order {got_id}, the path says order {order_id}", field="data.order")


def relay(market: Market, action: str, order_id: int, raw_hex: str) -> dict[str, Any]:
    """Check a buyer's signed cancel/dispute, relay it, and return its decoded outcome."""
    raw = _raw_bytes(raw_hex)
    tx = decode_signed_tx(raw)
    chain = market.chain
    check_buyer_call(tx, action=action, order_id=order_id, chain_id=chain.backend.chain_id, market=market.address)
    if not 0 < order_id <= market.order_count:
        raise NotFound(f"no order {order_id} on this market", field="order_id")
    order = market.order(order_id)
    if tx.sender != order.buyer:
        raise NotOrderOwner(f"raw_tx is signed by {tx.sender}, but order {order_id} belongs to {order.buyer}: "
                            f"only the buyer may {action} it", reason="not-order-owner", field="from")
    try:
        chain.backend.request("eth_sendRawTransaction", ["0x" + raw.hex()])
    except RpcError as exc:
        msg = str(exc).lower()
        if exc.revert_data is not None or "revert" in msg:
            raise chain.writer.decoder.to_exception(exc.revert_data, context=f"ComputeMarket.{action}({order_id})",
                                                    tx_hash=tx.tx_hash) from None
        if "already known" in msg or "known transaction" in msg:
            pass  # a retried request: the node has these very bytes; wait for their receipt below
        elif "nonce" in msg:
            raise InputError(f"the node refused raw_tx: {exc.message}", field="raw_tx.nonce",
                             hint="sign again with the account's current nonce") from None
        elif "fund" in msg or "balance" in msg:
            raise InputError(f"the node refused raw_tx: {exc.message}", field="raw_tx",
                             hint=f"{tx.sender} needs ETH for gas") from None
        else:
            raise ChainError(f"the node refused raw_tx: {exc.message}") from None
    (rec,) = chain.writer.wait_receipts([tx.tx_hash])
    log.info("relayed %s of order %d for %s: tx %s (status %d)", action, order_id, tx.sender, tx.tx_hash, rec.status)
    if not rec.ok:
        raise _explain(market, tx, rec, action, order_id)
    decoded = market.decode(rec)
    return {"order": order_id, "action": action, "from": tx.sender, "tx": rec.tx_hash, "block": rec.block_number,
            "gas_used": rec.gas_used, "state": market.state(order_id).name.lower(),
            "events": [{"contract": e.contract, "event": e.name,
                        "args": {k: _jsonable(v) for k, v in e.args.items()}} for e in decoded.events]}


def _explain(market: Market, tx: SignedTx, rec: Receipt, action: str, order_id: int) -> TransactionReverted:
    """The custom error of a mined, reverted transaction: replay it as a call before its block."""
    call = {"from": tx.sender, "to": tx.to, "data": "0x" + tx.data.hex()}
    try:
        market.chain.backend.request("eth_call", [call, hex(max(rec.block_number - 1, 0))])
    except RpcError as exc:
        return market.chain.writer.decoder.to_exception(exc.revert_data, context=f"ComputeMarket.{action}({order_id})",
                                                        tx_hash=rec.tx_hash)
    return TransactionReverted(f"ComputeMarket.{action}({order_id}) failed on chain (out of gas?)", error="unknown",
                               tx_hash=rec.tx_hash)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if abs(v) < 2**53 else str(v)  # JSON numbers lose precision beyond 2^53 in most clients
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v
