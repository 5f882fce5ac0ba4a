"""The Compute LSA: a provider's hardware, availability and prices as a signed link-state PDU.

The wire format (every byte is documented in ``docs/tlv.md``) follows IS-IS: a fixed
32-byte header, then TLVs; the node and each device group are TLVs made of sub-TLVs.

    header  lifetime u16 | type u8 | version u8 | originator 20 | sequence u32 | checksum u16 | length u16
    TLVs    type u8 | length u16 | value        (sub-TLVs: type u8 | length u8 | value)

Invariants:
- the checksum is the ISO 10589 Fletcher checksum over every byte but the remaining
  lifetime (bytes 2..length), so ageing an LSA never changes it;
- the signature TLV is the last TLV; it holds 65 bytes r, s, v (v = 27 + recovery id,
  s in the lower half of the curve order) signed by the originator's secp256k1 key over
  keccak256 of the LSA up to the signature TLV with lifetime and checksum zeroed; the
  originator id is that key's Ethereum address, so an LSA is bound to a registered provider;
- ``decode_lsa`` either returns a fully validated ``ComputeLsa`` or raises a subclass of
  ``LsaDecodeError`` carrying the offset at fault; never a partial object, never another
  exception. It does not check the signature (``recover_originator`` does, and costs ~50 us);
- a decoded LSA re-encodes to the same bytes: repeated entries must be in canonical order
  and unknown top-level TLVs are kept (and re-flooded, since flooding sends ``raw``);
  unknown sub-TLVs inside a known TLV are skipped on decode and kept in ``raw``;
- no LSA is longer than ``MAX_LSA_SIZE`` (1492 bytes, IS-IS's originatingLSPBufferSize).
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Iterable

import coincurve
from eth_utils import keccak

from marketplace.convergence.checksum import fletcher_sums, iso_checksum
from marketplace.convergence.errors import (
    BadLength,
    BadSignature,
    BadSignatureTlv,
    BadValue,
    ChecksumMismatch,
    DuplicateTlv,
    LsaDecodeError,
    LsaEncodeError,
    MalformedTlv,
    MissingTlv,
    NonCanonical,
    Oversized,
    Truncated,
    UnsupportedVersion,
    WrongLsaType,
)
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision

log = logging.getLogger(__name__)

COMPUTE_LSA = 1
VERSION = 1
HEADER_SIZE = 32
MAX_LSA_SIZE = 1492
MAX_SEQUENCE = 0xFFFFFFFF
MAX_LIFETIME = 0xFFFF
SIGNATURE_SIZE = 65
TLV_HEADER = 3
SIG_TLV_SIZE = TLV_HEADER + SIGNATURE_SIZE

# byte offsets inside the header
OFF_LIFETIME = 0
OFF_TYPE = 2
OFF_VERSION = 3
OFF_ORIGINATOR = 4
OFF_SEQUENCE = 24
OFF_CHECKSUM = 28
OFF_LENGTH = 30
#: the checksummed region starts after the lifetime; the checksum sits at this offset in it
CHECKSUM_REGION_START = 2

_HEADER = struct.Struct("!HBB20sIHH")
_TLV = struct.Struct("!BH")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_F64 = struct.Struct("!d")
_CORE = struct.Struct("!BHI")  # device class, share_milli, count
_FLOP = struct.Struct("!Bd")
_AVAIL = struct.Struct("!BIH")  # device class, free milli-devices, load basis points
_LOCATION = struct.Struct("!dd")

# secp256k1 group order: signatures with s > n/2 are refused (EIP-2), so nobody can make a
# second valid signature for the same content and win a checksum tie with it
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2


class Tlv(IntEnum):
    """Top-level TLV types. Values are wire codes; never reuse one."""

    NODE = 1
    DEVICE = 2
    AVAILABILITY = 3
    PRICE = 4
    DOMAIN = 5
    ATTACHMENT = 6
    LOCATION = 7
    SIGNATURE = 255


class NodeSub(IntEnum):
    """Sub-TLVs of the NODE TLV."""

    HOSTNAME = 1
    ARCH = 2
    MEMORY_MIB = 3
    DISK_GIB = 4
    NUMA_NODES = 5


class DeviceSub(IntEnum):
    """Sub-TLVs of a DEVICE TLV (one DEVICE TLV per ``DeviceCapability``)."""

    CORE = 1  # class u8, share_milli u16, count u32
    MODEL = 2
    VENDOR = 3
    COMPUTE_UNITS = 4
    CLOCK_MHZ = 5
    FLOPS = 6  # n x (precision u8, f64)
    MEMORY_MIB = 7
    BANDWIDTH_GBPS = 8
    INTERCONNECT = 9
    FEATURE = 10  # repeated, one feature each, in ascending order


_CLASSES = {int(c): c for c in DeviceClass}
_PRECISIONS = {int(p): p for p in Precision}


@dataclass(frozen=True, slots=True)
class LsaHeader:
    """The fixed header. ``lifetime`` is the remaining lifetime in seconds."""

    lsa_type: int
    originator: bytes
    sequence: int
    lifetime: int
    checksum: int
    length: int

    @property
    def key(self) -> tuple[int, bytes]:
        return (self.lsa_type, self.originator)


@dataclass(frozen=True, slots=True)
class Availability:
    """What is free of one device class right now: milli-devices free and load in basis points."""

    device_class: DeviceClass
    free_milli: int
    load_bp: int


@dataclass(frozen=True, slots=True)
class LsaContent:
    """What an originator says in a Compute LSA, before it is numbered and signed."""

    descriptor: NodeDescriptor
    availability: tuple[Availability, ...] = ()
    prices: tuple[tuple[DeviceClass, int], ...] = ()
    domain: int = 0
    attachment: str = ""
    location: tuple[float, float] | None = None
    unknown_tlvs: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class ComputeLsa:
    """A decoded, validated Compute LSA. ``raw`` is the bytes it was decoded from."""

    header: LsaHeader
    descriptor: NodeDescriptor
    availability: tuple[Availability, ...]
    prices: tuple[tuple[DeviceClass, int], ...]
    domain: int
    attachment: str
    location: tuple[float, float] | None
    unknown_tlvs: tuple[tuple[int, bytes], ...]
    raw: bytes

    @property
    def key(self) -> tuple[int, bytes]:
        return self.header.key

    @property
    def content(self) -> LsaContent:
        return LsaContent(
            self.descriptor,
            self.availability,
            self.prices,
            self.domain,
            self.attachment,
            self.location,
            self.unknown_tlvs,
        )


# Decoded values are built from checked fields on every LSA received, so the three
# classes above that the decoder makes get a direct constructor: object.__new__ then each
# slot's member descriptor, which is what their frozen dataclass __init__ does (minus a
# name lookup per field). None of them has a __post_init__, so the objects are identical.
_new = object.__new__


def _slot_setters(cls: type) -> tuple:
    return tuple(cls.__dict__[f.name].__set__ for f in fields(cls))


_HEADER_SLOTS = _slot_setters(LsaHeader)
_AVAILABILITY_SLOTS = _slot_setters(Availability)
_LSA_SLOTS = _slot_setters(ComputeLsa)


def _new_header(lsa_type: int, originator: bytes, sequence: int, lifetime: int, checksum: int, length: int) -> LsaHeader:
    s0, s1, s2, s3, s4, s5 = _HEADER_SLOTS
    h = _new(LsaHeader)
    s0(h, lsa_type)
    s1(h, originator)
    s2(h, sequence)
    s3(h, lifetime)
    s4(h, checksum)
    s5(h, length)
    return h


def _new_availability(device_class: DeviceClass, free_milli: int, load_bp: int) -> Availability:
    s0, s1, s2 = _AVAILABILITY_SLOTS
    a = _new(Availability)
    s0(a, device_class)
    s1(a, free_milli)
    s2(a, load_bp)
    return a


def _new_lsa(header, descriptor, availability, prices, domain, attachment, location, unknown_tlvs, raw) -> ComputeLsa:
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _LSA_SLOTS
    lsa = _new(ComputeLsa)
    s0(lsa, header)
    s1(lsa, descriptor)
    s2(lsa, availability)
    s3(lsa, prices)
    s4(lsa, domain)
    s5(lsa, attachment)
    s6(lsa, location)
    s7(lsa, unknown_tlvs)
    s8(lsa, raw)
    return lsa


# --------------------------------------------------------------------------- header


def decode_header(data: bytes) -> LsaHeader:
    """Parse and sanity-check the fixed header only (no checksum, no body, no signature)."""
    n = len(data)
    if n < HEADER_SIZE:
        raise Truncated(f"LSA of {n} bytes is shorter than its {HEADER_SIZE}-byte header", offset=n)
    lifetime, lsa_type, version, originator, sequence, checksum, length = _HEADER.unpack_from(data, 0)
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
    return _U16.pack(lifetime) + bytes(raw[2:])


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


# --------------------------------------------------------------------------- decode
#
# The decoder is the hot path of flooding (every LSA received is decoded before anything
# else), so it is written for CPython: one pass over the bytes, integers read by indexing,
# struct formats compiled once, wire codes mapped to enum members through 256-entry tables
# instead of enum construction, and the model's ``from_validated`` constructors for values that
# this code has just validated (their ``__post_init__`` would check and sort them again).
# Every check the spec asks for is still made, in the same order, with the same typed
# error and offset.

_INF = math.inf
#: wire code -> member, None for codes that are not defined (so one index, no enum call)
_CLASS_BY_CODE: tuple[DeviceClass | None, ...] = tuple(_CLASSES.get(i) for i in range(256))
_PRECISION_BY_CODE: tuple[Precision | None, ...] = tuple(_PRECISIONS.get(i) for i in range(256))
_NODE_TEXT = {1: "hostname", 2: "arch"}
_DEVICE_TEXT = {2: "model", 3: "vendor", 9: "interconnect", 10: "feature"}
_unpack_u32 = _U32.unpack_from
_unpack_u64 = _U64.unpack_from
_unpack_f64 = _F64.unpack_from
_unpack_core = _CORE.unpack_from
_unpack_flop = _FLOP.unpack_from
_iter_flops = _FLOP.iter_unpack
_unpack_avail = _AVAIL.unpack_from
_unpack_tlv = _TLV.unpack_from
_trusted_device = DeviceCapability.from_validated
_trusted_node = NodeDescriptor.from_validated


# error builders: the hot loop tests inline and calls these only to raise
def _not_finite(value: float, at: int, what: str) -> BadValue:
    return BadValue(f"{what} must be a finite non-negative number, got {value!r}", offset=at)


def _wrong_size(length: int, want: int, at: int, what: str) -> MalformedTlv:
    return MalformedTlv(f"{what} sub-TLV has {length} bytes, expected {want}", offset=at)


def _decode_flops(data: bytes, v: int, nxt: int) -> tuple[tuple[Precision, float], ...]:
    """The flops sub-TLV's value (a multiple of 9 bytes): (precision, FLOP/s) pairs in
    strictly ascending precision order, each value finite and non-negative."""
    pairs = []
    last = 0
    for code, value in _iter_flops(data[v:nxt]):
        precision = _PRECISION_BY_CODE[code]
        if precision is None or code <= last or not 0.0 <= value < _INF:  # NaN fails the range
            raise _flops_error(data, v, nxt)
        last = code
        pairs.append((precision, value))
    return tuple(pairs)


def _flops_error(data: bytes, v: int, nxt: int) -> LsaDecodeError:
    """The error of the first bad entry of a flops run (re-read with offsets, off the hot path)."""
    last = 0
    for i in range(v, nxt, 9):
        code, value = _unpack_flop(data, i)
        if _PRECISION_BY_CODE[code] is None:
            return BadValue(f"unknown precision {code}", offset=i)
        if code <= last:
            return NonCanonical("flops are not in strictly ascending precision order", offset=i)
        if not 0.0 <= value < _INF:
            return _not_finite(value, i + 1, "flops")
        last = code
    raise AssertionError("_flops_error called on a valid run")  # pragma: no cover


def _decode_node(data: bytes, pos: int, end: int) -> tuple[str, str | None, int | None, float | None, int | None]:
    hostname = arch = memory = disk = numa = None
    seen = 0
    t = v = 0
    try:
        while pos < end:
            v = pos + 2
            if v > end:
                raise MalformedTlv("node sub-TLV header overruns the NODE TLV", offset=pos)
            t = data[pos]
            ln = data[pos + 1]
            nxt = v + ln
            if nxt > end:
                raise MalformedTlv(f"node sub-TLV {t} of {ln} bytes overruns the NODE TLV", offset=pos)
            if 1 <= t <= 5:  # 0 and 6..255 are unknown: skipped, as docs/tlv.md says
                bit = 1 << t
                if seen & bit:
                    raise DuplicateTlv(f"node sub-TLV {t} appears twice", offset=pos)
                seen |= bit
                if t == 1:
                    hostname = data[v:nxt].decode()
                elif t == 2:
                    arch = data[v:nxt].decode()
                elif t == 3:
                    if ln != 8:
                        raise _wrong_size(ln, 8, pos, "memory_mib")
                    memory = _unpack_u64(data, v)[0]
                elif t == 4:
                    if ln != 8:
                        raise _wrong_size(ln, 8, pos, "disk_gib")
                    disk = _unpack_f64(data, v)[0]
                    if not 0.0 <= disk < _INF:  # also false for NaN
                        raise _not_finite(disk, v, "disk_gib")
                elif t == 5:
                    if ln != 4:
                        raise _wrong_size(ln, 4, pos, "numa_nodes")
                    numa = _unpack_u32(data, v)[0]
            pos = nxt
    except UnicodeDecodeError as exc:
        raise BadValue(f"{_NODE_TEXT[t]} is not valid UTF-8", offset=v + exc.start) from None
    if hostname is None:
        raise MissingTlv("NODE TLV lacks its hostname sub-TLV", offset=end)
    return hostname, arch, memory, disk, numa


def _decode_device(data: bytes, pos: int, end: int) -> DeviceCapability:
    start = pos
    model = vendor = units = clock = memory = bandwidth = interconnect = None
    device_class = share = count = None
    flops: tuple[tuple[Precision, float], ...] = ()
    features: list[str] = []
    seen = 0
    t = v = 0
    try:
        while pos < end:
            v = pos + 2
            if v > end:
                raise MalformedTlv("device sub-TLV header overruns the DEVICE TLV", offset=pos)
            t = data[pos]
            ln = data[pos + 1]
            nxt = v + ln
            if nxt > end:
                raise MalformedTlv(f"device sub-TLV {t} of {ln} bytes overruns the DEVICE TLV", offset=pos)
            if t == 10:
                feature = data[v:nxt].decode()
                if feature != feature.lower():
                    raise NonCanonical(f"feature {feature!r} is not lower case", offset=v)
                if features and feature <= features[-1]:
                    raise NonCanonical("features are not in strictly ascending order", offset=pos)
                features.append(feature)
            elif 1 <= t <= 9:
                bit = 1 << t
                if seen & bit:
                    raise DuplicateTlv(f"device sub-TLV {t} appears twice", offset=pos)
                seen |= bit
                # a small decision tree rather than a chain of nine comparisons
                if t < 4:
                    if t == 1:
                        if ln != 7:
                            raise _wrong_size(ln, 7, pos, "device core")
                        code, share, count = _unpack_core(data, v)
                        device_class = _CLASS_BY_CODE[code]
                        if device_class is None:
                            raise BadValue(f"unknown device class {code}", offset=v)
                        if not 1 <= share <= 1000:
                            raise BadValue(f"share_milli {share} is outside 1..1000", offset=v + 1)
                        if count < 1:
                            raise BadValue("device count 0", offset=v + 3)
                    elif t == 2:
                        model = data[v:nxt].decode()
                    else:
                        vendor = data[v:nxt].decode()
                elif t < 7:
                    if t == 4:
                        if ln != 4:
                            raise _wrong_size(ln, 4, pos, "compute_units")
                        units = _unpack_u32(data, v)[0]
                    elif t == 5:
                        if ln != 8:
                            raise _wrong_size(ln, 8, pos, "clock_mhz")
                        clock = _unpack_f64(data, v)[0]
                        if not 0.0 <= clock < _INF:
                            raise _not_finite(clock, v, "clock_mhz")
                    else:
                        if ln % 9:
                            raise MalformedTlv(f"flops sub-TLV of {ln} bytes is not a multiple of 9", offset=pos)
                        flops = _decode_flops(data, v, nxt)
                elif t == 7:
                    if ln != 8:
                        raise _wrong_size(ln, 8, pos, "memory_mib")
                    memory = _unpack_u64(data, v)[0]
                elif t == 8:
                    if ln != 8:
                        raise _wrong_size(ln, 8, pos, "memory_bandwidth_gbps")
                    bandwidth = _unpack_f64(data, v)[0]
                    if not 0.0 <= bandwidth < _INF:
                        raise _not_finite(bandwidth, v, "memory_bandwidth_gbps")
                else:
                    interconnect = data[v:nxt].decode()
            pos = nxt
    except UnicodeDecodeError as exc:
        raise BadValue(f"{_DEVICE_TEXT[t]} is not valid UTF-8", offset=v + exc.start) from None
    if device_class is None:
        raise MissingTlv("DEVICE TLV lacks its core sub-TLV", offset=start)
    if model is None:
        raise MissingTlv("DEVICE TLV lacks its model sub-TLV", offset=start)
    # every value above is checked and in the form DeviceCapability.__post_init__ would
    # produce (enum members, floats, flops in strictly ascending precision, lower-case
    # features), so the trusted constructor builds the equal object without re-checking
    return _trusted_device(
        device_class, model, vendor, count, units, clock, flops, memory, bandwidth, interconnect,
        frozenset(features), share,
    )


#: decoded descriptors by the exact bytes of their NODE and DEVICE TLVs. Decoding those
#: bytes is a pure function, and a provider's hardware is the same in every refresh of its
#: LSA (only availability, prices and the sequence number move), so steady-state flooding
#: decodes each descriptor once. Bounded; the oldest half is dropped when full.
_DESCRIPTORS: dict[bytes, NodeDescriptor] = {}
DESCRIPTOR_CACHE_SIZE = 4096


def clear_descriptor_cache() -> None:
    """Forget every cached descriptor (benchmarks use it to measure cold decoding)."""
    _DESCRIPTORS.clear()


def _decode_descriptor(data: bytes, spans: list[tuple[int, int, int]]) -> NodeDescriptor:
    node = None
    devices: list[DeviceCapability] = []
    last_key = None
    for t, pos, end in spans:
        if t == 1:
            node = _decode_node(data, pos + TLV_HEADER, end)
        else:
            device = _decode_device(data, pos + TLV_HEADER, end)
            key = (device.device_class, device.model, device.share_milli)  # IntEnum compares as int
            if last_key is not None and key < last_key:
                raise NonCanonical("DEVICE TLVs are not in (class, model, share) order", offset=pos)
            last_key = key
            devices.append(device)
    if node is None:
        raise MissingTlv("the LSA has no NODE TLV", offset=len(data))
    hostname, arch, memory, disk, numa = node
    # devices are in non-decreasing (class, model, share) order (checked above), which is
    # the order NodeDescriptor's stable sort would give, so the trusted constructor is exact
    return _trusted_node(hostname, tuple(devices), memory, disk, numa, arch)


def decode_lsa(data: bytes) -> ComputeLsa:
    """Decode and validate a Compute LSA (structure, values, checksum; not the signature)."""
    data = bytes(data)
    header = decode_header(data)
    if header.lsa_type != COMPUTE_LSA:
        raise WrongLsaType(f"LSA type {header.lsa_type} is not a Compute LSA ({COMPUTE_LSA})", offset=OFF_TYPE)
    c0, c1 = fletcher_sums(data[CHECKSUM_REGION_START:])
    if c0 or c1:
        raise ChecksumMismatch(f"checksum {header.checksum:#06x} does not verify", offset=OFF_CHECKSUM)
    end = header.length
    spans: list[tuple[int, int, int]] = []  # NODE and DEVICE TLVs: (type, start, end)
    availability: tuple[Availability, ...] = ()
    prices: tuple[tuple[DeviceClass, int], ...] = ()
    domain = attachment = location = None
    unknown: list[tuple[int, bytes]] = []
    last_known = 0
    span_bytes = 0
    signed = False
    pos = HEADER_SIZE
    t = v = 0
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
            if 1 <= t <= 7:
                # known TLVs come in ascending type order, each once but DEVICE; so the
                # descriptor's TLVs are one contiguous span right after the header
                if t < last_known:
                    raise NonCanonical(f"TLV {Tlv(t).name} comes after TLV {Tlv(last_known).name}", offset=pos)
                if t == last_known and t != 2:
                    raise DuplicateTlv(f"TLV {Tlv(t).name} appears twice", offset=pos)
                last_known = t
                if t <= 2:
                    if t == 2 and not spans:
                        raise MissingTlv("a DEVICE TLV comes before the NODE TLV", offset=pos)
                    spans.append((t, pos, nxt))
                    span_bytes += nxt - pos
                elif t == 3:
                    if ln % 7:
                        raise MalformedTlv(f"availability TLV of {ln} bytes is not a multiple of 7", offset=pos)
                    entries = []
                    last = 0
                    for i in range(v, nxt, 7):
                        code, free, load = _unpack_avail(data, i)
                        cls = _CLASS_BY_CODE[code]
                        if cls is None:
                            raise BadValue(f"unknown device class {code}", offset=i)
                        if code <= last:
                            raise NonCanonical("availability entries are not in ascending class order", offset=i)
                        if load > 10000:
                            raise BadValue(f"load {load} basis points exceeds 10000", offset=i + 5)
                        last = code
                        entries.append(_new_availability(cls, free, load))
                    availability = tuple(entries)
                elif t == 4:
                    if ln % 33:
                        raise MalformedTlv(f"price TLV of {ln} bytes is not a multiple of 33", offset=pos)
                    pairs = []
                    last = 0
                    for i in range(v, nxt, 33):
                        code = data[i]
                        cls = _CLASS_BY_CODE[code]
                        if cls is None:
                            raise BadValue(f"unknown device class {code}", offset=i)
                        if code <= last:
                            raise NonCanonical("price entries are not in ascending class order", offset=i)
                        last = code
                        pairs.append((cls, int.from_bytes(data[i + 1 : i + 33], "big")))
                    prices = tuple(pairs)
                elif t == 5:
                    if ln != 4:
                        raise _wrong_size(ln, 4, pos, "domain")
                    domain = _unpack_u32(data, v)[0]
                elif t == 6:
                    attachment = data[v:nxt].decode()
                else:
                    if ln != 16:
                        raise _wrong_size(ln, 16, pos, "location")
                    lat, lon = _LOCATION.unpack_from(data, v)
                    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                        raise BadValue(f"location ({lat!r}, {lon!r}) is not a latitude/longitude", offset=v)
                    location = (lat, lon)
            elif t == 255:
                if ln != SIGNATURE_SIZE:
                    raise BadSignatureTlv(f"signature TLV has {ln} bytes, expected {SIGNATURE_SIZE}", offset=pos)
                signed = True
            else:
                unknown.append((t, data[v:nxt]))
            pos = nxt
    except UnicodeDecodeError as exc:  # only the ATTACHMENT TLV is text at this level
        raise BadValue("attachment is not valid UTF-8", offset=v + exc.start) from None
    if not signed:
        raise BadSignatureTlv("the LSA has no signature TLV", offset=end)
    if not spans:
        raise MissingTlv("the LSA has no NODE TLV", offset=end)
    if domain is None:
        raise MissingTlv("the LSA has no DOMAIN TLV", offset=end)
    if attachment is None:
        raise MissingTlv("the LSA has no ATTACHMENT TLV", offset=end)
    # unknown TLVs may sit between known ones, so the key is the spans' bytes, not one slice
    if spans[-1][2] - spans[0][1] == span_bytes:
        span_key = data[spans[0][1] : spans[-1][2]]
    else:
        span_key = b"".join(data[s:e] for _, s, e in spans)
    descriptor = _DESCRIPTORS.get(span_key)
    if descriptor is None:
        descriptor = _decode_descriptor(data, spans)
        if len(_DESCRIPTORS) >= DESCRIPTOR_CACHE_SIZE:
            for k in list(_DESCRIPTORS)[: DESCRIPTOR_CACHE_SIZE // 2]:
                del _DESCRIPTORS[k]
        _DESCRIPTORS[span_key] = descriptor
    return _new_lsa(header, descriptor, availability, prices, domain, attachment, location, tuple(unknown), data)


# --------------------------------------------------------------------------- encode


def _put_text(out: bytearray, t: int, value: str, what: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise LsaEncodeError(f"{what} is {len(raw)} bytes in UTF-8; a sub-TLV holds at most 255", field=what)
    out += bytes((t, len(raw))) + raw


def _put(out: bytearray, t: int, fmt: struct.Struct, value, what: str) -> None:
    try:
        out += bytes((t, fmt.size)) + fmt.pack(value)
    except struct.error:
        raise LsaEncodeError(f"{what} {value!r} does not fit its field", field=what) from None


def _check_float(value: float, what: str) -> float:
    if not (math.isfinite(value) and value >= 0.0):
        raise LsaEncodeError(f"{what} must be a finite non-negative number, got {value!r}", field=what)
    return float(value)


def _node_value(d: NodeDescriptor) -> bytes:
    out = bytearray()
    _put_text(out, NodeSub.HOSTNAME, d.hostname, "hostname")
    if d.arch is not None:
        _put_text(out, NodeSub.ARCH, d.arch, "arch")
    if d.memory_mib is not None:
        _put(out, NodeSub.MEMORY_MIB, _U64, d.memory_mib, "memory_mib")
    if d.disk_gib is not None:
        _put(out, NodeSub.DISK_GIB, _F64, _check_float(d.disk_gib, "disk_gib"), "disk_gib")
    if d.numa_nodes is not None:
        _put(out, NodeSub.NUMA_NODES, _U32, d.numa_nodes, "numa_nodes")
    return bytes(out)


def _device_value(d: DeviceCapability) -> bytes:
    out = bytearray()
    try:
        out += bytes((DeviceSub.CORE, _CORE.size)) + _CORE.pack(int(d.device_class), d.share_milli, d.count)
    except struct.error:
        raise LsaEncodeError(f"device count {d.count} does not fit 32 bits", field="count") from None
    _put_text(out, DeviceSub.MODEL, d.model, "model")
    if d.vendor is not None:
        _put_text(out, DeviceSub.VENDOR, d.vendor, "vendor")
    if d.compute_units is not None:
        _put(out, DeviceSub.COMPUTE_UNITS, _U32, d.compute_units, "compute_units")
    if d.clock_mhz is not None:
        _put(out, DeviceSub.CLOCK_MHZ, _F64, _check_float(d.clock_mhz, "clock_mhz"), "clock_mhz")
    if d.flops:
        body = b"".join(_FLOP.pack(int(p), _check_float(v, "flops")) for p, v in d.flops)
        if len(body) > 255:
            raise LsaEncodeError("too many flops entries for one sub-TLV", field="flops")
        out += bytes((DeviceSub.FLOPS, len(body))) + body
    if d.memory_mib is not None:
        _put(out, DeviceSub.MEMORY_MIB, _U64, d.memory_mib, "memory_mib")
    if d.memory_bandwidth_gbps is not None:
        value = _check_float(d.memory_bandwidth_gbps, "memory_bandwidth_gbps")
        _put(out, DeviceSub.BANDWIDTH_GBPS, _F64, value, "memory_bandwidth_gbps")
    if d.interconnect is not None:
        _put_text(out, DeviceSub.INTERCONNECT, d.interconnect, "interconnect")
    for feature in sorted(d.features):
        _put_text(out, DeviceSub.FEATURE, feature, "feature")
    return bytes(out)


def _tlv(t: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise LsaEncodeError(f"TLV {t} value of {len(value)} bytes exceeds 65535", field="tlv")
    return _TLV.pack(t, len(value)) + value


def _body(c: LsaContent) -> bytes:
    parts = [_tlv(Tlv.NODE, _node_value(c.descriptor))]
    parts += [_tlv(Tlv.DEVICE, _device_value(d)) for d in c.descriptor.devices]
    if c.availability:
        entries = sorted(c.availability, key=lambda a: int(a.device_class))
        classes = [int(a.device_class) for a in entries]
        if len(set(classes)) != len(classes):
            raise LsaEncodeError("availability lists a device class twice", field="availability")
        try:
            body = b"".join(_AVAIL.pack(int(a.device_class), a.free_milli, a.load_bp) for a in entries)
        except struct.error:
            raise LsaEncodeError("availability value out of range", field="availability") from None
        if any(a.load_bp > 10000 for a in entries):
            raise LsaEncodeError("load exceeds 10000 basis points", field="availability")
        parts.append(_tlv(Tlv.AVAILABILITY, body))
    if c.prices:
        entries = sorted(((int(DeviceClass.parse(k)), int(p)) for k, p in c.prices))
        classes = [k for k, _ in entries]
        if len(set(classes)) != len(classes):
            raise LsaEncodeError("prices list a device class twice", field="prices")
        if any(not 0 <= p < 1 << 256 for _, p in entries):
            raise LsaEncodeError("a price does not fit uint256", field="prices")
        parts.append(_tlv(Tlv.PRICE, b"".join(bytes((k,)) + p.to_bytes(32, "big") for k, p in entries)))
    try:
        parts.append(_tlv(Tlv.DOMAIN, _U32.pack(c.domain)))
    except struct.error:
        raise LsaEncodeError(f"domain {c.domain!r} is not a uint32 AS number", field="domain") from None
    parts.append(_tlv(Tlv.ATTACHMENT, c.attachment.encode("utf-8")))
    if c.location is not None:
        lat, lon = float(c.location[0]), float(c.location[1])
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise LsaEncodeError(f"location ({lat}, {lon}) is not a latitude/longitude", field="location")
        parts.append(_tlv(Tlv.LOCATION, _LOCATION.pack(lat, lon)))
    for t, value in c.unknown_tlvs:
        if t in Tlv._value2member_map_ or not 0 <= t <= 255:
            raise LsaEncodeError(f"unknown TLV type {t} collides with a known type", field="unknown_tlvs")
        parts.append(_tlv(t, bytes(value)))
    return b"".join(parts)


def signing_hash(raw: bytes) -> bytes:
    """keccak256 of the LSA up to its signature TLV, with lifetime and checksum zeroed."""
    sig_at = len(raw) - SIG_TLV_SIZE
    return keccak(b"\x00\x00" + raw[2:OFF_CHECKSUM] + b"\x00\x00" + raw[OFF_CHECKSUM + 2 : sig_at])


_KEYS: dict[bytes, tuple[coincurve.PrivateKey, bytes]] = {}


def _signer(key: bytes) -> tuple[coincurve.PrivateKey, bytes]:
    entry = _KEYS.get(key)
    if entry is None:
        if len(key) != 32:
            raise LsaEncodeError(f"a secp256k1 secret is 32 bytes, got {len(key)}", field="key")
        try:
            private = coincurve.PrivateKey(key)
        except ValueError:
            raise LsaEncodeError("the key is not a valid secp256k1 secret", field="key") from None
        entry = (private, address_of_public(private.public_key.format(compressed=False)))
        if len(_KEYS) < 1024:  # own keys and test keys; bounded so it cannot grow without end
            _KEYS[key] = entry
    return entry


def address_of_public(public: bytes) -> bytes:
    """Ethereum address (20 bytes) of an uncompressed 65-byte secp256k1 public key."""
    return keccak(public[1:])[-20:]


def address_of(key: bytes) -> bytes:
    """The Ethereum address (the originator id) of a 32-byte secp256k1 secret."""
    return _signer(bytes(key))[1]


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
    return seal(_body(content), sequence=sequence, lifetime=lifetime, key=key)


def seal(body: bytes, *, sequence: int, lifetime: int, key: bytes, lsa_type: int = COMPUTE_LSA) -> bytes:
    """Put a header before already-encoded TLVs ``body``, sign, append the signature TLV and
    checksum. ``encode_lsa`` uses it; tests use it to build LSAs with hand-made TLVs."""
    private, originator = _signer(bytes(key))
    length = HEADER_SIZE + len(body) + SIG_TLV_SIZE
    if length > MAX_LSA_SIZE:
        raise LsaEncodeError(f"the LSA would be {length} bytes, over MAX_LSA_SIZE {MAX_LSA_SIZE}", field="content")
    unsigned = _HEADER.pack(0, lsa_type, VERSION, originator, sequence, 0, length) + bytes(body)
    digest = keccak(unsigned)
    sig = private.sign_recoverable(digest, hasher=None)  # r(32) s(32) recid(1), s already low
    raw = bytearray(unsigned + _TLV.pack(Tlv.SIGNATURE, SIGNATURE_SIZE) + sig[:64] + bytes((27 + sig[64],)))
    _U16.pack_into(raw, OFF_CHECKSUM, checksum_of(raw))
    _U16.pack_into(raw, OFF_LIFETIME, lifetime)
    log.debug("sealed LSA %s seq %d (%d bytes)", originator.hex(), sequence, length)
    return bytes(raw)


def checksum_of(raw: bytes) -> int:
    """The ISO 10589 checksum an LSA's header should carry (its current field is ignored)."""
    return iso_checksum(bytes(raw[CHECKSUM_REGION_START:]), OFF_CHECKSUM - CHECKSUM_REGION_START)


# --------------------------------------------------------------------------- signature


def recover_originator(lsa_or_raw: ComputeLsa | bytes) -> bytes:
    """Check the signature and return the originator id it recovers to.

    Raises ``BadSignature`` when the signature is malformed, malleable (high s), does not
    recover, or recovers to another address than the header's originator.
    """
    if isinstance(lsa_or_raw, ComputeLsa):
        raw, originator = lsa_or_raw.raw, lsa_or_raw.header.originator
    else:
        raw = bytes(lsa_or_raw)
        originator = decode_header(raw).originator
        if raw[-SIG_TLV_SIZE] != Tlv.SIGNATURE or _U16.unpack_from(raw, len(raw) - SIG_TLV_SIZE + 1)[0] != SIGNATURE_SIZE:
            raise BadSignatureTlv("the LSA does not end with a signature TLV", offset=len(raw) - SIG_TLV_SIZE)
    sig = raw[-SIGNATURE_SIZE:]
    v = sig[64]
    s = int.from_bytes(sig[32:64], "big")
    who = originator.hex()
    if v not in (27, 28):
        raise BadSignature(f"LSA from {who}: signature v={v} is not 27 or 28")
    if not 0 < s <= _HALF_N:
        raise BadSignature(f"LSA from {who}: signature s is zero or in the upper half (malleable)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes((v - 27,)), signing_hash(raw), hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError or its own Error for a non-recoverable signature
        raise BadSignature(f"LSA from {who}: signature does not recover ({exc})") from None
    recovered = address_of_public(public.format(compressed=False))
    if recovered != originator:
        raise BadSignature(f"LSA from {who}: signature recovers to {recovered.hex()}, not the originator")
    return recovered
