"""Tier groups: the public keys holding tier T in epoch E, split into rings the chain commits.

A ``TierGroup`` is an ordered set of public keys for one (tier, epoch), plus the number of
``slots`` (uses per member per epoch) the tier grants. Its keys are sorted by (x, y) and
deduplicated, so the order reveals nothing about when a member joined and two parties
building the group from the same keys get the same commitments.

Buckets. A bLSAG proof carries its whole ring and costs O(n) to verify (about 26k gas per
key on chain), so a large group is split into buckets of at most ``bucket_size`` keys; a
proof is made over the member's bucket, and the anonymity set is that bucket. Buckets are
contiguous runs of the sorted keys with sizes differing by at most one (a group of 17 with
bucket size 16 gives 9 + 8, not 16 + 1, so no member is left nearly alone).

Commitment of a bucket = ``keccak256(encoded ring)`` (``zk.encoding.ring_commitment``);
the operator commits the list of bucket commitments per (tier, epoch) on chain.

Invariants: ``buckets()`` partitions ``keys`` in order; every bucket has 1..MAX_RING keys;
``commitments()[i] == ring_commitment(buckets()[i])``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from zk.encoding import MAX_RING, ring_commitment
from zk.errors import GroupError, NotAMember, ProofFormatError
from zk.keys import PublicKey

DEFAULT_BUCKET_SIZE = 16
GROUP_FORMAT = "cona-tier-group/1"


@dataclass(frozen=True)
class TierGroup:
    tier: int
    epoch: int
    keys: tuple[PublicKey, ...]
    slots: int = 1
    bucket_size: int = DEFAULT_BUCKET_SIZE
    _buckets: tuple[tuple[PublicKey, ...], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.tier, bool) or not isinstance(self.tier, int) or not 1 <= self.tier <= 255:
            raise GroupError(f"tier must be 1..255 (0 is no tier), got {self.tier!r}", field="tier")
        if isinstance(self.epoch, bool) or not isinstance(self.epoch, int) or not 0 <= self.epoch < 2**64:
            raise GroupError(f"epoch must be a uint64, got {self.epoch!r}", field="epoch")
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or not 1 <= self.slots < 2**32:
            raise GroupError(f"slots must be 1..2^32-1, got {self.slots!r}", field="slots")
        if not 1 <= self.bucket_size <= MAX_RING:
            raise GroupError(f"bucket_size must be 1..{MAX_RING}, got {self.bucket_size}", field="bucket_size")
        keys = tuple(sorted(set(self.keys)))
        if len(keys) != len(self.keys):
            raise GroupError(f"the group holds {len(self.keys) - len(keys)} duplicate key(s)", field="keys")
        if not keys:
            raise GroupError("a tier group needs at least one key", field="keys")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "_buckets", _split(keys, self.bucket_size))

    @classmethod
    def build(cls, tier: int, epoch: int, keys: Iterable[PublicKey], *, slots: int = 1,
              bucket_size: int = DEFAULT_BUCKET_SIZE) -> "TierGroup":
        """A group from keys in any order; duplicates are dropped (adding a key twice is a no-op)."""
        return cls(tier, epoch, tuple(sorted(set(keys))), slots, bucket_size)

    def with_keys(self, *added: PublicKey) -> "TierGroup":
        """The group with ``added`` keys too (the operator issuing credentials)."""
        return TierGroup.build(self.tier, self.epoch, (*self.keys, *added), slots=self.slots,
                               bucket_size=self.bucket_size)

    def without_keys(self, *removed: PublicKey) -> "TierGroup":
        gone = set(removed)
        return TierGroup.build(self.tier, self.epoch, (k for k in self.keys if k not in gone), slots=self.slots,
                               bucket_size=self.bucket_size)

    def for_epoch(self, epoch: int) -> "TierGroup":
        return TierGroup.build(self.tier, epoch, self.keys, slots=self.slots, bucket_size=self.bucket_size)

    def buckets(self) -> tuple[tuple[PublicKey, ...], ...]:
        return self._buckets

    def commitments(self) -> tuple[bytes, ...]:
        return tuple(ring_commitment(b) for b in self._buckets)

    def bucket_of(self, key: PublicKey) -> tuple[PublicKey, ...]:
        """The ring a member proves with."""
        for bucket in self._buckets:
            if key in bucket:
                return bucket
        raise NotAMember(f"key {key.hex()[:18]}... is not in tier {self.tier} for epoch {self.epoch}",
                         hint="ask the operator to issue a credential for this tier and epoch")

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    # -- the published file (what the operator hands to members and auditors)
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GROUP_FORMAT,
            "tier": self.tier,
            "epoch": self.epoch,
            "slots": self.slots,
            "bucket_size": self.bucket_size,
            "keys": [k.hex() for k in self.keys],
            "commitments": ["0x" + c.hex() for c in self.commitments()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TierGroup":
        if not isinstance(raw, dict) or raw.get("format") != GROUP_FORMAT:
            raise GroupError(f"not a tier group file (format {GROUP_FORMAT!r} expected)")
        try:
            group = cls(int(raw["tier"]), int(raw["epoch"]), tuple(PublicKey.from_hex(k) for k in raw["keys"]),
                        int(raw.get("slots", 1)), int(raw.get("bucket_size", DEFAULT_BUCKET_SIZE)))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, (GroupError, ProofFormatError)):
                raise
            raise GroupError(f"malformed tier group file: {exc!r}") from None
        listed = raw.get("commitments")
        if listed is not None and ["0x" + c.hex() for c in group.commitments()] != listed:
            raise GroupError("the file's commitments do not match its keys", field="commitments")
        return group

    @classmethod
    def from_json(cls, text: str) -> "TierGroup":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise GroupError(f"tier group file is not JSON: {exc}") from None


def _split(keys: tuple[PublicKey, ...], size: int) -> tuple[tuple[PublicKey, ...], ...]:
    count = -(-len(keys) // size)
    base, extra = divmod(len(keys), count)
    out = []
    start = 0
    for i in range(count):
        width = base + (1 if i < extra else 0)
        out.append(keys[start:start + width])
        start += width
    return tuple(out)
