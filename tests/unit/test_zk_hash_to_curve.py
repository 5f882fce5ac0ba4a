"""Try-and-increment hashing to G1: on the curve, deterministic, and the counter rule exact."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc import bn128

from zk.curve import N, P, is_on_curve
from zk.errors import ProofError
from zk.hash_to_curve import MAX_TRIES, SQRT_EXP, hash_to_g1, hash_to_point, sqrt_mod_p

pytestmark = pytest.mark.unit


def _is_square(v: int) -> bool:
    return v % P == 0 or pow(v, (P - 1) // 2, P) == 1


def test_sqrt_exponent_is_p_plus_one_over_four():
    assert P % 4 == 3 and SQRT_EXP * 4 == P + 1


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=P - 1))
def test_sqrt_mod_p(v):
    root = sqrt_mod_p(v)
    if _is_square(v):
        assert root is not None and root * root % P == v
    else:
        assert root is None


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_result_is_a_group_point_and_deterministic(msg):
    (x, y), ctr = hash_to_g1(msg)
    assert 0 <= x < P and 0 <= y < P and is_on_curve(x, y)
    assert hash_to_g1(msg) == ((x, y), ctr)
    # cofactor 1: N * point is infinity (checked with the reference implementation)
    assert bn128.is_inf(bn128.multiply((bn128.FQ(x), bn128.FQ(y)), N))


def test_counter_rule_matches_the_specification():
    """Find messages that need counters 0, 1 and >= 2 and recompute them by the spec."""
    seen = set()
    for i in range(200):
        msg = b"scope" + i.to_bytes(2, "big")
        (x, y), ctr = hash_to_g1(msg)
        for earlier in range(ctr):
            xe = int.from_bytes(keccak(msg + earlier.to_bytes(32, "big")), "big") % P
            assert not _is_square(xe**3 + 3)
        xc = int.from_bytes(keccak(msg + ctr.to_bytes(32, "big")), "big") % P
        assert x == xc and y == pow((x**3 + 3) % P, SQRT_EXP, P)
        seen.add(min(ctr, 2))
    assert seen == {0, 1, 2}


def test_different_messages_give_different_points():
    points = {hash_to_point(bytes([i])) for i in range(100)}
    assert len(points) == 100


def test_exhaustion_raises_a_proof_error(monkeypatch):
    import zk.hash_to_curve as h2c

    monkeypatch.setattr(h2c, "SQRT_EXP", 1)  # y = y2, a root only when y2 is 0 or 1: never here
    with pytest.raises(ProofError, match=f"{MAX_TRIES} tries"):
        h2c.hash_to_g1(b"x")
