"""EIP-712 order intents: what a buyer signs, hashed exactly as ``ComputeMarket`` hashes it.

``intent_digest`` equals the contract's ``intentDigest`` (the tests check it), so a buyer signs
offline and the orchestrator submits many intents in one transaction without ever holding the
buyer's key. ``cost`` is the contract's ``_cost``, the escrow rule an intent locks.

Invariant: an ``OrderIntent`` holds only values the contract's types accept (a checksummed
buyer, a 32-byte requirement, each integer within its ``uintN``); a bad one raises
``InputError`` naming the field. Pure values: no chain access here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from marketplace.chain.client import check_uint
from marketplace.chain.writer import Signer
from marketplace.errors import InputError

_EIP712_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ORDER_INTENT_TYPE = (
    "OrderIntent(address buyer,bytes32 requirement,uint8 deviceClass,uint32 units,uint64 duration,"
    "uint256 maxPrice,uint8 tier,uint256 nonce,uint64 deadline)"
)
ORDER_INTENT_TYPEHASH = keccak(ORDER_INTENT_TYPE.encode())
_INTENT_TYPES = ["bytes32", "address", "bytes32", "uint8", "uint32", "uint64", "uint256", "uint8", "uint256", "uint64"]


@dataclass(frozen=True)
class Eip712Domain:
    """The market's signing domain: name and version are fixed by the contract's constructor."""

    chain_id: int
    verifying_contract: str
    name: str = "CONA ComputeMarket"
    version: str = "1"

    def separator(self) -> bytes:
        return _separator(self)


@functools.lru_cache(maxsize=64)
def _separator(domain: Eip712Domain) -> bytes:
    """A domain's separator, computed once (every intent's digest starts with it: 0.1 ms each time)."""
    return keccak(abi_encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [_EIP712_DOMAIN_TYPEHASH, keccak(domain.name.encode()), keccak(domain.version.encode()), domain.chain_id,
         domain.verifying_contract],
    ))


@dataclass(frozen=True)
class OrderIntent:
    """What a buyer signs (or sends itself). ``duration`` in seconds, ``max_price`` in asset
    units per compute-unit-hour, ``requirement`` the 32-byte digest of the buyer's requirement."""

    buyer: str
    requirement: bytes
    device_class: int
    units: int
    duration: int
    max_price: int
    tier: int = 0
    nonce: int = 0
    deadline: int = 0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "buyer", to_checksum_address(self.buyer))
        except (ValueError, TypeError):
            raise InputError(f"buyer is not an address: {self.buyer!r}", field="buyer") from None
        req = self.requirement
        if isinstance(req, str):
            req = bytes.fromhex(req[2:] if req.startswith("0x") else req)
        if not isinstance(req, (bytes, bytearray)) or len(req) != 32:
            raise InputError("requirement must be a 32-byte digest", field="requirement")
        object.__setattr__(self, "requirement", bytes(req))
        check_uint("device_class", self.device_class, 8)
        check_uint("units", self.units, 32)
        check_uint("duration", self.duration, 64)
        check_uint("max_price", self.max_price, 256)
        check_uint("tier", self.tier, 8)
        check_uint("nonce", self.nonce, 256)
        check_uint("deadline", self.deadline, 64)

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.buyer, self.requirement, self.device_class, self.units, self.duration, self.max_price,
                self.tier, self.nonce, self.deadline)

    def struct_hash(self) -> bytes:
        return keccak(abi_encode(_INTENT_TYPES, [ORDER_INTENT_TYPEHASH, *self.as_tuple()]))

    def escrow(self) -> int:
        """What placing this order locks: units x seconds x price-per-hour / 3600, rounded up."""
        return cost(self.units, self.duration, self.max_price)

    def to_dict(self) -> dict[str, Any]:
        return {"buyer": self.buyer, "requirement": "0x" + self.requirement.hex(), "device_class": self.device_class,
                "units": self.units, "duration": self.duration, "max_price": str(self.max_price), "tier": self.tier,
                "nonce": str(self.nonce), "deadline": self.deadline}


def intent_digest(domain: Eip712Domain, intent: OrderIntent) -> bytes:
    """The EIP-712 digest the buyer signs (``\\x19\\x01 || domainSeparator || structHash``)."""
    return keccak(b"\x19\x01" + domain.separator() + intent.struct_hash())


def sign_intent(signer: Signer, domain: Eip712Domain, intent: OrderIntent) -> bytes:
    """A 65-byte ``r || s || v`` signature (v = 27/28), as ECDSA.recover expects."""
    if signer.address != intent.buyer:
        raise InputError(f"{signer.address} cannot sign an intent for buyer {intent.buyer}", field="buyer")
    v, r, s = signer.sign_digest(intent_digest(domain, intent))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])


def cost(units: int, seconds: int, price_per_hour: int) -> int:
    """The contract's ``_cost``: rounded up so escrow always covers what is owed."""
    raw = units * seconds * price_per_hour
    return 0 if raw == 0 else (raw - 1) // 3600 + 1
