"""The tier proof as a buyer and an engine use it: prove for an order, check against a group.

This is the library surface a CLI or the API calls (``cona tier prove`` and the order
endpoint accepting a proof):

- ``prove_tier(secret, group, statement, slot)`` -> proof bytes, over the member's bucket;
- ``check_tier_proof(data, statement, group)`` -> ``Verified``, raising the ``ProofError``
  the gate would revert with (format, slot, signature, ring not committed), in the gate's
  order, so an engine can refuse a bad proof before it costs gas;
- ``nullifier_for(secret, scope)`` -> the nullifier a member's proof in that scope would
  spend, so a client can pick a slot it has not used (``TierGate.spent(nullifier)``).
"""

from __future__ import annotations

from random import Random

from zk.blsag import Scope, Statement, Verified, key_image, prove, verify
from zk.encoding import decode_proof, encode_proof, nullifier_of
from zk.errors import RingNotCommitted, SlotOutOfRange
from zk.groups import TierGroup
from zk.keys import SecretKey


def _check_group(group: TierGroup, statement: Statement) -> None:
    if (group.tier, group.epoch) != (statement.tier, statement.epoch):
        raise RingNotCommitted(
            f"the group is tier {group.tier} epoch {group.epoch}, the statement tier {statement.tier} "
            f"epoch {statement.epoch}", hint="use the tier group of the order's tier and the gate's current epoch")


def prove_tier(secret: SecretKey, group: TierGroup, statement: Statement, slot: int, *,
               rng: Random | None = None) -> bytes:
    """The encoded proof that the holder of ``secret`` is in ``group``, bound to ``statement``."""
    _check_group(group, statement)
    if not 0 <= slot < group.slots:
        raise SlotOutOfRange(f"slot {slot} is outside 0..{group.slots - 1} for tier {group.tier}",
                             hint=f"tier {group.tier} grants {group.slots} use(s) per epoch")
    ring = group.bucket_of(secret.public_key())
    return encode_proof(prove(secret, ring, statement, slot, rng=rng))


def check_tier_proof(data: bytes, statement: Statement, group: TierGroup) -> Verified:
    """Everything the gate checks except the spent-nullifier set (which lives on chain)."""
    proof = decode_proof(data)
    _check_group(group, statement)
    if proof.slot >= group.slots:
        raise SlotOutOfRange(f"slot {proof.slot} is outside 0..{group.slots - 1} for tier {group.tier}")
    verified = verify(proof, statement)
    if verified.commitment not in group.commitments():
        raise RingNotCommitted(f"ring 0x{verified.commitment.hex()} is not a bucket of tier {group.tier} "
                               f"epoch {group.epoch}", hint="prove with the group's current buckets")
    return verified


def nullifier_for(secret: SecretKey, scope: Scope) -> bytes:
    return nullifier_of(key_image(secret, scope))
