"""The Compute LSA's fixed 32-byte header: parsing it, ageing it, ordering instances.

    lifetime u16 | type u8 | version u8 | originator 20 | sequence u32 | checksum u16 | length u16

Invariants:
- the remaining lifetime is covered by neither the checksum nor the signature, so
  ``with_lifetime`` (ageing, purging) changes two bytes and nothing else;
- ``decode_header`` checks only what the header alone can tell (version, size bounds,
  length against the buffer, reserved zeros); ``decode_lsa`` checks the rest;
- instances of one LSA are ordered as RFC 2328 §13.1 and ISO 10589 §7.3.16 order them.
"""

from __future__ import annotations

from marketplace.convergence.checksum import iso_checksum
from marketplace.convergence.errors import (
    BadLength,
    BadValue,
    ChecksumMismatch,
    LsaEncodeError,
    Oversized,
    Truncated,
    UnsupportedVersion,
)
from marketplace.convergence.lsa.values import LsaHeader
from marketplace.convergence.lsa.wire import (
    CHECKSUM_REGION_START,
    HEADER,
    HEADER_SIZE,
    MAX_LIFETIME,
    MAX_LSA_SIZE,
    OFF_CHECKSUM,
    OFF_LENGTH,
    OFF_SEQUENCE,
    OFF_VERSION,
    SIG_TLV_SIZE,
    U16,
    VERSION,
)

_unpack_header = HEADER.unpack_from
_new_header = LsaHeader.from_validated


def decode_header(data: bytes) -> LsaHeader:
    """Parse and sanity-check the fixed header only (no checksum, no body, no signature)."""
    n = len(data)
    if n < HEADER_SIZE:
        raise Truncated(f"LSA of {n} bytes is shorter than its {HEADER_SIZE}-byte header", offset=n)
    lifetime, lsa_type, version, originator, sequence, checksum, length = _unpack_header(data, 0)
    if version != VERSION:
        raise UnsupportedVersion(f"LSA version {version} is not {VERSION}", offset=OFF_VERSION)
    if length > MAX_LSA_SIZE or n > MAX_LSA_SIZE:
        raise Oversized(
            f"LSA of {max(length, n)} bytes exceeds MAX_LSA_SIZE {MAX_LSA_SIZE}", offset=OFF_LENGTH
        )
    if length != n:
        raise BadLength(f"header says {length} bytes but the LSA has {n}", offset=OFF_LENGTH)
    if length < HEADER_SIZE + SIG_TLV_SIZE:
        raise BadLength(f"LSA length {length} leaves no room for a signature TLV", offset=OFF_LENGTH)
    if sequence == 0:
        raise BadValue("sequence number 0 is reserved", offset=OFF_SEQUENCE)
    if checksum == 0:
        raise ChecksumMismatch("checksum field is 0 (never computed)", offset=OFF_CHECKSUM)
    return _new_header(lsa_type, originator, sequence, lifetime, checksum, length)


def with_lifetime(raw: bytes, lifetime: int) -> bytes:
    """The same LSA with another remaining lifetime; checksum and signature are untouched."""
    if not 0 <= lifetime <= MAX_LIFETIME:
        raise LsaEncodeError(f"lifetime {lifetime} is outside 0..{MAX_LIFETIME}", field="lifetime")
    decode_header(raw)
    return U16.pack(lifetime) + bytes(raw[2:])


def purge(raw: bytes) -> bytes:
    """The purge of an LSA: the same bytes with remaining lifetime 0."""
    return with_lifetime(raw, 0)


def newer(a: LsaHeader, b: LsaHeader) -> int:
    """1 if ``a`` is newer than ``b``, -1 if older, 0 if they are the same instance.

    As RFC 2328 §13.1 and ISO 10589 §7.3.16: the higher sequence number wins; on equal
    sequence numbers the higher checksum wins; on equal checksums a purge (lifetime 0)
    wins over a live copy.
    """
    if a.sequence != b.sequence:
        return 1 if a.sequence > b.sequence else -1
    if a.checksum != b.checksum:
        return 1 if a.checksum > b.checksum else -1
    a_purge, b_purge = a.lifetime == 0, b.lifetime == 0
    if a_purge != b_purge:
        return 1 if a_purge else -1
    return 0


def checksum_of(raw: bytes) -> int:
    """The ISO 10589 checksum an LSA's header should carry (its current field is ignored)."""
    return iso_checksum(bytes(raw[CHECKSUM_REGION_START:]), OFF_CHECKSUM - CHECKSUM_REGION_START)
