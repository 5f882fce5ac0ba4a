"""Fuzzing the Compute LSA decoder: random bytes, mutated LSAs, and mutated LSAs whose length
and checksum are repaired (so the mutation reaches the TLV parser). Every input either decodes
to a complete ComputeLsa or raises an LsaDecodeError with an integer offset; nothing else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.lsa import content_for, profiles
from marketplace.convergence.errors import BadSignature, LsaDecodeError
from marketplace.convergence.lsa import (
    HEADER_SIZE,
    MAX_LSA_SIZE,
    OFF_CHECKSUM,
    OFF_LENGTH,
    ComputeLsa,
    checksum_of,
    decode_lsa,
    encode_lsa,
    recover_originator,
)

pytestmark = pytest.mark.unit

KEY = bytes(range(1, 33))
SEEDS = [
    encode_lsa(content_for(d, 1, 0), sequence=3, lifetime=600, key=KEY) for d in profiles().values()
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> ComputeLsa | None:
    try:
        lsa = decode_lsa(data)
    except LsaDecodeError as exc:
        assert isinstance(exc.offset, int) and 0 <= exc.offset <= max(len(data), OFF_LENGTH + 2), exc
        assert str(exc)
        return None
    # a decoded LSA is complete: every required part is there and it re-encodes to itself
    assert isinstance(lsa, ComputeLsa) and lsa.raw == bytes(data)
    assert lsa.descriptor.hostname is not None and lsa.domain is not None and lsa.attachment is not None
    return lsa


def repaired(data: bytearray) -> bytes:
    if len(data) >= HEADER_SIZE:
        struct.pack_into("!H", data, OFF_LENGTH, min(len(data), 0xFFFF))
        struct.pack_into("!H", data, OFF_CHECKSUM, checksum_of(data))
    return bytes(data)


@given(st.binary(max_size=2000))
@FUZZ
def test_random_bytes(data):
    check(data)


@given(st.binary(min_size=HEADER_SIZE - 2, max_size=600))
@FUZZ
def test_random_bodies_behind_a_plausible_header(body):
    data = bytearray(b"\x00\x10\x01\x01" + body)
    check(repaired(data))


mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), st.integers(0, 2000),
                     st.integers(0, 255))


def mutate(seed: bytes, ops) -> bytearray:
    data = bytearray(seed)
    for op, where, value in ops:
        if not data:
            break
        i = where % len(data)
        if op == "flip":
            data[i] ^= 1 << (value % 8)
        elif op == "set":
            data[i] = value
        elif op == "insert":
            data[i:i] = bytes([value]) * (value % 5 + 1)
        elif op == "delete":
            del data[i : i + value % 5 + 1]
        else:
            del data[i:]
    return data


@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=4))
@FUZZ
def test_mutated_lsas(seed, ops):
    check(bytes(mutate(seed, ops)))


@given(st.sampled_from(SEEDS), st.lists(mutation, min_size=1, max_size=4))
@FUZZ
def test_mutated_lsas_with_repaired_length_and_checksum(seed, ops):
    data = mutate(seed, ops)
    data[:HEADER_SIZE] = seed[:HEADER_SIZE] if len(data) >= HEADER_SIZE else data[:HEADER_SIZE]
    raw = repaired(data)
    lsa = check(raw)
    if lsa is not None and raw[2:] != seed[2:]:
        # it parsed, but it is not what the originator signed
        with pytest.raises(BadSignature):
            recover_originator(lsa)


def test_oversized_input_is_refused_before_parsing():
    data = bytearray(SEEDS[0] + bytes(MAX_LSA_SIZE))
    with pytest.raises(LsaDecodeError) as info:
        decode_lsa(repaired(data))
    assert info.value.reason == "oversized"
