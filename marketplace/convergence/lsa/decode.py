"""Decoding a Compute LSA: the top-level TLV walk, and the cache of decoded descriptors.

``decode_lsa`` is the hot path of flooding (every LSA received is decoded before anything
else), so it is written for CPython: one pass over the bytes, struct formats compiled
once, wire codes mapped to rows and enum members through 256-entry tables, and the
``from_validated`` constructors for values this code has just checked.

Invariants:
- ``decode_lsa`` returns a fully validated ``ComputeLsa`` or raises a subclass of
  ``LsaDecodeError`` whose offset is the byte at fault; never a partial object, never
  another exception. Checks run in a fixed order: header, type, checksum, then each
  top-level TLV in turn (boundaries, order, duplicates, length rule, value), then the
  presence of the signature, NODE, DOMAIN and ATTACHMENT TLVs, then the descriptor's
  NODE and DEVICE TLVs (unless cached);
- known TLVs come in ascending type order, each once but DEVICE, and the signature TLV
  is the last TLV; unknown TLVs are kept in ``unknown_tlvs``, in wire order;
- it does not check the signature (``sign.recover_originator`` does);
- decoded descriptors are cached by the exact bytes of their NODE and DEVICE TLVs, which
  they are a pure function of; the cache is bounded.
"""

from __future__ import annotations

from marketplace.convergence.checksum import fletcher_sums
from marketplace.convergence.errors import (
    BadSignatureTlv,
    BadValue,
    ChecksumMismatch,
    DuplicateTlv,
    MalformedTlv,
    MissingTlv,
    NonCanonical,
    WrongLsaType,
)
from marketplace.convergence.lsa.header import decode_header
from marketplace.convergence.lsa.tables import LSA_OPS
from marketplace.convergence.lsa.values import ComputeLsa, LsaHeader
from marketplace.convergence.lsa.wire import (
    CHECKSUM_REGION_START,
    COMPUTE_LSA,
    HEADER_SIZE,
    OFF_CHECKSUM,
    OFF_TYPE,
    SIG_TLV_SIZE,
    TLV,
    TLV_HEADER,
    Tlv,
)
from marketplace.resources.model import DeviceCapability, NodeDescriptor

_unpack_tlv = TLV.unpack_from
_new_lsa = ComputeLsa.from_validated
_new_node = NodeDescriptor.from_validated
_BY_CODE = LSA_OPS.by_code
_NODE, _DEVICE, _SIGNATURE = int(Tlv.NODE), int(Tlv.DEVICE), int(Tlv.SIGNATURE)
#: the value TLVs (AVAILABILITY .. RUNTIMES) are decoded into a list indexed by their code
_VALUE_SLOTS = int(Tlv.RUNTIMES) + 1

#: decoded descriptors by the exact bytes of their NODE and DEVICE TLVs. Decoding those
#: bytes is a pure function, and a provider's hardware is the same in every refresh of its
#: LSA (only availability, prices and the sequence number move), so steady-state flooding
#: decodes each descriptor once. Bounded; the oldest half is dropped when full.
_DESCRIPTORS: dict[bytes, NodeDescriptor] = {}
DESCRIPTOR_CACHE_SIZE = 4096


def clear_descriptor_cache() -> None:
    """Forget every cached descriptor (benchmarks use it to measure cold decoding)."""
    _DESCRIPTORS.clear()


def cached_descriptors() -> int:
    """How many decoded descriptors the cache holds."""
    return len(_DESCRIPTORS)


def decode_lsa(data: bytes) -> ComputeLsa:
    """Decode and validate a Compute LSA (structure, values, checksum; not the signature)."""
    data = bytes(data)
    header = _checked_header(data)
    end = header.length
    spans: list[tuple[int, int, int]] = []  # NODE and DEVICE TLVs: (type, start, end)
    span_bytes = 0
    values: list = [None] * _VALUE_SLOTS
    unknown: list[tuple[int, bytes]] = []
    last_known = 0
    signed = False
    pos = HEADER_SIZE
    ops = v = None
    try:
        while pos < end:
            if signed:
                raise BadSignatureTlv("the signature TLV is not the last TLV", offset=pos - SIG_TLV_SIZE)
            v = pos + TLV_HEADER
            if v > end:
                raise MalformedTlv("TLV header overruns the LSA", offset=pos)
            t, ln = _unpack_tlv(data, pos)
            nxt = v + ln
            if nxt > end:
                raise MalformedTlv(f"TLV {t} of {ln} bytes overruns the LSA", offset=pos)
            ops = _BY_CODE[t]
            if ops is None:
                unknown.append((t, data[v:nxt]))
            else:
                if t <= last_known:  # known TLVs come in ascending type order, each once but DEVICE
                    if t < last_known:
                        raise NonCanonical(f"TLV {ops.code.name} comes after TLV {Tlv(last_known).name}", offset=pos)
                    if not ops.repeated:
                        raise DuplicateTlv(f"TLV {ops.code.name} appears twice", offset=pos)
                last_known = t
                if not ops.fits[ln]:
                    raise LSA_OPS.bad_length(ops, ln, pos)
                if t <= _DEVICE:  # the descriptor's TLVs: decoded once done, or found in the cache
                    if t == _DEVICE and not spans:
                        raise MissingTlv("a DEVICE TLV comes before the NODE TLV", offset=pos)
                    spans.append((t, pos, nxt))
                    span_bytes += nxt - pos
                elif t == _SIGNATURE:
                    signed = True
                else:
                    values[t] = ops.decode(data, v, nxt)
            pos = nxt
    except UnicodeDecodeError as exc:  # only the ATTACHMENT TLV is text at this level
        raise BadValue(f"{ops.name} is not valid UTF-8", offset=v + exc.start) from None
    _, _, _, availability, prices, domain, attachment, location, runtimes = values
    _require(end, signed, spans, domain, attachment)
    descriptor = _descriptor(data, spans, span_bytes)
    return _new_lsa(header, descriptor, availability or (), prices or (), domain, attachment, location, tuple(unknown), data,
                    runtimes)


def _checked_header(data: bytes) -> LsaHeader:
    """The header of a Compute LSA whose checksum verifies."""
    header = decode_header(data)
    if header.lsa_type != COMPUTE_LSA:
        raise WrongLsaType(f"LSA type {header.lsa_type} is not a Compute LSA ({COMPUTE_LSA})", offset=OFF_TYPE)
    c0, c1 = fletcher_sums(data[CHECKSUM_REGION_START:])
    if c0 or c1:
        raise ChecksumMismatch(f"checksum {header.checksum:#06x} does not verify", offset=OFF_CHECKSUM)
    return header


def _require(end: int, signed: bool, spans: list, domain: int | None, attachment: str | None) -> None:
    """The TLVs every Compute LSA has, checked in this order once all TLVs are read."""
    if not signed:
        raise BadSignatureTlv("the LSA has no signature TLV", offset=end)
    if not spans:
        raise MissingTlv("the LSA has no NODE TLV", offset=end)
    if domain is None:
        raise MissingTlv("the LSA has no DOMAIN TLV", offset=end)
    if attachment is None:
        raise MissingTlv("the LSA has no ATTACHMENT TLV", offset=end)


def _descriptor(data: bytes, spans: list[tuple[int, int, int]], span_bytes: int) -> NodeDescriptor:
    """The descriptor of the NODE and DEVICE TLVs at ``spans`` (``span_bytes`` long in all),
    from the cache if it has it."""
    first, last = spans[0][1], spans[-1][2]
    if last - first == span_bytes:
        key = data[first:last]
    else:  # unknown TLVs sit between the descriptor's: the key is the spans' bytes only
        key = b"".join(data[s:e] for _, s, e in spans)
    descriptor = _DESCRIPTORS.get(key)
    if descriptor is None:
        descriptor = _decode_descriptor(data, spans)
        if len(_DESCRIPTORS) >= DESCRIPTOR_CACHE_SIZE:
            for k in list(_DESCRIPTORS)[: DESCRIPTOR_CACHE_SIZE // 2]:
                del _DESCRIPTORS[k]
        _DESCRIPTORS[key] = descriptor
    return descriptor


def _decode_descriptor(data: bytes, spans: list[tuple[int, int, int]]) -> NodeDescriptor:
    node = None
    devices: list[DeviceCapability] = []
    last_key = None
    for t, pos, end in spans:
        value = _BY_CODE[t].decode(data, pos + TLV_HEADER, end)  # type: ignore[union-attr]
        if t == _NODE:
            node = value
            continue
        key = (value.device_class, value.model, value.share_milli)  # IntEnum compares as int
        if last_key is not None and key < last_key:
            raise NonCanonical("DEVICE TLVs are not in (class, model, share) order", offset=pos)
        last_key = key
        devices.append(value)
    hostname, arch, memory, disk, numa = node  # type: ignore[misc]  # spans[0] is the NODE TLV
    # devices are in non-decreasing (class, model, share) order (checked above), which is
    # the order NodeDescriptor's stable sort would give, so from_validated is exact
    return _new_node(hostname, tuple(devices), memory, disk, numa, arch)
