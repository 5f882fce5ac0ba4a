"""Errors of the proof system, all under ``marketplace.errors.ProofError``.

    ProofError (marketplace.errors)
    ├── ProofFormatError          bytes that are not a well-formed proof; ``offset`` says where
    │   ├── BadProofLength        truncated or padded (or a length field out of range)
    │   ├── UnknownScheme         a scheme byte this verifier does not know
    │   ├── RingSizeOutOfRange    ring of 0 keys or more than MAX_RING
    │   ├── CoordinateNotInField  a coordinate >= p
    │   ├── ScalarNotInGroup      a scalar >= n
    │   ├── PointAtInfinity       the encoding (0, 0) where a real point is needed
    │   └── PointNotOnCurve       (x, y) with y^2 != x^3 + 3
    ├── InvalidRingSignature      well formed, but the ring equation does not close: wrong
    │                             order, chain, contract, epoch, tier, slot, beneficiary or ring
    ├── RingNotCommitted          the proof's ring is not a committed bucket of the tier group
    ├── SlotOutOfRange            a slot beyond the uses per epoch the tier grants
    ├── NotAMember                the prover's key is not in the ring it wants to prove for
    └── GroupError                a tier group that cannot be built (duplicate or bad keys)

Each class is named after the Solidity custom error the on-chain verifier raises for the
same fault, so one test vector can be checked against both verifiers by name.
"""

from __future__ import annotations

from typing import Any

from marketplace.errors import ProofError


class ProofFormatError(ProofError):
    """Bytes that do not decode to a proof. ``offset`` is the byte offset of the bad field."""

    code = "proof-format"

    def __init__(self, message: str, *, offset: int | None = None, **kw: Any) -> None:
        super().__init__(message, offset=offset, **kw)
        self.offset = offset


class BadProofLength(ProofFormatError):
    code = "proof-length"


class UnknownScheme(ProofFormatError):
    code = "proof-scheme"


class RingSizeOutOfRange(ProofFormatError):
    code = "proof-ring-size"


class CoordinateNotInField(ProofFormatError):
    code = "proof-coordinate"


class ScalarNotInGroup(ProofFormatError):
    code = "proof-scalar"


class PointAtInfinity(ProofFormatError):
    code = "proof-infinity"


class PointNotOnCurve(ProofFormatError):
    code = "proof-not-on-curve"


class InvalidRingSignature(ProofError):
    """The ring equation does not close for this statement (a proof made for another binding)."""

    code = "proof-invalid"


class RingNotCommitted(ProofError):
    code = "proof-ring-not-committed"


class SlotOutOfRange(ProofError):
    code = "proof-slot"


class NotAMember(ProofError):
    code = "proof-not-a-member"


class GroupError(ProofError):
    code = "tier-group"
