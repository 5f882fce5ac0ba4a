"""Tier credentials: a member's secret scalar and the public key the operator puts in a group.

A credential is one secret ``x`` in [1, N) with public key ``X = x*G`` on alt_bn128 G1. The
member keeps ``x``; the operator only ever sees ``X``, which it adds to the tier groups the
member is entitled to (the same key may sit in groups of several epochs: key images of
different epochs are unrelated, so that reveals nothing on chain).

Encodings (big-endian, fixed width):
    secret key  32 bytes   x, 1 <= x < N
    public key  64 bytes   X.x || X.y, each < p, on the curve, not infinity

Invariants: a ``SecretKey`` is always in range; a ``PublicKey`` is always a valid curve
point (constructors validate; decoding raises the ``ProofFormatError`` subclass naming the
fault).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from random import Random

from eth_utils import keccak

from zk.curve import N, P, is_on_curve, mul_g
from zk.errors import (
    BadProofLength,
    CoordinateNotInField,
    PointAtInfinity,
    PointNotOnCurve,
    ProofFormatError,
    ScalarNotInGroup,
)

SECRET_KEY_BYTES = 32
PUBLIC_KEY_BYTES = 64


@dataclass(frozen=True, order=True)
class PublicKey:
    """A point of G1, validated. Ordered by (x, y), which is the canonical ring order."""

    x: int
    y: int

    def __post_init__(self) -> None:
        check_point(self.x, self.y, offset=0)

    def to_bytes(self) -> bytes:
        return self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicKey":
        if len(data) != PUBLIC_KEY_BYTES:
            raise BadProofLength(f"a public key is {PUBLIC_KEY_BYTES} bytes, not {len(data)}",
                                 offset=min(len(data), PUBLIC_KEY_BYTES), expected=PUBLIC_KEY_BYTES,
                                 actual=len(data))
        return cls(int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big"))

    def hex(self) -> str:
        return "0x" + self.to_bytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> "PublicKey":
        return cls.from_bytes(_unhex(text))

    @property
    def point(self) -> tuple[int, int]:
        return (self.x, self.y)


@dataclass(frozen=True, repr=False)
class SecretKey:
    """A member's secret scalar. ``repr`` never shows it."""

    value: int

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not 1 <= self.value < N:
            raise ScalarNotInGroup("a secret key must be an integer in [1, N)", offset=0)

    def __repr__(self) -> str:
        return f"SecretKey(public={self.public_key().hex()[:18]}...)"

    def public_key(self) -> PublicKey:
        pt = mul_g(self.value)
        assert pt is not None  # 1 <= value < N
        return PublicKey(*pt)

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(SECRET_KEY_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> "SecretKey":
        if len(data) != SECRET_KEY_BYTES:
            raise BadProofLength(f"a secret key is {SECRET_KEY_BYTES} bytes, not {len(data)}",
                                 offset=min(len(data), SECRET_KEY_BYTES), expected=SECRET_KEY_BYTES,
                                 actual=len(data))
        return cls(int.from_bytes(data, "big"))

    def hex(self) -> str:
        return "0x" + self.to_bytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> "SecretKey":
        return cls.from_bytes(_unhex(text))


def generate_key(rng: Random | None = None) -> SecretKey:
    """A fresh credential. ``rng`` only for reproducible tests: real keys use ``secrets``."""
    value = rng.randrange(1, N) if rng is not None else secrets.randbelow(N - 1) + 1
    return SecretKey(value)


def derive_key(seed: bytes, label: bytes = b"") -> SecretKey:
    """A credential derived from a 32+ byte seed (deterministic backups, test fixtures).

    keccak256 of ("CONA/tier-credential/v1" || label || seed || counter) reduced mod N,
    retried on the (2^-250) chance of zero; the reduction bias is below 2^-2 of one bit.
    """
    if len(seed) < 32:
        raise ScalarNotInGroup("a credential seed must be at least 32 bytes", offset=0)
    for ctr in range(256):
        v = int.from_bytes(keccak(b"CONA/tier-credential/v1" + label + seed + bytes([ctr])), "big") % N
        if v:
            return SecretKey(v)
    raise ScalarNotInGroup("no credential derivable from this seed", offset=0)  # unreachable


def check_point(x: int, y: int, *, offset: int) -> None:
    """Raise the ``ProofFormatError`` for a coordinate pair that is not a usable G1 point.

    Order (the Solidity verifier's too): x >= p, y >= p, (0, 0) infinity, off the curve.
    ``offset`` is where the point starts in the bytes it came from.
    """
    if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, int) or not isinstance(y, int):
        raise PointNotOnCurve("point coordinates must be integers", offset=offset)
    if not 0 <= x < P:
        raise CoordinateNotInField(f"x coordinate at byte {offset} is not below the field modulus p",
                                   offset=offset, value=x)
    if not 0 <= y < P:
        raise CoordinateNotInField(f"y coordinate at byte {offset + 32} is not below the field modulus p",
                                   offset=offset + 32, value=y)
    if x == 0 and y == 0:
        raise PointAtInfinity(f"the point at byte {offset} is the point at infinity (0, 0)", offset=offset)
    if not is_on_curve(x, y):
        raise PointNotOnCurve(f"the point at byte {offset} is not on alt_bn128 (y^2 != x^3 + 3)", offset=offset)


def _unhex(text: str) -> bytes:
    t = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise ProofFormatError(f"not hexadecimal: {text[:20]!r}", offset=0) from None
