"""The exact byte encoding of a tier proof, and its strict decoder.

A proof travels as one ``bytes`` value (``tierProof`` in ``ComputeMarket.placeOrder``, then
``proof`` in ``TierGate.consume``). All integers are big-endian and fixed width; there is
no padding, no length prefix besides ``n`` and no trailing data::

    offset        size   field
    0             1      scheme       0x01 = bLSAG over alt_bn128 G1 with keccak-256
    1             4      slot         uint32, which of the tier's per-epoch uses this is
    5             2      n            uint16 ring size, 1 <= n <= MAX_RING (64)
    7             64*n   ring         n public keys, each x || y (32 + 32 bytes)
    7+64n         64     key image    I = x*H(scope), x || y
    71+64n        32     c0           the ring's first challenge, < N
    103+64n       32*n   s            the responses s_0 .. s_{n-1}, each < N
    total         103 + 96*n bytes     (1,639 bytes at n = 16)

The first 5 bytes are the gate's envelope (scheme and slot, read by ``TierGate``); the rest
is the scheme's body, read by the verifier registered for the scheme.

Decoding checks, in this order, and raises the named ``ProofFormatError`` subclass with the
byte ``offset`` of the fault (the Solidity verifier checks in the same order and reverts
with the error of the same name and the same offset):

1. fewer than 5 bytes                   -> BadProofLength(expected=5)
2. scheme byte not 0x01                 -> UnknownScheme(offset 0)
3. fewer than 7 bytes                   -> BadProofLength(expected=7)
4. n = 0 or n > 64                      -> RingSizeOutOfRange(offset 5)
5. length != 103 + 96n                  -> BadProofLength(expected=103 + 96n)
6. each point in order (ring, then the key image): x >= p, then y >= p
                                        -> CoordinateNotInField(offset of that coordinate)
   (0, 0)                               -> PointAtInfinity(offset of the point)
   y^2 != x^3 + 3                       -> PointNotOnCurve(offset of the point)
7. c0, then each s_i, >= N              -> ScalarNotInGroup(offset of the scalar)

The ring commitment a tier group publishes is ``keccak256(ring bytes)``, the 64*n bytes at
offset 7 exactly as encoded here (``ring_commitment``); the nullifier the gate spends is
``keccak256(I.x || I.y)`` (``nullifier_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from eth_utils import keccak

from zk.curve import N
from zk.errors import BadProofLength, RingSizeOutOfRange, ScalarNotInGroup, UnknownScheme
from zk.keys import PublicKey, check_point

SCHEME_BLSAG = 0x01
HEADER_BYTES = 5
BODY_HEADER_BYTES = 2
MAX_RING = 64
MAX_SLOT = 2**32 - 1


def proof_length(n: int) -> int:
    """The exact encoded length of a bLSAG proof over a ring of n keys."""
    return HEADER_BYTES + BODY_HEADER_BYTES + 64 * n + 64 + 32 + 32 * n


def encode_ring(ring: Sequence[PublicKey]) -> bytes:
    return b"".join(k.to_bytes() for k in ring)


def ring_commitment(ring: Sequence[PublicKey]) -> bytes:
    """keccak256 of the encoded ring: what the operator commits on chain per bucket."""
    return keccak(encode_ring(ring))


def nullifier_of(key_image: tuple[int, int]) -> bytes:
    """keccak256(I.x || I.y): the 32-byte value the gate marks as spent."""
    return keccak(key_image[0].to_bytes(32, "big") + key_image[1].to_bytes(32, "big"))


@dataclass(frozen=True)
class BlsagProof:
    """A decoded (or freshly made) proof. Its fields are always in range: construction
    validates, so ``encode_proof`` can only produce bytes that ``decode_proof`` accepts."""

    slot: int
    ring: tuple[PublicKey, ...]
    key_image: tuple[int, int]
    c0: int
    s: tuple[int, ...]

    scheme = SCHEME_BLSAG

    def __post_init__(self) -> None:
        n = len(self.ring)
        if not 1 <= n <= MAX_RING:
            raise RingSizeOutOfRange(f"a ring holds 1..{MAX_RING} keys, not {n}", offset=HEADER_BYTES, size=n)
        if len(self.s) != n:
            raise BadProofLength(f"{len(self.s)} responses for a ring of {n}", offset=None,
                                 expected=n, actual=len(self.s))
        if isinstance(self.slot, bool) or not isinstance(self.slot, int) or not 0 <= self.slot <= MAX_SLOT:
            raise BadProofLength(f"slot must be a uint32, not {self.slot!r}", offset=1)
        check_point(*self.key_image, offset=HEADER_BYTES + BODY_HEADER_BYTES + 64 * n)
        base = HEADER_BYTES + BODY_HEADER_BYTES + 64 * n + 64
        for i, v in enumerate((self.c0, *self.s)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < N:
                raise ScalarNotInGroup(f"scalar at byte {base + 32 * i} is not below the group order N",
                                       offset=base + 32 * i)

    @property
    def size(self) -> int:
        return len(self.ring)

    @property
    def nullifier(self) -> bytes:
        return nullifier_of(self.key_image)

    @property
    def commitment(self) -> bytes:
        return ring_commitment(self.ring)

    def to_bytes(self) -> bytes:
        return encode_proof(self)


def encode_proof(proof: BlsagProof) -> bytes:
    out = bytearray()
    out += bytes([proof.scheme])
    out += proof.slot.to_bytes(4, "big")
    out += len(proof.ring).to_bytes(2, "big")
    out += encode_ring(proof.ring)
    out += proof.key_image[0].to_bytes(32, "big") + proof.key_image[1].to_bytes(32, "big")
    out += proof.c0.to_bytes(32, "big")
    for v in proof.s:
        out += v.to_bytes(32, "big")
    return bytes(out)


def _word(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 32], "big")


def decode_proof(data: bytes) -> BlsagProof:
    """Strictly decode; see the module docstring for the checks and their order."""
    data = bytes(data)
    size = len(data)
    if size < HEADER_BYTES:
        raise BadProofLength(f"a proof is at least {HEADER_BYTES} bytes, got {size}", offset=size,
                             expected=HEADER_BYTES, actual=size)
    if data[0] != SCHEME_BLSAG:
        raise UnknownScheme(f"unknown proof scheme 0x{data[0]:02x} (this verifier knows 0x01, bLSAG)",
                            offset=0, scheme=data[0])
    slot = int.from_bytes(data[1:5], "big")
    if size < HEADER_BYTES + BODY_HEADER_BYTES:
        raise BadProofLength(f"a bLSAG proof is at least {HEADER_BYTES + BODY_HEADER_BYTES} bytes, got {size}",
                             offset=size, expected=HEADER_BYTES + BODY_HEADER_BYTES, actual=size)
    n = int.from_bytes(data[5:7], "big")
    if not 1 <= n <= MAX_RING:
        raise RingSizeOutOfRange(f"ring size {n} is outside 1..{MAX_RING}", offset=HEADER_BYTES, size=n)
    expected = proof_length(n)
    if size != expected:
        what = "truncated" if size < expected else "padded"
        raise BadProofLength(f"proof is {what}: a ring of {n} needs exactly {expected} bytes, got {size}",
                             offset=min(size, expected), expected=expected, actual=size)
    ring = []
    off = HEADER_BYTES + BODY_HEADER_BYTES
    for _ in range(n):
        x, y = _word(data, off), _word(data, off + 32)
        check_point(x, y, offset=off)
        ring.append(PublicKey(x, y))
        off += 64
    ix, iy = _word(data, off), _word(data, off + 32)
    check_point(ix, iy, offset=off)
    off += 64
    scalars = []
    for _ in range(n + 1):
        v = _word(data, off)
        if v >= N:
            raise ScalarNotInGroup(f"scalar at byte {off} is not below the group order N", offset=off, value=v)
        scalars.append(v)
        off += 32
    return BlsagProof(slot=slot, ring=tuple(ring), key_image=(ix, iy), c0=scalars[0], s=tuple(scalars[1:]))
