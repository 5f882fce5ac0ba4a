"""Encoding a Compute LSA: content to TLVs (through the codec tables), then header,
signature and checksum.

Invariants:
- the TLVs are written in the tables' order: NODE, one DEVICE per device group in the
  descriptor's (class, model, share) order, AVAILABILITY, PRICE, DOMAIN, ATTACHMENT,
  LOCATION, RUNTIMES, then the unknown TLVs the content carries, then SIGNATURE; so decoding and
  re-encoding an LSA gives the same bytes;
- content that cannot be put on the wire raises ``LsaEncodeError`` naming the field;
  nothing is returned half-built;
- the signer signs first, then the checksum is computed over the whole LSA, signature
  included; the lifetime is written last (neither covers it).
"""

from __future__ import annotations

import logging
from typing import Iterable

from marketplace.convergence.errors import LsaEncodeError
from marketplace.convergence.lsa.header import checksum_of
from marketplace.convergence.lsa.ops import encode_rows
from marketplace.convergence.lsa.sign import signature_tlv, signing_key
from marketplace.convergence.lsa.tables import LSA_OPS
from marketplace.convergence.lsa.values import Availability, LsaContent
from marketplace.convergence.lsa.wire import (
    COMPUTE_LSA,
    HEADER,
    HEADER_SIZE,
    MAX_LIFETIME,
    MAX_LSA_SIZE,
    MAX_SEQUENCE,
    OFF_CHECKSUM,
    OFF_LIFETIME,
    SIG_TLV_SIZE,
    TLV,
    U16,
    VERSION,
)
from marketplace.resources.model import DeviceClass, NodeDescriptor

log = logging.getLogger(__name__)


def encode_body(content: LsaContent) -> bytes:
    """The TLVs of ``content``, signature excluded."""
    body = encode_rows(content, LSA_OPS)
    unknown = []
    for t, value in content.unknown_tlvs:
        if not 0 <= t <= 255 or LSA_OPS[t] is not None:
            raise LsaEncodeError(f"unknown TLV type {t} collides with a known type", field="unknown_tlvs")
        value = bytes(value)
        if len(value) > LSA_OPS.max_length:
            raise LsaEncodeError(f"TLV {t} value of {len(value)} bytes exceeds {LSA_OPS.max_length}", field="unknown_tlvs")
        unknown.append(TLV.pack(t, len(value)) + value)
    return body + b"".join(unknown)


def encode_lsa(
    content: LsaContent | NodeDescriptor,
    availability: Iterable[Availability] = (),
    prices: Iterable[tuple[DeviceClass, int]] = (),
    domain: int = 0,
    attachment: str = "",
    location: tuple[float, float] | None = None,
    unknown_tlvs: Iterable[tuple[int, bytes]] = (),
    *,
    sequence: int,
    lifetime: int,
    key: bytes,
) -> bytes:
    """Encode, checksum and sign a Compute LSA. ``content`` is an ``LsaContent`` or a descriptor
    followed by the other fields."""
    if not isinstance(content, LsaContent):
        content = LsaContent(
            content, tuple(availability), tuple(prices), domain, attachment, location, tuple(unknown_tlvs)
        )
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise LsaEncodeError(f"sequence {sequence} is outside 1..{MAX_SEQUENCE}", field="sequence")
    if not 0 <= lifetime <= MAX_LIFETIME:
        raise LsaEncodeError(f"lifetime {lifetime} is outside 0..{MAX_LIFETIME}", field="lifetime")
    return seal(encode_body(content), sequence=sequence, lifetime=lifetime, key=key)


def seal(body: bytes, *, sequence: int, lifetime: int, key: bytes, lsa_type: int = COMPUTE_LSA) -> bytes:
    """Put a header before already-encoded TLVs ``body``, sign, append the signature TLV and
    checksum. ``encode_lsa`` uses it; tests use it to build LSAs with hand-made TLVs."""
    private, originator = signing_key(key)
    length = HEADER_SIZE + len(body) + SIG_TLV_SIZE
    if length > MAX_LSA_SIZE:
        raise LsaEncodeError(f"the LSA would be {length} bytes, over MAX_LSA_SIZE {MAX_LSA_SIZE}", field="content")
    unsigned = HEADER.pack(0, lsa_type, VERSION, originator, sequence, 0, length) + bytes(body)
    raw = bytearray(unsigned + signature_tlv(private, unsigned))
    U16.pack_into(raw, OFF_CHECKSUM, checksum_of(raw))
    U16.pack_into(raw, OFF_LIFETIME, lifetime)
    log.debug("sealed LSA %s seq %d (%d bytes)", originator.hex(), sequence, length)
    return bytes(raw)
