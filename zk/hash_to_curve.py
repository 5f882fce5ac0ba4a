"""Hashing to alt_bn128 G1 by try-and-increment, bit-identical to the Solidity verifier.

    for ctr = 0, 1, ..., 255:
        x   = uint256(keccak256(msg || uint256(ctr))) mod p
        y2  = x^3 + 3 mod p
        y   = y2 ^ ((p + 1) / 4) mod p          (modexp precompile 0x05 on chain)
        if y * y == y2 mod p: return (x, y)

``p = 3 (mod 4)``, so ``(p+1)/4`` gives a square root whenever one exists; about half of all
x qualify, so the expected number of tries is 2 and the chance that 256 tries all fail is
2^-256. The root is used as the exponentiation returns it (no sign normalisation): both
sides compute the same value, which is all the scheme needs.

Security: the discrete logarithm of the result with respect to G is unknown to everyone
(the point comes out of keccak), which is what a key-image base must guarantee; the small
bias of ``mod p`` on a 256-bit hash (p is about 2^253.6) is irrelevant for that. G1 has
cofactor 1, so every point found is in the prime-order group, never infinity (x^3 + 3 = 0
has no root giving y = 0 in a group of odd order).
"""

from __future__ import annotations

from eth_utils import keccak

from zk.curve import P, Point
from zk.errors import ProofError

#: (p + 1) / 4, the square-root exponent for p = 3 (mod 4)
SQRT_EXP = (P + 1) // 4
MAX_TRIES = 256


def sqrt_mod_p(y2: int) -> int | None:
    """A square root of y2 mod p, or None when y2 is not a square."""
    y = pow(y2, SQRT_EXP, P)
    return y if y * y % P == y2 % P else None


def hash_to_g1(msg: bytes) -> tuple[tuple[int, int], int]:
    """The point for ``msg`` and the counter that found it."""
    for ctr in range(MAX_TRIES):
        x = int.from_bytes(keccak(msg + ctr.to_bytes(32, "big")), "big") % P
        y2 = (x * x * x + 3) % P
        y = pow(y2, SQRT_EXP, P)
        if y * y % P == y2:
            return (x, y), ctr
    # probability 2^-256: unreachable in practice, but never return a wrong point
    raise ProofError(f"no curve point found for message {msg.hex()} in {MAX_TRIES} tries")


def hash_to_point(msg: bytes) -> Point:
    return hash_to_g1(msg)[0]
