"""The proof's byte encoding: exact layout, strict decoding with named errors and offsets, fuzzing."""

from __future__ import annotations

import random

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.errors import ProofError
from zk import generate_key
from zk.blsag import Statement, prove, verify_bytes
from zk.curve import N, P
from zk.encoding import (
    MAX_RING,
    BlsagProof,
    decode_proof,
    encode_proof,
    nullifier_of,
    proof_length,
    ring_commitment,
)
from zk.errors import (
    BadProofLength,
    CoordinateNotInField,
    PointAtInfinity,
    PointNotOnCurve,
    RingSizeOutOfRange,
    ScalarNotInGroup,
    UnknownScheme,
)

pytestmark = pytest.mark.unit

N_RING = 3
ST = Statement(31337, "0x" + "01" * 20, "0x" + "02" * 20, 1, 1, keccak(b"o"), "0x" + "03" * 20)
RING_AT = 7
IMAGE_AT = RING_AT + 64 * N_RING
C0_AT = IMAGE_AT + 64
S_AT = C0_AT + 32


@pytest.fixture(scope="module")
def proof() -> BlsagProof:
    rng = random.Random(11)
    keys = [generate_key(rng) for _ in range(N_RING)]
    return prove(keys[1], [k.public_key() for k in keys], ST, slot=258, rng=rng)


def _put(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(32, "big") + data[offset + 32:]


def test_layout_is_byte_exact(proof):
    data = encode_proof(proof)
    assert len(data) == proof_length(N_RING) == 103 + 96 * N_RING
    assert data[0] == 0x01
    assert data[1:5] == (258).to_bytes(4, "big")
    assert data[5:7] == N_RING.to_bytes(2, "big")
    assert data[RING_AT:IMAGE_AT] == b"".join(k.to_bytes() for k in proof.ring)
    assert keccak(data[RING_AT:IMAGE_AT]) == ring_commitment(proof.ring) == proof.commitment
    assert data[IMAGE_AT:C0_AT] == proof.key_image[0].to_bytes(32, "big") + proof.key_image[1].to_bytes(32, "big")
    assert nullifier_of(proof.key_image) == keccak(data[IMAGE_AT:C0_AT]) == proof.nullifier
    assert int.from_bytes(data[C0_AT:S_AT], "big") == proof.c0
    assert [int.from_bytes(data[S_AT + 32 * i:S_AT + 32 * i + 32], "big") for i in range(N_RING)] == list(proof.s)
    assert decode_proof(data) == proof
    assert proof_length(16) == 1639


@pytest.mark.parametrize("cut", [0, 1, 4, 5, 6, 7, 100, -1])
def test_truncated(proof, cut):
    data = encode_proof(proof)
    short = data[:cut] if cut >= 0 else data[:cut]
    with pytest.raises(BadProofLength) as info:
        decode_proof(short)
    expected = 5 if len(short) < 5 else 7 if len(short) < 7 else len(data)
    assert info.value.fields["expected"] == expected and info.value.fields["actual"] == len(short)


@pytest.mark.parametrize("extra", [b"\x00", b"\x00" * 32, b"\x01" * 96])
def test_padded(proof, extra):
    with pytest.raises(BadProofLength, match="padded"):
        decode_proof(encode_proof(proof) + extra)


def test_unknown_scheme_and_ring_sizes(proof):
    data = encode_proof(proof)
    with pytest.raises(UnknownScheme) as info:
        decode_proof(b"\x02" + data[1:])
    assert info.value.offset == 0
    for size in (0, MAX_RING + 1, 0xFFFF):
        with pytest.raises(RingSizeOutOfRange) as info:
            decode_proof(data[:5] + size.to_bytes(2, "big") + data[7:])
        assert info.value.offset == 5


@pytest.mark.parametrize("where", ["ring", "image"])
def test_coordinates_at_or_above_p(proof, where):
    data = encode_proof(proof)
    at = RING_AT + 64 if where == "ring" else IMAGE_AT
    x = int.from_bytes(data[at:at + 32], "big")
    y = int.from_bytes(data[at + 32:at + 64], "big")
    for bad, off in ((_put(data, at, x + P), at), (_put(data, at + 32, y + P), at + 32),
                     (_put(data, at, P), at), (_put(data, at, 2**256 - 1), at)):
        with pytest.raises(CoordinateNotInField) as info:
            decode_proof(bad)
        assert info.value.offset == off


@pytest.mark.parametrize("where", ["ring", "image"])
def test_infinity_and_off_curve_points(proof, where):
    data = encode_proof(proof)
    at = RING_AT if where == "ring" else IMAGE_AT
    with pytest.raises(PointAtInfinity) as info:
        decode_proof(_put(_put(data, at, 0), at + 32, 0))
    assert info.value.offset == at
    y = int.from_bytes(data[at + 32:at + 64], "big")
    with pytest.raises(PointNotOnCurve) as info:
        decode_proof(_put(data, at + 32, (y + 1) % P))
    assert info.value.offset == at


@pytest.mark.parametrize("index", [0, 1, N_RING])
def test_scalars_at_or_above_n(proof, index):
    data = encode_proof(proof)
    at = C0_AT + 32 * index  # c0, s_0, then the last s
    value = int.from_bytes(data[at:at + 32], "big")
    for bad in (value + N, N, 2**256 - 1):
        with pytest.raises(ScalarNotInGroup) as info:
            decode_proof(_put(data, at, bad))
        assert info.value.offset == at


def test_errors_are_proof_errors_with_clear_messages(proof):
    with pytest.raises(ProofError, match="truncated: a ring of 3 needs exactly 391 bytes, got 390"):
        decode_proof(encode_proof(proof)[:-1])
    with pytest.raises(ValueError):  # ProofError is a ValueError too
        decode_proof(b"")


def test_the_dataclass_refuses_what_the_decoder_refuses(proof):
    import dataclasses

    with pytest.raises(ScalarNotInGroup):
        dataclasses.replace(proof, c0=N)
    with pytest.raises(PointNotOnCurve):
        dataclasses.replace(proof, key_image=(1, 3))
    with pytest.raises(RingSizeOutOfRange):
        dataclasses.replace(proof, ring=(), s=())
    with pytest.raises(BadProofLength):
        dataclasses.replace(proof, s=proof.s[:-1])
    with pytest.raises(BadProofLength):
        dataclasses.replace(proof, slot=2**32)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutations_never_verify_and_fail_only_with_proof_errors(proof, data):
    """Any byte flip, cut or splice is refused with a ProofError: never accepted, never a crash."""
    raw = bytearray(encode_proof(proof))
    kind = data.draw(st.sampled_from(["flip", "cut", "splice"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        i = data.draw(st.integers(0, len(raw) - 1))
        del raw[i:i + data.draw(st.integers(1, 64))]
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    mutated = bytes(raw)
    if mutated == encode_proof(proof):
        return
    # a flipped slot byte leaves a well-formed proof for another scope: it must fail to verify
    with pytest.raises(ProofError):
        verify_bytes(mutated, ST)
