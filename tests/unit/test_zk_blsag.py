"""bLSAG prove/verify: completeness, soundness against every binding change, linkability and
unlinkability, and agreement with a slow reference verifier written on py_ecc."""

from __future__ import annotations

import dataclasses
import random

import pytest
from eth_utils import keccak
from py_ecc import bn128

from zk import TierGroup, check_tier_proof, generate_key, nullifier_for, prove_tier
from zk.blsag import (
    CHALLENGE_TAG,
    KEY_IMAGE_BASE_TAG,
    Scope,
    Statement,
    key_image,
    key_image_base,
    prove,
    verify,
    verify_bytes,
)
from zk.curve import N, P
from zk.encoding import BlsagProof, decode_proof, encode_proof, ring_commitment
from zk.errors import InvalidRingSignature, NotAMember, RingNotCommitted, SlotOutOfRange
from zk.hash_to_curve import hash_to_g1
from zk.keys import PublicKey

pytestmark = pytest.mark.unit

CHAIN = 131277322940537  # eth-tester's chain id
GATE = "0x" + "a1" * 20
MARKET = "0x" + "b2" * 20
BUYER = "0x" + "c3" * 20
DIGEST = keccak(b"order 1")


def statement(**kw) -> Statement:
    base = dict(chain_id=CHAIN, gate=GATE, market=MARKET, epoch=7, tier=2, order_digest=DIGEST, beneficiary=BUYER)
    base.update(kw)
    return Statement(**base)


@pytest.fixture(scope="module")
def members():
    rng = random.Random(2024)
    keys = [generate_key(rng) for _ in range(5)]
    ring = tuple(sorted(k.public_key() for k in keys[:4]))
    by_pub = {k.public_key(): k for k in keys}
    return [by_pub[p] for p in ring], ring, keys[4]  # secrets in ring order, ring, an outsider


def _pt(p):
    return (bn128.FQ(p[0]), bn128.FQ(p[1]))


def reference_verify(proof: BlsagProof, st: Statement) -> bool:
    """The scheme as docs/zk.md states it, on py_ecc, sharing no code with zk.blsag."""
    u = lambda v: v.to_bytes(32, "big")  # noqa: E731
    a = lambda s: bytes(12) + bytes.fromhex(s[2:])  # noqa: E731
    msg = KEY_IMAGE_BASE_TAG + u(st.chain_id) + a(st.gate) + u(st.epoch) + u(st.tier) + u(proof.slot)
    for ctr in range(256):
        x = int.from_bytes(keccak(msg + u(ctr)), "big") % P
        y2 = (x**3 + 3) % P
        y = pow(y2, (P + 1) // 4, P)
        if y * y % P == y2:
            h = (bn128.FQ(x), bn128.FQ(y))
            break
    ring_bytes = b"".join(u(k.x) + u(k.y) for k in proof.ring)
    prefix = keccak(CHALLENGE_TAG + u(st.chain_id) + a(st.gate) + a(st.market) + u(st.epoch) + u(st.tier)
                    + u(proof.slot) + st.order_digest + a(st.beneficiary) + keccak(ring_bytes)
                    + u(proof.key_image[0]) + u(proof.key_image[1]))
    img = _pt(proof.key_image)
    c = proof.c0
    for key, s in zip(proof.ring, proof.s):
        left = bn128.add(bn128.multiply(bn128.G1, s), bn128.multiply(_pt(key.point), c))
        right = bn128.add(bn128.multiply(h, s), bn128.multiply(img, c))
        coords = [int(left[0]), int(left[1]), int(right[0]), int(right[1])]
        c = int.from_bytes(keccak(prefix + b"".join(u(v) for v in coords)), "big") % N
    return c == proof.c0


@pytest.mark.parametrize("position", range(4))
def test_every_member_can_prove_and_both_verifiers_accept(members, position):
    secrets_, ring, _ = members
    st = statement()
    proof = prove(secrets_[position], ring, st, slot=0, rng=random.Random(position))
    ok = verify(proof, st)
    assert ok.commitment == ring_commitment(ring) and ok.nullifier == proof.nullifier
    assert reference_verify(proof, st)
    assert verify_bytes(encode_proof(proof), st) == ok


@pytest.mark.parametrize("size", [1, 2, 3, 16])
def test_ring_sizes(size):
    rng = random.Random(size)
    keys = [generate_key(rng) for _ in range(size)]
    ring = [k.public_key() for k in keys]
    proof = prove(keys[-1], ring, statement(), slot=3, rng=rng, self_check=True)
    assert proof.size == size and decode_proof(encode_proof(proof)) == proof


def test_key_image_is_x_times_h_of_scope(members):
    secrets_, _, _ = members
    scope = Scope(CHAIN, GATE, 7, 2, 0)
    h, _ = hash_to_g1(scope.message())
    assert key_image_base(scope)[0] == h
    expected = bn128.multiply(_pt(h), secrets_[0].value)
    assert key_image(secrets_[0], scope) == (int(expected[0]), int(expected[1]))


BINDINGS = {
    "order": dict(order_digest=keccak(b"order 2")),
    "beneficiary": dict(beneficiary="0x" + "c4" * 20),
    "chain": dict(chain_id=1),
    "gate (contract)": dict(gate="0x" + "a2" * 20),
    "market (contract)": dict(market="0x" + "b3" * 20),
    "epoch": dict(epoch=8),
    "tier": dict(tier=3),
}


@pytest.mark.parametrize("change", BINDINGS, ids=list(BINDINGS))
def test_a_proof_does_not_verify_for_another_binding(members, change):
    secrets_, ring, _ = members
    proof = prove(secrets_[1], ring, statement(), slot=0, rng=random.Random(1))
    other = statement(**BINDINGS[change])
    with pytest.raises(InvalidRingSignature, match="does not verify"):
        verify(proof, other)
    assert not reference_verify(proof, other)


def test_tampering_with_slot_ring_image_or_responses_breaks_it(members):
    secrets_, ring, outsider = members
    st = statement()
    proof = prove(secrets_[2], ring, st, slot=0, rng=random.Random(3))
    swapped = (outsider.public_key(), *ring[1:])
    other_image = key_image(outsider, st.scope(0))
    for bad in (
        dataclasses.replace(proof, slot=1),
        dataclasses.replace(proof, ring=swapped),
        dataclasses.replace(proof, ring=tuple(reversed(ring))),
        dataclasses.replace(proof, key_image=other_image),
        dataclasses.replace(proof, c0=(proof.c0 + 1) % N),
        dataclasses.replace(proof, s=(proof.s[0], (proof.s[1] + 1) % N, *proof.s[2:])),
    ):
        with pytest.raises(InvalidRingSignature):
            verify(bad, st)


def test_an_outsider_cannot_prove(members):
    _, ring, outsider = members
    with pytest.raises(NotAMember):
        prove(outsider, ring, statement(), slot=0)


def test_linkable_within_a_scope_unlinkable_across_scopes(members):
    secrets_, ring, _ = members
    me, other = secrets_[0], secrets_[1]
    p1 = prove(me, ring, statement(), slot=0)
    p2 = prove(me, ring, statement(order_digest=keccak(b"another order")), slot=0)
    # same member, same scope: same key image, so the second use is caught
    assert p1.key_image == p2.key_image and p1.nullifier == p2.nullifier
    # another member in the same scope: another image
    assert prove(other, ring, statement(), slot=0).key_image != p1.key_image
    # the same member in other scopes: unrelated images (different slot, epoch, tier, gate, chain)
    images = {p1.key_image}
    for st, slot in ((statement(), 1), (statement(epoch=8), 0), (statement(tier=3), 0),
                     (statement(gate="0x" + "a2" * 20), 0), (statement(chain_id=31337), 0)):
        images.add(prove(me, ring, st, slot=slot).key_image)
    assert len(images) == 6
    # the nonces are fresh: two proofs of the same statement differ everywhere but the image
    p3 = prove(me, ring, statement(), slot=0)
    assert p3.c0 != p1.c0 and set(p3.s).isdisjoint(p1.s)


def test_seeded_proofs_are_reproducible(members):
    secrets_, ring, _ = members
    a = prove(secrets_[0], ring, statement(), slot=0, rng=random.Random(9))
    b = prove(secrets_[0], ring, statement(), slot=0, rng=random.Random(9))
    assert encode_proof(a) == encode_proof(b)


def test_prove_tier_and_check_against_the_group(members):
    secrets_, ring, outsider = members
    group = TierGroup.build(2, 7, ring, slots=2, bucket_size=2)
    st = statement()
    data = prove_tier(secrets_[3], group, st, slot=1)
    proof = decode_proof(data)
    assert len(proof.ring) == 2 and secrets_[3].public_key() in proof.ring
    ok = check_tier_proof(data, st, group)
    assert ok.nullifier == nullifier_for(secrets_[3], st.scope(1))
    with pytest.raises(SlotOutOfRange):
        prove_tier(secrets_[3], group, st, slot=2)
    with pytest.raises(RingNotCommitted):  # a group of another epoch
        check_tier_proof(data, st, group.for_epoch(8))
    # a valid proof over a ring that is not one of the group's buckets
    rogue = prove(secrets_[3], ring, st, slot=0)
    with pytest.raises(RingNotCommitted, match="not a bucket"):
        check_tier_proof(encode_proof(rogue), st, group)
    with pytest.raises(NotAMember):
        prove_tier(outsider, group, st, slot=0)
    big_slot = encode_proof(prove(secrets_[3], group.bucket_of(secrets_[3].public_key()), st, slot=5))
    with pytest.raises(SlotOutOfRange):
        check_tier_proof(big_slot, st, group)


def test_statement_validates_its_fields():
    from zk.errors import ProofFormatError

    with pytest.raises(ProofFormatError, match="order_digest"):
        statement(order_digest=b"short")
    with pytest.raises(ProofFormatError, match="tier"):
        statement(tier=256)
    with pytest.raises(ProofFormatError, match="address"):
        statement(gate="not an address")
    assert statement(order_digest="0x" + DIGEST.hex()).order_digest == DIGEST


def test_secret_keys_do_not_leak_in_repr(members):
    secrets_, _, _ = members
    assert hex(secrets_[0].value)[2:12] not in repr(secrets_[0])
    assert isinstance(secrets_[0].public_key(), PublicKey)
