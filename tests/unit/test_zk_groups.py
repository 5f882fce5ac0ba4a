"""Tier groups (sorted, deduplicated, balanced buckets, commitments, the published file) and keys."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zk import PublicKey, SecretKey, TierGroup, derive_key, generate_key
from zk.curve import G, N, P, mul_g
from zk.encoding import ring_commitment
from zk.errors import (
    BadProofLength,
    CoordinateNotInField,
    GroupError,
    NotAMember,
    PointAtInfinity,
    PointNotOnCurve,
    ScalarNotInGroup,
)

pytestmark = pytest.mark.unit


def _keys(count: int, seed: int = 1) -> list[PublicKey]:
    return [PublicKey(*mul_g(random.Random(seed * 1000 + i).randrange(1, N))) for i in range(count)]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 140), st.integers(1, 64))
def test_buckets_partition_the_sorted_keys_evenly(count, size):
    keys = _keys(count)
    group = TierGroup.build(1, 3, reversed(keys), bucket_size=size)
    buckets = group.buckets()
    assert tuple(k for b in buckets for k in b) == tuple(sorted(keys)) == group.keys
    sizes = [len(b) for b in buckets]
    assert max(sizes) <= size and max(sizes) - min(sizes) <= 1
    assert len(buckets) == -(-count // size)
    assert group.commitments() == tuple(ring_commitment(b) for b in buckets)
    for k in keys[:5]:
        assert k in group.bucket_of(k)


def test_seventeen_keys_in_buckets_of_sixteen_split_nine_and_eight():
    group = TierGroup.build(2, 1, _keys(17))
    assert [len(b) for b in group.buckets()] == [9, 8]


def test_order_and_duplicates_do_not_change_commitments():
    keys = _keys(10)
    a = TierGroup.build(2, 1, keys)
    b = TierGroup.build(2, 1, list(reversed(keys)) + keys[:3])
    assert a.commitments() == b.commitments() and len(b) == 10
    with pytest.raises(GroupError, match="duplicate"):
        TierGroup(2, 1, (keys[0], keys[0]))


def test_adding_and_removing_members():
    keys = _keys(5)
    group = TierGroup.build(2, 1, keys[:4], slots=3)
    grown = group.with_keys(keys[4])
    assert keys[4] in grown and keys[4] not in group and grown.slots == 3
    assert grown.without_keys(keys[4]).commitments() == group.commitments()
    with pytest.raises(NotAMember):
        group.bucket_of(keys[4])
    assert group.for_epoch(2).commitments() == group.commitments() and group.for_epoch(2).epoch == 2


@pytest.mark.parametrize("kw,match", [
    (dict(tier=0), "tier"), (dict(tier=256), "tier"), (dict(epoch=-1), "epoch"), (dict(slots=0), "slots"),
    (dict(bucket_size=0), "bucket_size"), (dict(bucket_size=65), "bucket_size"), (dict(keys=()), "at least one"),
])
def test_group_validation(kw, match):
    args = dict(tier=1, epoch=1, keys=tuple(_keys(2)), slots=1, bucket_size=16)
    args.update(kw)
    with pytest.raises(GroupError, match=match):
        TierGroup(**args)


def test_group_file_round_trip_and_tamper_detection():
    group = TierGroup.build(3, 9, _keys(20), slots=4, bucket_size=8)
    assert TierGroup.from_json(group.to_json()) == group
    raw = group.to_dict()
    raw["commitments"][0] = "0x" + "00" * 32
    with pytest.raises(GroupError, match="do not match"):
        TierGroup.from_dict(raw)
    with pytest.raises(GroupError, match="not JSON"):
        TierGroup.from_json("{")
    with pytest.raises(GroupError, match="format"):
        TierGroup.from_dict({"tier": 1})
    raw = group.to_dict()
    raw["keys"][0] = "0x" + "00" * 64
    with pytest.raises(PointAtInfinity):
        TierGroup.from_dict(raw)


def test_keys_round_trip_and_validation():
    sk = generate_key(random.Random(5))
    assert SecretKey.from_hex(sk.hex()) == sk and SecretKey.from_bytes(sk.to_bytes()) == sk
    pk = sk.public_key()
    assert PublicKey.from_hex(pk.hex()) == pk and len(pk.to_bytes()) == 64
    for bad in (0, N, -1, True):
        with pytest.raises(ScalarNotInGroup):
            SecretKey(bad)
    with pytest.raises(BadProofLength):
        SecretKey.from_bytes(b"\x01" * 31)
    with pytest.raises(BadProofLength):
        PublicKey.from_bytes(b"\x01" * 65)
    with pytest.raises(CoordinateNotInField):
        PublicKey(P + 1, 2)
    with pytest.raises(PointNotOnCurve):
        PublicKey(1, 3)
    with pytest.raises(PointAtInfinity):
        PublicKey(0, 0)
    assert PublicKey(*G).point == G


def test_derived_keys_are_deterministic_and_separated_by_label():
    seed = bytes(range(32))
    assert derive_key(seed) == derive_key(seed)
    assert derive_key(seed, b"tier-2") != derive_key(seed)
    with pytest.raises(ScalarNotInGroup, match="32 bytes"):
        derive_key(b"short")
    assert generate_key().value != generate_key().value
