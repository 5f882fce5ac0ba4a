"""Errors of the convergence layer: Compute LSA decoding, signing and LSDB rules.

    DecodeError (marketplace.errors)            bytes that are not a well-formed Compute LSA
    └── LsaDecodeError                          ``offset`` is where decoding stopped; ``reason``
        ├── Truncated                           fewer bytes than a header or field needs
        ├── BadLength                           the header's length disagrees with the buffer
        ├── Oversized                           longer than MAX_LSA_SIZE (reason "oversized")
        ├── UnsupportedVersion                  a header version this codec does not speak
        ├── WrongLsaType                        not a Compute LSA (type 1)
        ├── ChecksumMismatch                    the ISO 10589 checksum does not verify
        ├── MalformedTlv                        a TLV or sub-TLV that overruns its parent
        ├── MissingTlv                          a required TLV or sub-TLV is absent
        ├── DuplicateTlv                        a TLV or sub-TLV that may appear once appears twice
        ├── BadValue                            a field out of range, bad UTF-8, not finite...
        ├── NonCanonical                        repeated entries out of canonical order
        └── BadSignatureTlv                     signature TLV missing, misplaced or mis-sized
    Rejected (marketplace.errors)               a well-formed LSA refused by a rule
    └── LsaRejected                             ``reason`` is the stable counter name
        ├── BadSignature                        signature does not recover, or not to the originator
        ├── UnknownOriginator                   originator outside the registry view
        └── SequenceWrapPending                 own sequence wrapped; wait until ``retry_at``
    InputError (marketplace.errors)
    ├── LsaEncodeError                          content that cannot be put on the wire
    └── NotFound
        └── UnknownLsa                          no LSA under that key in the LSDB

Every ``LsaDecodeError`` carries a ``reason`` class attribute, so the LSDB can count a
malformed input under a stable name without a table of its own.
"""

from __future__ import annotations

from typing import Any

from marketplace.errors import DecodeError, InputError, NotFound, Rejected


class LsaDecodeError(DecodeError):
    """Bytes that are not a well-formed Compute LSA."""

    code = "lsa-decode"
    reason = "malformed"


class Truncated(LsaDecodeError):
    code = "lsa-truncated"


class BadLength(LsaDecodeError):
    code = "lsa-length"


class Oversized(LsaDecodeError):
    code = "lsa-oversized"
    reason = "oversized"


class UnsupportedVersion(LsaDecodeError):
    code = "lsa-version"


class WrongLsaType(LsaDecodeError):
    code = "lsa-type"
    reason = "wrong-type"


class ChecksumMismatch(LsaDecodeError):
    code = "lsa-checksum"
    reason = "bad-checksum"


class MalformedTlv(LsaDecodeError):
    code = "lsa-tlv"


class MissingTlv(LsaDecodeError):
    code = "lsa-missing-tlv"


class DuplicateTlv(LsaDecodeError):
    code = "lsa-duplicate-tlv"


class BadValue(LsaDecodeError):
    code = "lsa-value"


class NonCanonical(LsaDecodeError):
    code = "lsa-non-canonical"


class BadSignatureTlv(LsaDecodeError):
    code = "lsa-signature-tlv"


class LsaRejected(Rejected):
    """A well-formed LSA refused by a rule; ``reason`` is what the LSDB counts."""

    code = "lsa-rejected"


class BadSignature(LsaRejected):
    code = "lsa-bad-signature"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, reason="bad-signature", **kw)


class UnknownOriginator(LsaRejected):
    code = "lsa-unknown-originator"

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, reason="unknown-originator", **kw)


class SequenceWrapPending(LsaRejected):
    """The originator's sequence number wrapped; it may not originate before ``retry_at``."""

    code = "lsa-sequence-wrap"

    def __init__(self, message: str, *, retry_at: float, **kw: Any) -> None:
        super().__init__(message, reason="sequence-wrap", retry_at=retry_at, **kw)
        self.retry_at = retry_at


class LsaEncodeError(InputError):
    """Content that cannot be encoded (a string too long, a number out of its field's range)."""

    code = "lsa-encode"


class UnknownLsa(NotFound):
    code = "lsa-not-found"
