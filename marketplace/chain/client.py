"""The base of the typed contract clients, and the checks of the values they send.

A client (``Registry``, ``Market``) wraps one bound contract: each write goes through the
transaction writer (nonces, batching, idempotency keys and revert decoding are the same
everywhere) and comes back as a ``Tx``, the receipt with the events of every contract the call
touched, decoded in log order. Payment is native ETH or one ERC-20: ``_pay`` hides the
difference (an ETH payment is sent as ``value``, a token payment is approved first).

Invariant: a value reaches the ABI encoder only through ``check_uint``/``b32`` or a frozen
value whose constructor checked it, so a bad input is an ``InputError`` naming its field,
never an encoder exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from marketplace.chain.contracts import BoundContract, Chain, Event
from marketplace.chain.writer import Receipt, Signer, as_signer
from marketplace.errors import ChainError, InputError


def check_uint(name: str, value: int, bits: int) -> int:
    """``value`` if it fits a ``uint<bits>``; otherwise an ``InputError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, not {type(value).__name__}", field=name)
    if not 0 <= value < 2**bits:
        raise InputError(f"{name} must be within 0..2^{bits}-1, got {value}", field=name)
    return value


def b32(name: str, value: bytes | str) -> bytes:
    """A ``bytes32`` argument from bytes or hex text; anything else names the field."""
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value[2:] if value.startswith("0x") else value)
        except ValueError:
            raise InputError(f"{name} must be 32 bytes of hex, got {value!r}", field=name) from None
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise InputError(f"{name} must be 32 bytes", field=name)
    return bytes(value)


@dataclass(frozen=True)
class Tx:
    """A mined transaction and the events it emitted (decoded, in log order)."""

    receipt: Receipt
    events: tuple[Event, ...]

    @property
    def tx_hash(self) -> str:
        return self.receipt.tx_hash

    @property
    def gas_used(self) -> int:
        return self.receipt.gas_used

    def event(self, name: str) -> Event:
        found = [e for e in self.events if e.name == name]
        if len(found) != 1:
            raise ChainError(f"expected one {name} event in {self.tx_hash}, found {len(found)}")
        return found[0]

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@dataclass(frozen=True)
class EscrowCheck:
    """The contract's own books: what it holds against what it owes."""

    contract: str
    held: int
    owed: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.held == self.owed


class ContractClient:
    """One contract (and the payment token, if any): sends through the writer, decodes what came back."""

    def __init__(self, chain: Chain, contract: BoundContract, token: BoundContract | None) -> None:
        self.chain = chain
        self.contract = contract
        self.token = token
        self.address = contract.address

    def _tx(self, sender: Any, fn: str, *args: Any, value: int = 0, key: str | None = None) -> Tx:
        rec = self.contract.transact(as_signer(sender), fn, *args, value=value, key=key)
        return Tx(rec, tuple(self._decode(rec)))

    def _decode(self, rec: Receipt) -> list[Event]:
        # events of every contract involved (a market call also emits registry events)
        out = []
        for lg in rec.logs:
            abi = self._abis.get(to_checksum_address(lg["address"]))
            if abi is not None:
                ev = abi.decode_log(lg)
                if ev is not None:
                    out.append(ev)
        return out

    @property
    def _abis(self) -> dict[str, Any]:
        return {c.address: c.abi for c in self._contracts()}

    def _contracts(self) -> list[BoundContract]:
        return [self.contract]

    def _pay(self, sender: Signer, amount: int) -> int:
        """Prepares a payment of ``amount`` to this contract: returns the ETH value to send
        (0 for a token, after approving it)."""
        if self.token is None:
            return amount
        if self.token.call("allowance", sender.address, self.address) < amount:
            self.token.transact(sender, "approve", self.address, amount)
        return 0
