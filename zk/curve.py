"""Arithmetic on alt_bn128 (BN254) G1, the group behind the EVM precompiles 0x06 and 0x07.

The curve is ``y^2 = x^3 + 3`` over F_p; G1 has prime order ``N`` and cofactor 1, so every
point on the curve except infinity generates the whole group and no subgroup check is
needed. Points are affine ``(x, y)`` tuples of Python ints with ``0 <= x, y < P``;
infinity is ``None`` here and ``(0, 0)`` in the EVM encoding (``to_evm``/``from_evm``).

Speed (why this is not py_ecc): the ring signature needs about 2n double-scalar
multiplications per proof. py_ecc's ``bn128.multiply`` works in affine-free Jacobian
coordinates but with one scalar at a time and plain double-and-add, about 10 ms each here.
This module does:

- Jacobian coordinates with ``a = 0`` formulas (dbl-2009-l, madd-2004-hmv), so a
  doubling or an addition costs no inversion;
- width-w NAF recoding of each scalar and Straus (interleaved) multi-scalar
  multiplication: ``k1*A + k2*B`` shares one chain of ~254 doublings;
- precomputed affine tables of odd multiples (``Table``): a wide one for the generator,
  built once, and narrow ones for per-proof bases (the ring keys, H(scope), the key image).

Invariants: every function takes and returns reduced values; results are checked against
py_ecc.bn128 in tests/unit/test_zk_curve.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

#: the base field modulus
P = 21888242871839275222246405745257275088696311157297823662689037894645226208583
#: the order of G1 (the scalar field)
N = 21888242871839275222246405745257275088548364400416034343698204186575808495617
#: the curve constant b in y^2 = x^3 + b
B = 3
#: the generator used by the precompiles and by py_ecc
G = (1, 2)

Point = Optional[tuple[int, int]]  # None is the point at infinity


def is_on_curve(x: int, y: int) -> bool:
    """True when (x, y), both already reduced, lies on y^2 = x^3 + 3."""
    return (y * y - x * x * x - B) % P == 0


def neg(a: Point) -> Point:
    if a is None:
        return None
    return (a[0], (P - a[1]) % P)


def add(a: Point, b: Point) -> Point:
    """Affine addition (one inversion); for tables and tests, not for inner loops."""
    if a is None:
        return b
    if b is None:
        return a
    x1, y1 = a
    x2, y2 = b
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        lam = 3 * x1 * x1 * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def double(a: Point) -> Point:
    return add(a, a)


def _endomorphism_constants() -> tuple[int, int, tuple[int, int, int, int]]:
    """(beta, lambda, lattice basis) of the GLV endomorphism phi(x, y) = (beta*x, y) = lambda*(x, y).

    beta is a cube root of unity in F_p and lambda one in Z_N; the pair is matched on G. The
    basis (a1, b1), (a2, b2) of {(u, v): u + v*lambda = 0 mod N} comes from the extended
    Euclidean algorithm on (N, lambda) (Gallant-Lambert-Vanstone, section 4); its entries
    are below 2^127, so every scalar splits into two halves of about 127 bits.
    """
    beta = next(b for b in (pow(g, (P - 1) // 3, P) for g in range(2, 64)) if b != 1)
    lam = next(u for u in (pow(g, (N - 1) // 3, N) for g in range(2, 64)) if u != 1)
    # of the two non-trivial cube roots beta, beta^2, keep the one with phi(G) = lambda*G
    acc, base, k = None, G, lam
    while k:
        if k & 1:
            acc = add(acc, base)
        base = add(base, base)
        k >>= 1
    if acc != (beta, G[1]):
        beta = beta * beta % P
    if acc != (beta, G[1]):
        raise AssertionError("no GLV endomorphism matches: wrong curve constants")
    r0, r1, t0, t1 = N, lam, 0, 1
    seq = [(r0, t0), (r1, t1)]
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
        seq.append((r1, t1))
    root = math.isqrt(N)
    m = max(i for i, (r, _) in enumerate(seq) if r >= root)
    a1, b1 = seq[m + 1][0], -seq[m + 1][1]
    cands = [(seq[m][0], -seq[m][1]), (seq[m + 2][0], -seq[m + 2][1])]
    a2, b2 = min(cands, key=lambda v: v[0] * v[0] + v[1] * v[1])
    return beta, lam, (a1, b1, a2, b2)


BETA, LAMBDA, _BASIS = _endomorphism_constants()


def split_scalar(k: int) -> tuple[int, int]:
    """(k1, k2), each |k_i| < 2^128, with k1 + k2*LAMBDA = k (mod N)."""
    a1, b1, a2, b2 = _BASIS
    c1 = (2 * b2 * k + N) // (2 * N)
    c2 = (-2 * b1 * k + N) // (2 * N)
    return k - c1 * a1 - c2 * a2, -c1 * b1 - c2 * b2


@dataclass(frozen=True)
class Table:
    """Affine odd multiples ``(1P, 3P, ..., (2^(w-1)-1)P)`` of a point and of phi(point)."""

    width: int
    odd: tuple[tuple[int, int], ...]
    endo: tuple[tuple[int, int], ...]

    @property
    def point(self) -> tuple[int, int]:
        return self.odd[0]

    @classmethod
    def of(cls, point: tuple[int, int], width: int = 5) -> "Table":
        if point is None:
            raise ValueError("no table for the point at infinity")
        if not 2 <= width <= 10:
            raise ValueError(f"wNAF width must be 2..10, got {width}")
        odd = _odd_multiples(point, 1 << (width - 2))
        endo = tuple((BETA * x % P, y) for x, y in odd)
        return cls(width, odd, endo)


def _odd_multiples(point: tuple[int, int], count: int) -> tuple[tuple[int, int], ...]:
    """P, 3P, ..., (2*count-1)P in affine, with one inversion per step (count is small)."""
    twice = add(point, point)
    odd = [point]
    for _ in range(count - 1):
        nxt = add(odd[-1], twice)
        if nxt is None:  # impossible in a group of prime order this large; guard anyway
            raise ValueError("degenerate table")
        odd.append(nxt)
    return tuple(odd)  # type: ignore[arg-type]


def wnaf(k: int, width: int) -> list[int]:
    """Width-w non-adjacent form of k >= 0, least significant digit first.

    Every non-zero digit is odd with |d| < 2^(w-1), and any w consecutive digits hold at
    most one non-zero: about len/(w+1) additions per scalar.
    """
    digits: list[int] = []
    full = 1 << width
    half = 1 << (width - 1)
    while k:
        if k & 1:
            d = k & (full - 1)
            if d >= half:
                d -= full
            k -= d
            digits.append(d)
        else:
            digits.append(0)
        k >>= 1
    return digits


def multi_mul(terms: Sequence[tuple[int, Table]]) -> Point:
    """sum(k_i * T_i.point), scalars taken mod N.

    Each scalar is split by the endomorphism into two ~127-bit halves (GLV), each half
    recoded in wNAF, and all halves interleaved (Straus): one chain of ~127 doublings
    serves every term.
    """
    p = P
    recoded, longest = _recode(terms)
    # the tier proof's hot loop: the doubling and the mixed addition are written inline (the
    # doubling alone as a call to _jdouble took a two-term multi_mul from 602 to 619 us)
    X = Y = Z = 0  # Z == 0: the accumulator is infinity
    for i in range(longest - 1, -1, -1):
        if Z:
            # doubling, dbl-2009-l with a = 0
            A = X * X % p
            Bq = Y * Y % p
            C = Bq * Bq % p
            t = X + Bq
            D = 2 * (t * t - A - C) % p
            E = 3 * A
            Z = 2 * Y * Z % p
            X = (E * E - 2 * D) % p
            Y = (E * (D - X) - 8 * C) % p
        for digits, odd in recoded:
            if i >= len(digits):
                continue
            d = digits[i]
            if not d:
                continue
            if d > 0:
                x2, y2 = odd[d >> 1]
            else:
                x2, y2 = odd[(-d) >> 1]
                y2 = p - y2
            if not Z:
                X, Y, Z = x2, y2, 1
                continue
            # mixed addition, madd-2004-hmv
            Z1Z1 = Z * Z % p
            H = (x2 * Z1Z1 - X) % p
            R = (y2 * Z * Z1Z1 - Y) % p
            if not H:
                if R:  # P + (-P)
                    X = Y = Z = 0
                    continue
                X, Y, Z = _jdouble(X, Y, Z)
                continue
            HH = H * H % p
            HHH = H * HH % p
            V = X * HH % p
            X = (R * R - HHH - 2 * V) % p
            Y = (R * (V - X) - Y * HHH) % p
            Z = Z * H % p
    return _affine(X, Y, Z)


def _recode(terms: Sequence[tuple[int, Table]]) -> tuple[list[tuple[list[int], tuple[tuple[int, int], ...]]], int]:
    """Each term's scalar split by the endomorphism (GLV) into two halves, each recoded in
    wNAF (least significant digit first, negated for a negative half) with the table of odd
    multiples its digits index; and the length of the longest recoding."""
    recoded: list[tuple[list[int], tuple[tuple[int, int], ...]]] = []
    longest = 0
    for k, table in terms:
        k1, k2 = split_scalar(k % N)
        for half, odd in ((k1, table.odd), (k2, table.endo)):
            if not half:
                continue
            digits = wnaf(abs(half), table.width)
            if half < 0:
                digits = [-d for d in digits]
            recoded.append((digits, odd))
            if len(digits) > longest:
                longest = len(digits)
    return recoded, longest


def _affine(X: int, Y: int, Z: int) -> Point:
    """The affine point of Jacobian (X, Y, Z); None when Z is 0 (infinity)."""
    if not Z:
        return None
    p = P
    zi = pow(Z, -1, p)
    zi2 = zi * zi % p
    return (X * zi2 % p, Y * zi2 * zi % p)


def _jdouble(X: int, Y: int, Z: int) -> tuple[int, int, int]:
    p = P
    A = X * X % p
    Bq = Y * Y % p
    C = Bq * Bq % p
    t = X + Bq
    D = 2 * (t * t - A - C) % p
    E = 3 * A
    X3 = (E * E - 2 * D) % p
    Y3 = (E * (D - X3) - 8 * C) % p
    return X3, Y3, 2 * Y * Z % p


#: the generator's table: wide, since G is a base in every ring member's equation
G_TABLE = Table.of(G, 7)


def mul(point: Point, k: int, width: int = 5) -> Point:
    """k * point."""
    if point is None or k % N == 0:
        return None
    table = G_TABLE if point == G else Table.of(point, width)
    return multi_mul([(k, table)])


def mul_g(k: int) -> Point:
    """k * G with the generator's precomputed table."""
    return multi_mul([(k, G_TABLE)])


def to_evm(a: Point) -> tuple[int, int]:
    """The precompiles' encoding: infinity is (0, 0)."""
    return (0, 0) if a is None else a


def from_evm(x: int, y: int) -> Point:
    return None if (x, y) == (0, 0) else (x, y)
