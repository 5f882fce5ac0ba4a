"""G1 arithmetic of zk.curve against py_ecc.bn128, the reference implementation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc import bn128

from zk import curve
from zk.curve import BETA, G, G_TABLE, LAMBDA, N, P, Table, add, from_evm, is_on_curve, multi_mul, mul, mul_g, neg
from zk.curve import split_scalar, to_evm, wnaf

pytestmark = pytest.mark.unit

scalars = st.integers(min_value=0, max_value=2 * N + 5)


def ref(point):
    """py_ecc's point as a zk.curve point."""
    if point is None:
        return None
    return (int(point[0]), int(point[1]))


def ref_mul(pt, k):
    return ref(bn128.multiply((bn128.FQ(pt[0]), bn128.FQ(pt[1])), k % N)) if k % N else None


def test_constants_are_py_eccs():
    assert P == bn128.field_modulus
    assert N == bn128.curve_order
    assert G == ref(bn128.G1)
    assert curve.B == int(bn128.b)
    assert is_on_curve(*G)


def test_endomorphism_constants():
    assert pow(BETA, 3, P) == 1 and BETA != 1
    assert pow(LAMBDA, 3, N) == 1 and LAMBDA != 1
    # phi(G) = (beta x, y) is lambda * G, the identity GLV rests on
    assert ref(bn128.multiply(bn128.G1, LAMBDA)) == (BETA * G[0] % P, G[1])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=N - 1))
def test_split_scalar_gives_short_halves(k):
    k1, k2 = split_scalar(k)
    assert (k1 + k2 * LAMBDA - k) % N == 0
    assert abs(k1) < 2**128 and abs(k2) < 2**128


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**260), st.sampled_from([2, 4, 5, 7, 8]))
def test_wnaf_reconstructs_and_is_sparse(k, w):
    digits = wnaf(k, w)
    assert sum(d << i for i, d in enumerate(digits)) == k
    nonzero = [i for i, d in enumerate(digits) if d]
    assert all(d % 2 == 1 and abs(d) < 2 ** (w - 1) for d in digits if d)
    assert all(b - a >= w for a, b in zip(nonzero, nonzero[1:]))


@settings(max_examples=60, deadline=None)
@given(scalars)
def test_generator_multiples_match_py_ecc(k):
    assert mul_g(k) == ref_mul(G, k)
    assert mul(G, k) == ref_mul(G, k)


@settings(max_examples=40, deadline=None)
@given(scalars, scalars, st.integers(min_value=1, max_value=N - 1))
def test_double_scalar_multiplication_matches_py_ecc(a, b, x):
    point = ref_mul(G, x)
    expected = ref(bn128.add(bn128.multiply(bn128.G1, a % N), bn128.multiply(
        (bn128.FQ(point[0]), bn128.FQ(point[1])), b % N)))
    if a % N == 0 and b % N == 0:
        expected = None
    elif a % N == 0:
        expected = ref_mul(point, b)
    elif b % N == 0:
        expected = ref_mul(G, a)
    assert multi_mul([(a, G_TABLE), (b, Table.of(point, 5))]) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=N - 1), st.integers(min_value=1, max_value=N - 1))
def test_affine_add_and_neg_match_py_ecc(a, b):
    pa, pb = mul_g(a), mul_g(b)
    assert add(pa, pb) == ref(bn128.add(bn128.multiply(bn128.G1, a), bn128.multiply(bn128.G1, b)))
    assert add(pa, pa) == ref_mul(G, 2 * a)
    assert add(pa, neg(pa)) is None
    assert neg(pa) == ref(bn128.neg(bn128.multiply(bn128.G1, a)))


def test_cancellation_and_doubling_inside_the_ladder():
    # terms that cancel (k P + (N - k) P) and terms that coincide (k P + k P) hit the
    # madd special cases H == 0 with R != 0 and R == 0
    rng = random.Random(7)
    for _ in range(10):
        x, k = rng.randrange(1, N), rng.randrange(1, N)
        point = mul_g(x)
        t1, t2 = Table.of(point, 5), Table.of(point, 4)
        assert multi_mul([(k, t1), (N - k, t2)]) is None
        assert multi_mul([(k, t1), (k, t2)]) == ref_mul(point, 2 * k)
    assert multi_mul([(1, G_TABLE), (N - 1, Table.of(G, 3))]) is None
    assert multi_mul([]) is None


def test_edge_scalars():
    assert mul_g(0) is None and mul_g(N) is None
    assert mul_g(1) == G
    assert mul_g(N - 1) == neg(G)
    assert mul_g(N + 1) == G
    assert mul(None, 5) is None


def test_points_on_and_off_the_curve():
    x, y = mul_g(12345)
    assert is_on_curve(x, y)
    assert not is_on_curve(x, (y + 1) % P)
    assert not is_on_curve(0, 0)


def test_evm_encoding_of_infinity():
    assert to_evm(None) == (0, 0)
    assert from_evm(0, 0) is None
    assert from_evm(1, 2) == G and to_evm(G) == G


def test_table_rejects_bad_input():
    with pytest.raises(ValueError):
        Table.of(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Table.of(G, 1)
    t = Table.of(G, 5)
    assert t.point == G and len(t.odd) == 8
    assert t.odd[3] == ref_mul(G, 7)
    assert t.endo[0] == (BETA * G[0] % P, G[1])
