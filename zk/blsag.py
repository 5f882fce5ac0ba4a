"""bLSAG: a linkable ring signature over alt_bn128 G1 that proves tier membership.

Statement: "I know the secret x of one key in this ring (a committed bucket of tier group T
for epoch E), and I = x*H(scope)", bound to one order, without saying which key.

Scope and key image. ``scope = (chain id, gate, epoch, tier, slot)`` and
``H(scope) = hash_to_g1(abi.encode(KEY_IMAGE_BASE_TAG, chainId, gate, epoch, tier, slot))``.
The key image ``I = x*H(scope)`` is the same for every proof of one member in one scope
(so a second use of a slot is caught: the gate stores ``keccak256(I)`` as spent) and
unrelated across scopes (different H, unknown discrete logs): two orders of one member,
placed with different slots or in different epochs, cannot be linked by their images.
A tier grants ``slots`` uses per epoch; the slot is the prover's choice in [0, slots).

Challenge (Fiat-Shamir), bound to everything a replay could change::

    prefix  = keccak256(abi.encode(CHALLENGE_TAG, chainId, gate, market, epoch, tier, slot,
                                   orderDigest, beneficiary, ringCommitment, I.x, I.y))
    c_{i+1} = uint256(keccak256(abi.encode(prefix, L_i.x, L_i.y, R_i.x, R_i.y))) mod N
    L_i = s_i*G + c_i*P_i,     R_i = s_i*H + c_i*I        (infinity encoded as (0, 0))

and the proof ``(I, c_0, s_0..s_{n-1})`` verifies when the ring closes: ``c_n == c_0``.
``orderDigest`` is the market's EIP-712 intent digest (it covers the market address, the
chain id, the buyer, the tier, the nonce and the deadline), ``beneficiary`` the buyer, and
``ringCommitment = keccak256(ring bytes)``: a proof checks only for the exact ring, order,
buyer, market, gate, chain, epoch, tier and slot it was made for.

Invariants: prove() never returns a proof that verify() rejects (it checks its own output
when asked: ``self_check``); verify() never raises anything but ``ProofError`` subclasses
for bad proofs; both follow the Solidity verifier (contracts/TierGate.sol) bit for bit, as
tests/chain/test_tiergate.py checks with shared vectors.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from random import Random
from typing import Sequence

from eth_utils import keccak, to_canonical_address, to_checksum_address

from zk.curve import G_TABLE, N, Point, Table, multi_mul, to_evm
from zk.encoding import BlsagProof, decode_proof, ring_commitment
from zk.errors import InvalidRingSignature, NotAMember, ProofFormatError
from zk.hash_to_curve import hash_to_g1
from zk.keys import PublicKey, SecretKey

KEY_IMAGE_BASE_TAG = keccak(b"CONA/tier-gate/bLSAG/key-image-base/v1")
CHALLENGE_TAG = keccak(b"CONA/tier-gate/bLSAG/challenge/v1")

#: table widths: wide for bases used n times per proof (G, H, I), narrow for the ring keys
WIDE = 7
NARROW = 5


def _u(v: int) -> bytes:
    return v.to_bytes(32, "big")


def _addr(a: str | bytes) -> bytes:
    try:
        raw = to_canonical_address(a)
    except (ValueError, TypeError):
        raise ProofFormatError(f"not an address: {a!r}", offset=None) from None
    return bytes(12) + raw


def _check_uint(name: str, v: int, bits: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**bits:
        raise ProofFormatError(f"{name} must be a uint{bits}, not {v!r}", offset=None, field=name)
    return v


@dataclass(frozen=True)
class Scope:
    """Where a key image lives: one gate on one chain, one epoch, one tier, one slot."""

    chain_id: int
    gate: str
    epoch: int
    tier: int
    slot: int

    def __post_init__(self) -> None:
        _check_uint("chain_id", self.chain_id, 256)
        object.__setattr__(self, "gate", to_checksum_address(_addr(self.gate)[12:]))
        _check_uint("epoch", self.epoch, 64)
        _check_uint("tier", self.tier, 8)
        _check_uint("slot", self.slot, 32)

    def message(self) -> bytes:
        """abi.encode(KEY_IMAGE_BASE_TAG, chainId, gate, epoch, tier, slot): H's input."""
        return (KEY_IMAGE_BASE_TAG + _u(self.chain_id) + _addr(self.gate) + _u(self.epoch) + _u(self.tier)
                + _u(self.slot))


@dataclass(frozen=True)
class Statement:
    """The public inputs a proof is bound to (all but the slot, which the proof carries)."""

    chain_id: int
    gate: str
    market: str
    epoch: int
    tier: int
    order_digest: bytes
    beneficiary: str

    def __post_init__(self) -> None:
        _check_uint("chain_id", self.chain_id, 256)
        _check_uint("epoch", self.epoch, 64)
        _check_uint("tier", self.tier, 8)
        for name in ("gate", "market", "beneficiary"):
            object.__setattr__(self, name, to_checksum_address(_addr(getattr(self, name))[12:]))
        digest = self.order_digest
        if isinstance(digest, str):
            digest = bytes.fromhex(digest[2:] if digest.startswith("0x") else digest)
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise ProofFormatError("order_digest must be 32 bytes", offset=None, field="order_digest")
        object.__setattr__(self, "order_digest", bytes(digest))

    def scope(self, slot: int) -> Scope:
        return Scope(self.chain_id, self.gate, self.epoch, self.tier, slot)

    def prefix(self, slot: int, commitment: bytes, key_image: tuple[int, int]) -> bytes:
        return keccak(
            CHALLENGE_TAG + _u(self.chain_id) + _addr(self.gate) + _addr(self.market) + _u(self.epoch)
            + _u(self.tier) + _u(slot) + self.order_digest + _addr(self.beneficiary) + commitment
            + _u(key_image[0]) + _u(key_image[1])
        )


@dataclass(frozen=True)
class Verified:
    """What a valid proof establishes: which ring (bucket commitment) and which nullifier."""

    commitment: bytes
    nullifier: bytes
    slot: int
    key_image: tuple[int, int]


@lru_cache(maxsize=256)
def key_image_base(scope: Scope) -> tuple[tuple[int, int], Table]:
    """H(scope) and its table. Cached: every proof and check in one scope needs it, and
    hashing to the curve plus the table costs about a millisecond."""
    point, _ = hash_to_g1(scope.message())
    return point, Table.of(point, WIDE)


def key_image(secret: SecretKey, scope: Scope) -> tuple[int, int]:
    """x*H(scope): the member's image in this scope (what the nullifier is made of)."""
    _, table = key_image_base(scope)
    img = multi_mul([(secret.value, table)])
    assert img is not None  # H has prime order N and 1 <= x < N
    return img


def _challenge(prefix: bytes, left: Point, right: Point) -> int:
    lx, ly = to_evm(left)
    rx, ry = to_evm(right)
    return int.from_bytes(keccak(prefix + _u(lx) + _u(ly) + _u(rx) + _u(ry)), "big") % N


def _random_scalar(rng: Random | None) -> int:
    return rng.randrange(1, N) if rng is not None else secrets.randbelow(N - 1) + 1


def prove(secret: SecretKey, ring: Sequence[PublicKey], statement: Statement, slot: int, *,
          rng: Random | None = None, self_check: bool = False) -> BlsagProof:
    """A proof that the holder of ``secret`` is one of ``ring``, bound to ``statement``.

    ``rng`` is for reproducible test vectors only; a real proof draws its nonces from
    ``secrets`` (a repeated nonce with two challenges reveals the secret key).
    """
    ring = tuple(ring)
    me = secret.public_key()
    try:
        pi = ring.index(me)
    except ValueError:
        raise NotAMember(f"key {me.hex()[:18]}... is not in the ring of {len(ring)}",
                         hint="prove with the bucket of the tier group that holds your key") from None
    scope = statement.scope(slot)
    h, h_table = key_image_base(scope)
    img = multi_mul([(secret.value, h_table)])
    assert img is not None
    n = len(ring)
    commitment = ring_commitment(ring)
    # validates slot, ring size and ranges before any heavy work
    prefix = statement.prefix(slot, commitment, img)
    i_table = Table.of(img, WIDE)

    c = [0] * n
    s = [0] * n
    alpha = _random_scalar(rng)
    nxt = (pi + 1) % n
    c[nxt] = _challenge(prefix, multi_mul([(alpha, G_TABLE)]), multi_mul([(alpha, h_table)]))
    i = nxt
    while i != pi:
        s[i] = _random_scalar(rng)
        left = multi_mul([(s[i], G_TABLE), (c[i], Table.of(ring[i].point, NARROW))])
        right = multi_mul([(s[i], h_table), (c[i], i_table)])
        i_next = (i + 1) % n
        c[i_next] = _challenge(prefix, left, right)
        i = i_next
    s[pi] = (alpha - c[pi] * secret.value) % N
    proof = BlsagProof(slot=slot, ring=ring, key_image=img, c0=c[0], s=tuple(s))
    if self_check:
        verify(proof, statement)
    return proof


def verify(proof: BlsagProof, statement: Statement) -> Verified:
    """Check the ring equation; raise ``InvalidRingSignature`` when it does not close.

    The proof's values are already range-checked (``BlsagProof`` validates on
    construction, ``decode_proof`` on decoding), as the Solidity verifier checks them
    before it multiplies anything.
    """
    scope = statement.scope(proof.slot)
    _, h_table = key_image_base(scope)
    commitment = ring_commitment(proof.ring)
    prefix = statement.prefix(proof.slot, commitment, proof.key_image)
    i_table = Table.of(proof.key_image, WIDE)
    c = proof.c0
    for key, s in zip(proof.ring, proof.s):
        left = multi_mul([(s, G_TABLE), (c, Table.of(key.point, NARROW))])
        right = multi_mul([(s, h_table), (c, i_table)])
        c = _challenge(prefix, left, right)
    if c != proof.c0:
        raise InvalidRingSignature(
            "the ring signature does not verify for this statement",
            hint="the proof was made for another order, buyer, market, chain, epoch, tier, slot or ring",
        )
    return Verified(commitment=commitment, nullifier=proof.nullifier, slot=proof.slot, key_image=proof.key_image)


def verify_bytes(data: bytes, statement: Statement) -> Verified:
    """Decode strictly, then verify: the Python twin of ``BlsagVerifier.verify``."""
    return verify(decode_proof(data), statement)
