"""The Compute LSA's codec tables: every TLV and sub-TLV type, one row each (see ``ops``).

``NODE_OPS``, ``DEVICE_OPS`` and ``RUNTIME_OPS`` are the sub-TLVs of the NODE, DEVICE and
RUNTIMES TLVs, ``LSA_OPS`` the top-level TLVs. Each row names the value's decode and encode functions, defined here
next to it; ``docs/tlv.md`` prints the same tables with the bytes of each value.

Invariants:
- decoded values are already in the form the resource model's validating constructors
  produce (enum members, floats, flops in strictly ascending precision, lower-case
  features, devices in (class, model, share) order), so ``from_validated`` builds the
  equal object without re-checking it;
- every repeated entry on the wire is in strictly ascending order (flops by precision,
  features by string, availability and prices by class), so a decoded LSA re-encodes to
  the same bytes; the encoders sort, the decoders refuse any other order;
- floats are finite and non-negative, latitude and longitude in range; loads at most
  10000 basis points; prices fit uint256.
"""

from __future__ import annotations

import math
import struct
from enum import IntEnum
from operator import attrgetter
from typing import Any, Callable

from marketplace.convergence.errors import (
    BadSignatureTlv,
    BadValue,
    LsaDecodeError,
    LsaEncodeError,
    MissingTlv,
    NonCanonical,
)
from marketplace.convergence.lsa.ops import (
    ANY,
    Level,
    OpsTable,
    TlvOps,
    decode_subtlvs,
    encode_rows,
    exactly,
    multiple_of,
)
from marketplace.convergence.lsa.values import Availability, LsaContent
from marketplace.convergence.lsa.wire import (
    AVAIL,
    CLASS_BY_CODE,
    CONTAINER_DEVICES,
    CONTAINER_NETWORK,
    CORE,
    F64,
    FLOP,
    LOCATION,
    MAX_LOAD_BP,
    PRECISION_BY_CODE,
    PRICE_SIZE,
    SIGNATURE_SIZE,
    U32,
    U64,
    WASM_BUYER_MODULES,
    WASM_NONDETERMINISTIC,
    DeviceSub,
    NodeSub,
    RuntimeSub,
    Tlv,
)
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision
from marketplace.resources.runtimes import ContainerOffer, InvalidOffer, RuntimeOffer

_INF = math.inf
_unpack_u32 = U32.unpack_from
_unpack_u64 = U64.unpack_from
_unpack_f64 = F64.unpack_from
_unpack_core = CORE.unpack_from
_unpack_avail = AVAIL.unpack_from
_unpack_flop = FLOP.unpack_from
_unpack_location = LOCATION.unpack_from
_AVAIL_SIZE = AVAIL.size
_iter_flops = FLOP.iter_unpack
_new_availability = Availability.from_validated
_new_device = DeviceCapability.from_validated


# --------------------------------------------------------------------------- scalar values
# A row of each kind is built by one function, so the tables below read as a list of fields.


def _text(data: bytes, start: int, end: int) -> str:
    return data[start:end].decode()  # a UnicodeDecodeError is turned into BadValue by the walker


def _u32(data: bytes, start: int, end: int) -> int:
    return _unpack_u32(data, start)[0]


def _u64(data: bytes, start: int, end: int) -> int:
    return _unpack_u64(data, start)[0]


def _not_finite(value: float, at: int, what: str) -> BadValue:
    return BadValue(f"{what} must be a finite non-negative number, got {value!r}", offset=at)


def _check_float(value: float, what: str) -> float:
    if not (math.isfinite(value) and value >= 0.0):
        raise LsaEncodeError(f"{what} must be a finite non-negative number, got {value!r}", field=what)
    return float(value)


def _put_text(value: str) -> bytes:
    return value.encode("utf-8")


def _packer(fmt: struct.Struct, name: str) -> Callable[[Any], bytes]:
    def encode(value: Any) -> bytes:
        try:
            return fmt.pack(value)
        except struct.error:
            raise LsaEncodeError(f"{name} {value!r} does not fit its field", field=name) from None

    return encode


def text_row(code: IntEnum, name: str, *, required: bool = False) -> TlvOps:
    """A UTF-8 string field of the same name."""
    return TlvOps(code, name, ANY, _text, _put_text, attrgetter(name), required=required)


def u32_row(code: IntEnum, name: str) -> TlvOps:
    return TlvOps(code, name, exactly(U32.size), _u32, _packer(U32, name), attrgetter(name))


def u64_row(code: IntEnum, name: str) -> TlvOps:
    return TlvOps(code, name, exactly(U64.size), _u64, _packer(U64, name), attrgetter(name))


def float_row(code: IntEnum, name: str) -> TlvOps:
    """A finite, non-negative f64 field of the same name."""

    def decode(data: bytes, start: int, end: int) -> float:
        value = _unpack_f64(data, start)[0]
        if not 0.0 <= value < _INF:  # also false for NaN
            raise _not_finite(value, start, name)
        return value

    def encode(value: float) -> bytes:
        return F64.pack(_check_float(value, name))

    return TlvOps(code, name, exactly(F64.size), decode, encode, attrgetter(name))


# --------------------------------------------------------------------------- NODE


NODE_OPS = OpsTable(Level.SUB_TLV, "node", (
    text_row(NodeSub.HOSTNAME, "hostname", required=True),
    text_row(NodeSub.ARCH, "arch"),
    u64_row(NodeSub.MEMORY_MIB, "memory_mib"),
    float_row(NodeSub.DISK_GIB, "disk_gib"),
    u32_row(NodeSub.NUMA_NODES, "numa_nodes"),
))


def decode_node(data: bytes, start: int, end: int) -> tuple[str, str | None, int | None, float | None, int | None]:
    """The NODE TLV's value: (hostname, arch, memory_mib, disk_gib, numa_nodes)."""
    _, hostname, arch, memory, disk, numa = decode_subtlvs(data, start, end, NODE_OPS)
    if hostname is None:
        raise MissingTlv("NODE TLV lacks its hostname sub-TLV", offset=end)
    return hostname, arch, memory, disk, numa


def encode_node(descriptor: NodeDescriptor) -> bytes:
    return encode_rows(descriptor, NODE_OPS)


# --------------------------------------------------------------------------- DEVICE


def _decode_core(data: bytes, start: int, end: int) -> tuple[DeviceClass, int, int]:
    code, share, count = _unpack_core(data, start)
    device_class = CLASS_BY_CODE[code]
    if device_class is None:
        raise BadValue(f"unknown device class {code}", offset=start)
    if not 1 <= share <= 1000:
        raise BadValue(f"share_milli {share} is outside 1..1000", offset=start + 1)
    if count < 1:
        raise BadValue("device count 0", offset=start + 3)
    return device_class, share, count


def _encode_core(d: DeviceCapability) -> bytes:
    try:
        return CORE.pack(int(d.device_class), d.share_milli, d.count)
    except struct.error:
        raise LsaEncodeError(f"device count {d.count} does not fit 32 bits", field="count") from None


def _decode_flops(data: bytes, start: int, end: int) -> tuple[tuple[Precision, float], ...]:
    """(precision, FLOP/s) pairs in strictly ascending precision order, each finite and non-negative."""
    pairs = []
    last = 0
    for code, value in _iter_flops(data[start:end]):
        precision = PRECISION_BY_CODE[code]
        if precision is None or code <= last or not 0.0 <= value < _INF:  # NaN fails the range
            raise _flops_error(data, start, end)
        last = code
        pairs.append((precision, value))
    return tuple(pairs)


def _flops_error(data: bytes, start: int, end: int) -> LsaDecodeError:
    """The error of the first bad entry of a flops run (re-read with offsets, off the hot path)."""
    last = 0
    for i in range(start, end, FLOP.size):
        code, value = _unpack_flop(data, i)
        if PRECISION_BY_CODE[code] is None:
            return BadValue(f"unknown precision {code}", offset=i)
        if code <= last:
            return NonCanonical("flops are not in strictly ascending precision order", offset=i)
        if not 0.0 <= value < _INF:
            return _not_finite(value, i + 1, "flops")
        last = code
    raise AssertionError("_flops_error called on a valid run")  # pragma: no cover


def _encode_flops(flops: tuple[tuple[Precision, float], ...]) -> bytes:
    return b"".join(FLOP.pack(int(p), _check_float(v, "flops")) for p, v in flops)


def _decode_feature(data: bytes, start: int, end: int) -> str:
    feature = data[start:end].decode()
    if feature != feature.lower():
        raise NonCanonical(f"feature {feature!r} is not lower case", offset=start)
    return feature


DEVICE_OPS = OpsTable(Level.SUB_TLV, "device", (
    TlvOps(DeviceSub.CORE, "core", exactly(CORE.size), _decode_core, _encode_core, lambda d: d, required=True),
    text_row(DeviceSub.MODEL, "model", required=True),
    text_row(DeviceSub.VENDOR, "vendor"),
    u32_row(DeviceSub.COMPUTE_UNITS, "compute_units"),
    float_row(DeviceSub.CLOCK_MHZ, "clock_mhz"),
    TlvOps(DeviceSub.FLOPS, "flops", multiple_of(FLOP.size), _decode_flops, _encode_flops, lambda d: d.flops or None),
    u64_row(DeviceSub.MEMORY_MIB, "memory_mib"),
    float_row(DeviceSub.BANDWIDTH_GBPS, "memory_bandwidth_gbps"),
    text_row(DeviceSub.INTERCONNECT, "interconnect"),
    TlvOps(DeviceSub.FEATURE, "feature", ANY, _decode_feature, _put_text, lambda d: sorted(d.features), repeated=True),
))


def decode_device(data: bytes, start: int, end: int) -> DeviceCapability:
    """A DEVICE TLV's value, as the ``DeviceCapability`` it describes."""
    _, core, model, vendor, units, clock, flops, memory, bandwidth, interconnect, features = decode_subtlvs(
        data, start, end, DEVICE_OPS
    )
    if core is None:
        raise MissingTlv("DEVICE TLV lacks its core sub-TLV", offset=start)
    if model is None:
        raise MissingTlv("DEVICE TLV lacks its model sub-TLV", offset=start)
    device_class, share, count = core
    return _new_device(
        device_class, model, vendor, count, units, clock, flops or (), memory, bandwidth, interconnect,
        frozenset(features or ()), share,
    )


def encode_device(device: DeviceCapability) -> bytes:
    return encode_rows(device, DEVICE_OPS)


# --------------------------------------------------------------------------- top level


def _decode_availability(data: bytes, start: int, end: int) -> tuple[Availability, ...]:
    entries = []
    last = 0
    for i in range(start, end, _AVAIL_SIZE):
        code, free, load = _unpack_avail(data, i)
        cls = CLASS_BY_CODE[code]
        if cls is None:
            raise BadValue(f"unknown device class {code}", offset=i)
        if code <= last:
            raise NonCanonical("availability entries are not in ascending class order", offset=i)
        if load > MAX_LOAD_BP:
            raise BadValue(f"load {load} basis points exceeds {MAX_LOAD_BP}", offset=i + 5)
        last = code
        entries.append(_new_availability(cls, free, load))
    return tuple(entries)


def _encode_availability(availability: tuple[Availability, ...]) -> bytes:
    entries = sorted(availability, key=lambda a: int(a.device_class))
    classes = [int(a.device_class) for a in entries]
    if len(set(classes)) != len(classes):
        raise LsaEncodeError("availability lists a device class twice", field="availability")
    try:
        body = b"".join(AVAIL.pack(int(a.device_class), a.free_milli, a.load_bp) for a in entries)
    except struct.error:
        raise LsaEncodeError("availability value out of range", field="availability") from None
    if any(a.load_bp > MAX_LOAD_BP for a in entries):
        raise LsaEncodeError(f"load exceeds {MAX_LOAD_BP} basis points", field="availability")
    return body


def _decode_prices(data: bytes, start: int, end: int) -> tuple[tuple[DeviceClass, int], ...]:
    pairs = []
    last = 0
    for i in range(start, end, PRICE_SIZE):
        code = data[i]
        cls = CLASS_BY_CODE[code]
        if cls is None:
            raise BadValue(f"unknown device class {code}", offset=i)
        if code <= last:
            raise NonCanonical("price entries are not in ascending class order", offset=i)
        last = code
        pairs.append((cls, int.from_bytes(data[i + 1 : i + PRICE_SIZE], "big")))
    return tuple(pairs)


def _encode_prices(prices: tuple[tuple[DeviceClass, int], ...]) -> bytes:
    entries = sorted(((int(DeviceClass.parse(k)), int(p)) for k, p in prices))
    classes = [k for k, _ in entries]
    if len(set(classes)) != len(classes):
        raise LsaEncodeError("prices list a device class twice", field="prices")
    if any(not 0 <= p < 1 << 256 for _, p in entries):
        raise LsaEncodeError("a price does not fit uint256", field="prices")
    return b"".join(bytes((k,)) + p.to_bytes(PRICE_SIZE - 1, "big") for k, p in entries)


def _encode_domain(domain: int) -> bytes:
    try:
        return U32.pack(domain)
    except struct.error:
        raise LsaEncodeError(f"domain {domain!r} is not a uint32 AS number", field="domain") from None


def _in_range(lat: float, lon: float) -> bool:
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0  # false for NaN


def _decode_location(data: bytes, start: int, end: int) -> tuple[float, float]:
    lat, lon = _unpack_location(data, start)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # _in_range, inline: one call less per LSA
        raise BadValue(f"location ({lat!r}, {lon!r}) is not a latitude/longitude", offset=start)
    return (lat, lon)


def _encode_location(location: tuple[float, float]) -> bytes:
    lat, lon = float(location[0]), float(location[1])
    if not _in_range(lat, lon):
        raise LsaEncodeError(f"location ({lat}, {lon}) is not a latitude/longitude", field="location")
    return LOCATION.pack(lat, lon)


# --------------------------------------------------------------------------- RUNTIMES


def _decode_wasm_flags(data: bytes, start: int, end: int) -> int:
    flags = data[start]
    if flags & ~(WASM_BUYER_MODULES | WASM_NONDETERMINISTIC):
        raise BadValue(f"wasm flags {flags:#04x} set a reserved bit", offset=start)
    return flags


def _encode_wasm_flags(offer: RuntimeOffer) -> bytes:
    return bytes(((WASM_BUYER_MODULES if offer.buyer_wasm else 0) | (WASM_NONDETERMINISTIC if offer.nondeterministic
                                                                     else 0),))


def _decode_container(data: bytes, start: int, end: int) -> ContainerOffer:
    if end - start < 2:
        raise BadValue("container sub-TLV needs its flags and an architecture", offset=start)
    flags = data[start]
    if flags & ~(CONTAINER_NETWORK | CONTAINER_DEVICES):
        raise BadValue(f"container flags {flags:#04x} set a reserved bit", offset=start)
    try:
        arch = data[start + 1:end].decode()
    except UnicodeDecodeError as exc:
        raise BadValue("container architecture is not valid UTF-8", offset=start + 1 + exc.start) from None
    try:
        return ContainerOffer(arch, bool(flags & CONTAINER_NETWORK), bool(flags & CONTAINER_DEVICES))
    except InvalidOffer as exc:
        raise BadValue(exc.message, offset=start + 1) from None


def _encode_container(c: ContainerOffer) -> bytes:
    flags = (CONTAINER_NETWORK if c.network else 0) | (CONTAINER_DEVICES if c.devices else 0)
    return bytes((flags,)) + c.arch.encode()


RUNTIME_OPS = OpsTable(Level.SUB_TLV, "runtimes", (
    # one flags byte from two fields of the offer: the row is handed the whole offer
    TlvOps(RuntimeSub.WASM, "wasm", exactly(1), _decode_wasm_flags, _encode_wasm_flags, lambda o: o, required=True),
    TlvOps(RuntimeSub.CONTAINER, "container", ANY, _decode_container, _encode_container, attrgetter("container")),
    TlvOps(RuntimeSub.IMAGE, "image", ANY, _text, _put_text, attrgetter("images"), repeated=True),
    TlvOps(RuntimeSub.PROGRAM, "program", ANY, _text, _put_text, attrgetter("programs"), repeated=True),
))


def decode_runtimes(data: bytes, start: int, end: int) -> RuntimeOffer:
    """The RUNTIMES TLV's value: the provider's ``RuntimeOffer``. Names are checked as the offer checks
    them (program names, canonical registry references, images only with a container runtime)."""
    _, flags, container, images, programs = decode_subtlvs(data, start, end, RUNTIME_OPS)
    if flags is None:
        raise MissingTlv("RUNTIMES TLV lacks its wasm sub-TLV", offset=start)
    try:
        return RuntimeOffer(bool(flags & WASM_BUYER_MODULES), bool(flags & WASM_NONDETERMINISTIC), container,
                            tuple(images or ()), tuple(programs or ()))
    except InvalidOffer as exc:
        raise BadValue(f"runtimes: {exc.message}", offset=start) from None


def encode_runtimes(offer: RuntimeOffer) -> bytes:
    return encode_rows(offer, RUNTIME_OPS)


def _devices(c: LsaContent) -> tuple[DeviceCapability, ...]:
    return c.descriptor.devices  # already in (class, model, share) order: the descriptor sorts them


LSA_OPS = OpsTable(Level.TLV, None, (
    TlvOps(Tlv.NODE, "node", ANY, decode_node, encode_node, attrgetter("descriptor"), required=True),
    TlvOps(Tlv.DEVICE, "device", ANY, decode_device, encode_device, _devices, repeated=True),
    TlvOps(Tlv.AVAILABILITY, "availability", multiple_of(AVAIL.size), _decode_availability, _encode_availability,
           lambda c: c.availability or None),
    TlvOps(Tlv.PRICE, "price", multiple_of(PRICE_SIZE), _decode_prices, _encode_prices, lambda c: c.prices or None),
    TlvOps(Tlv.DOMAIN, "domain", exactly(U32.size), _u32, _encode_domain, attrgetter("domain"), required=True),
    text_row(Tlv.ATTACHMENT, "attachment", required=True),
    TlvOps(Tlv.LOCATION, "location", exactly(LOCATION.size), _decode_location, _encode_location,
           attrgetter("location")),
    TlvOps(Tlv.RUNTIMES, "runtimes", ANY, decode_runtimes, encode_runtimes, attrgetter("runtimes")),
    # checked by ``decode_lsa`` and ``recover_originator``, written by ``seal``
    TlvOps(Tlv.SIGNATURE, "signature", exactly(SIGNATURE_SIZE), None, None, None, required=True,
           malformed=BadSignatureTlv),
))
