"""Compute LSA codec: checksum, round trips, signatures, unknown TLVs, every decode error."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.lsa import MI100, H100, XEON_8463B, content_for, profiles
from marketplace.convergence import errors as E
from marketplace.convergence.checksum import fletcher16, fletcher_sums, iso_checksum, iso_verify
from marketplace.convergence.lsa import (
    DEVICE_OPS,
    LSA_OPS,
    MAX_LSA_SIZE,
    MAX_SEQUENCE,
    NODE_OPS,
    OFF_CHECKSUM,
    RUNTIME_OPS,
    Availability,
    ComputeLsa,
    DeviceSub,
    LsaContent,
    LsaHeader,
    NodeSub,
    RuntimeSub,
    Tlv,
    address_of,
    cached_descriptors,
    checksum_of,
    clear_descriptor_cache,
    decode_header,
    decode_lsa,
    encode_lsa,
    newer,
    purge,
    recover_originator,
    seal,
    with_lifetime,
)
from marketplace.convergence.lsa.ops import ANY, Level, OpsTable, exactly, multiple_of
from marketplace.errors import DecodeError, Rejected
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision
from marketplace.resources.runtimes import ContainerOffer, RuntimeOffer

pytestmark = pytest.mark.unit

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER = bytes.fromhex("8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f")
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def reference_sums(data: bytes) -> tuple[int, int]:
    c0 = c1 = 0
    for b in data:
        c0 = (c0 + b) % 255
        c1 = (c1 + c0) % 255
    return c0, c1


def h100_content(**kw) -> LsaContent:
    return content_for(profiles()["h100x8"], 7, 0) if not kw else LsaContent(**kw)


def resealed(raw: bytearray | bytes) -> bytes:
    """``raw`` with its checksum recomputed (so decoding gets past the checksum)."""
    raw = bytearray(raw)
    struct.pack_into("!H", raw, OFF_CHECKSUM, checksum_of(raw))
    return bytes(raw)


# ---------------------------------------------------------------- checksum


def test_fletcher16_known_vectors():
    # the classic Fletcher-16 test vectors
    assert fletcher16(b"abcde") == 0xC8F0
    assert fletcher16(b"abcdef") == 0x2057
    assert fletcher16(b"abcdefgh") == 0x0627


@given(st.binary(max_size=1600))
@settings(max_examples=200, deadline=None)
def test_fletcher_sums_equal_the_byte_loop(data):
    assert fletcher_sums(data) == reference_sums(data)


@given(st.binary(min_size=2, max_size=600), st.data())
@settings(max_examples=150, deadline=None)
def test_iso_checksum_makes_both_sums_zero(region, data):
    offset = data.draw(st.integers(0, len(region) - 2))
    check = iso_checksum(region, offset)
    assert check >> 8 and check & 0xFF, "neither check octet may be 0"
    placed = region[:offset] + check.to_bytes(2, "big") + region[offset + 2 :]
    assert iso_verify(placed)
    assert reference_sums(placed) == (0, 0)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(profiles()))
def test_profiles_round_trip_to_equal_descriptors(name):
    content = content_for(profiles()[name], 3, 2)
    raw = encode_lsa(content, sequence=9, lifetime=1200, key=KEY)
    for cache in ("cold", "warm"):
        if cache == "cold":
            clear_descriptor_cache()
        lsa = decode_lsa(raw)
        assert lsa.descriptor == content.descriptor
        assert lsa.descriptor.digest() == content.descriptor.digest()
        assert lsa.content == content
    assert lsa.header == LsaHeader(1, address_of(KEY), 9, 1200, lsa.header.checksum, len(raw))
    assert lsa.raw == raw
    # canonical: the decoded content re-encodes to the very same bytes (RFC 6979 signatures)
    assert encode_lsa(lsa.content, sequence=9, lifetime=1200, key=KEY) == raw


def test_h100_lsa_fits_one_buffer_and_carries_every_field():
    raw = encode_lsa(h100_content(), sequence=1, lifetime=1200, key=KEY)
    assert len(raw) <= MAX_LSA_SIZE
    gpu = decode_lsa(raw).descriptor.of_class(DeviceClass.GPU)[0]
    assert gpu == H100 and gpu.peak(Precision.FP8) == 1978.9e12 and gpu.memory_mib == 81559


def test_keyword_form_equals_content_form():
    c = h100_content()
    a = encode_lsa(c, sequence=2, lifetime=60, key=KEY)
    b = encode_lsa(c.descriptor, c.availability, c.prices, c.domain, c.attachment, c.location,
                   sequence=2, lifetime=60, key=KEY)
    assert a == b


names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
floats = st.floats(min_value=0, max_value=1e18, allow_nan=False, allow_infinity=False)
devices = st.builds(
    DeviceCapability,
    device_class=st.sampled_from(list(DeviceClass)),
    model=names,
    vendor=st.none() | names,
    count=st.integers(1, 2**32 - 1),
    compute_units=st.none() | st.integers(0, 2**32 - 1),
    clock_mhz=st.none() | floats,
    flops=st.dictionaries(st.sampled_from(list(Precision)), floats).map(lambda d: tuple(d.items())),
    memory_mib=st.none() | st.integers(0, 2**64 - 1),
    memory_bandwidth_gbps=st.none() | floats,
    interconnect=st.none() | names,
    features=st.frozensets(st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12), max_size=5),
    share_milli=st.integers(1, 1000),
)
descriptors = st.builds(
    NodeDescriptor,
    hostname=names,
    devices=st.lists(devices, max_size=4).map(tuple),
    memory_mib=st.none() | st.integers(0, 2**64 - 1),
    disk_gib=st.none() | floats,
    numa_nodes=st.none() | st.integers(0, 2**32 - 1),
    arch=st.none() | names,
)
offers = st.builds(
    RuntimeOffer,
    buyer_wasm=st.booleans(),
    nondeterministic=st.booleans(),
    container=st.builds(ContainerOffer, arch=st.sampled_from(["amd64", "arm64", "riscv64"]), network=st.booleans(),
                        devices=st.booleans()),
    images=st.lists(st.sampled_from(["localhost:5000/tools/busybox", "registry.example.org/app:1.2",
                                     "reg.example.org:8443/team/x@sha256:" + "ab" * 32]), max_size=3).map(tuple),
    programs=st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True), max_size=4).map(tuple),
) | st.builds(RuntimeOffer, buyer_wasm=st.booleans(), nondeterministic=st.booleans(),
              programs=st.lists(st.sampled_from(["sha256sum", "wc-l", "x"]), max_size=3).map(tuple))
contents = st.builds(
    LsaContent,
    descriptor=descriptors,
    availability=st.dictionaries(
        st.sampled_from(list(DeviceClass)), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 10000))
    ).map(lambda d: tuple(Availability(c, f, l) for c, (f, l) in sorted(d.items()))),
    prices=st.dictionaries(st.sampled_from(list(DeviceClass)), st.integers(0, 2**256 - 1)).map(
        lambda d: tuple(sorted(d.items()))
    ),
    domain=st.integers(0, 2**32 - 1),
    attachment=names,
    location=st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
    unknown_tlvs=st.lists(st.tuples(st.integers(9, 254), st.binary(max_size=20)), max_size=3).map(tuple),
    runtimes=st.none() | offers,
)


@given(contents, st.integers(1, MAX_SEQUENCE), st.integers(0, 0xFFFF))
@settings(max_examples=120, deadline=None)
def test_any_content_round_trips(content, sequence, lifetime):
    try:
        raw = encode_lsa(content, sequence=sequence, lifetime=lifetime, key=KEY)
    except E.LsaEncodeError as exc:
        assert exc.field in {"content", "hostname", "model", "vendor", "interconnect", "arch", "attachment"}
        return
    lsa = decode_lsa(raw)
    assert lsa.content == content
    assert (lsa.header.sequence, lsa.header.lifetime) == (sequence, lifetime)
    assert recover_originator(raw) == address_of(KEY)


# ---------------------------------------------------------------- lifetime, purge, signature


def test_ageing_changes_neither_checksum_nor_signature():
    raw = encode_lsa(h100_content(), sequence=5, lifetime=1200, key=KEY)
    aged = with_lifetime(raw, 17)
    assert aged[2:] == raw[2:] and decode_header(aged).lifetime == 17
    assert decode_lsa(aged).header.checksum == decode_lsa(raw).header.checksum
    assert recover_originator(aged) == address_of(KEY)
    gone = purge(raw)
    assert decode_header(gone).lifetime == 0 and recover_originator(gone) == address_of(KEY)
    with pytest.raises(E.LsaEncodeError):
        with_lifetime(raw, 70000)


def test_tampered_body_with_fixed_checksum_fails_the_signature():
    raw = bytearray(encode_lsa(h100_content(), sequence=5, lifetime=1200, key=KEY))
    i = raw.index(b"h100-node")
    raw[i] = ord("H")
    forged = resealed(raw)
    assert decode_lsa(forged).descriptor.hostname.startswith("H100")  # well formed...
    with pytest.raises(E.BadSignature) as info:
        recover_originator(forged)  # ...but not what the originator signed
    assert isinstance(info.value, Rejected) and info.value.reason == "bad-signature"


def test_an_lsa_claiming_another_originator_is_refused():
    raw = bytearray(encode_lsa(h100_content(), sequence=5, lifetime=1200, key=OTHER))
    raw[4:24] = address_of(KEY)
    with pytest.raises(E.BadSignature, match="recovers to"):
        recover_originator(resealed(raw))


def test_malleable_high_s_and_bad_v_are_refused():
    raw = bytearray(encode_lsa(h100_content(), sequence=5, lifetime=1200, key=KEY))
    s = int.from_bytes(raw[-33:-1], "big")
    high = bytearray(raw)
    high[-33:-1] = (N - s).to_bytes(32, "big")  # the other valid-looking signature
    high[-1] = 55 - raw[-1]  # 27 <-> 28
    with pytest.raises(E.BadSignature, match="upper half"):
        recover_originator(resealed(high))
    bad_v = bytearray(raw)
    bad_v[-1] = 1
    with pytest.raises(E.BadSignature, match="v=1"):
        recover_originator(resealed(bad_v))


def test_unknown_tlvs_are_kept_and_reencoded_unchanged():
    c = h100_content()
    content = LsaContent(c.descriptor, c.availability, c.prices, c.domain, c.attachment, c.location,
                         ((42, b"future"), (200, b"")))
    raw = encode_lsa(content, sequence=1, lifetime=100, key=KEY)
    lsa = decode_lsa(raw)
    assert lsa.unknown_tlvs == ((42, b"future"), (200, b""))
    assert encode_lsa(lsa.content, sequence=1, lifetime=100, key=KEY) == raw
    with pytest.raises(E.LsaEncodeError):
        encode_lsa(LsaContent(c.descriptor, unknown_tlvs=((3, b"x"),)), sequence=1, lifetime=1, key=KEY)


def tlv(t: int, value: bytes) -> bytes:
    return struct.pack("!BH", t, len(value)) + value


def sub(t: int, value: bytes) -> bytes:
    return bytes((t, len(value))) + value


NODE = tlv(1, sub(1, b"n1"))
GPU = tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1)) + sub(2, b"T4"))
TAIL = tlv(5, struct.pack("!I", 7)) + tlv(6, b"a")


def test_unknown_sub_tlvs_are_skipped_on_decode_and_kept_in_raw():
    body = tlv(1, sub(1, b"n1") + sub(99, b"later")) + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1))
                                                           + sub(77, b"?") + sub(2, b"T4")) + TAIL
    raw = seal(body, sequence=1, lifetime=10, key=KEY)
    lsa = decode_lsa(raw)
    assert lsa.descriptor == NodeDescriptor("n1", (DeviceCapability(DeviceClass.GPU, "T4"),))
    assert lsa.raw == raw and recover_originator(raw) == address_of(KEY)


def test_unknown_sub_tlv_types_may_repeat():
    # type 0 is no node or device sub-TLV: skipped like any unknown one, so it may repeat
    body = tlv(1, sub(1, b"n1") + sub(0, b"a") + sub(0, b"b")) + tlv(2, CORE + sub(0, b"") + sub(0, b"")
                                                                      + sub(2, b"T4") + sub(11, b"") + sub(11, b"")) + TAIL
    lsa = decode_lsa(seal(body, sequence=1, lifetime=10, key=KEY))
    assert lsa.descriptor == NodeDescriptor("n1", (DeviceCapability(DeviceClass.GPU, "T4"),))


# ---------------------------------------------------------------- decode errors, one by one


def raises(exc_type, raw: bytes, offset: int | None = None):
    with pytest.raises(exc_type) as info:
        decode_lsa(raw)
    assert isinstance(info.value, DecodeError)
    assert isinstance(info.value.offset, int)
    if offset is not None:
        assert info.value.offset == offset, str(info.value)
    return info.value


def test_header_errors():
    raw = encode_lsa(h100_content(), sequence=1, lifetime=10, key=KEY)
    raises(E.Truncated, raw[:31], 31)
    raises(E.BadLength, raw[:-1], 30)
    raises(E.BadLength, raw + b"\x00", 30)
    raises(E.Oversized, raw + bytes(MAX_LSA_SIZE), 30)
    v = bytearray(raw)
    v[3] = 2
    raises(E.UnsupportedVersion, bytes(v), 3)
    c = bytearray(raw)
    c[29] ^= 1
    assert raises(E.ChecksumMismatch, bytes(c), 28).reason == "bad-checksum"
    z = bytearray(raw)
    z[28:30] = b"\x00\x00"
    raises(E.ChecksumMismatch, bytes(z), 28)
    t = bytearray(raw)
    t[2] = 9
    raises(E.WrongLsaType, resealed(t), 2)
    s = bytearray(raw)
    s[24:28] = bytes(4)
    raises(E.BadValue, resealed(s), 24)


@pytest.mark.parametrize(
    "body, error",
    [
        (GPU + TAIL, E.MissingTlv),  # no NODE
        (NODE + GPU + tlv(6, b"a"), E.MissingTlv),  # no DOMAIN
        (NODE + tlv(5, bytes(4)), E.MissingTlv),  # no ATTACHMENT
        (NODE + NODE + TAIL, E.DuplicateTlv),
        (NODE + tlv(5, bytes(4)) + GPU + tlv(6, b"a"), E.NonCanonical),  # DEVICE after DOMAIN
        (tlv(1, sub(2, b"x86_64")) + TAIL, E.MissingTlv),  # NODE without hostname
        (tlv(1, sub(1, b"a") + sub(1, b"b")) + TAIL, E.DuplicateTlv),
        (tlv(1, sub(1, b"\xff")) + TAIL, E.BadValue),  # bad UTF-8
        (tlv(1, sub(1, b"n") + sub(3, b"123")) + TAIL, E.MalformedTlv),  # memory not 8 bytes
        (tlv(1, sub(1, b"n") + sub(4, struct.pack("!d", float("nan")))) + TAIL, E.BadValue),
        (tlv(1, sub(1, b"n") + b"\x05") + TAIL, E.MalformedTlv),  # half a sub-TLV header
        (tlv(1, sub(1, b"n") + b"\x05\x09ab") + TAIL, E.MalformedTlv),  # sub-TLV overruns
        (NODE + tlv(2, sub(2, b"T4")) + TAIL, E.MissingTlv),  # no core
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1))) + TAIL, E.MissingTlv),  # no model
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 9, 1000, 1)) + sub(2, b"x")) + TAIL, E.BadValue),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 0, 1)) + sub(2, b"x")) + TAIL, E.BadValue),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 0)) + sub(2, b"x")) + TAIL, E.BadValue),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1)) + sub(2, b"x") + sub(6, bytes(8))) + TAIL,
         E.MalformedTlv),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1)) + sub(2, b"x")
                    + sub(6, struct.pack("!BdBd", 3, 1.0, 2, 1.0))) + TAIL, E.NonCanonical),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1)) + sub(2, b"x")
                    + sub(6, struct.pack("!Bd", 42, 1.0))) + TAIL, E.BadValue),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1)) + sub(2, b"x") + sub(10, b"b")
                    + sub(10, b"a")) + TAIL, E.NonCanonical),
        (NODE + tlv(2, sub(1, struct.pack("!BHI", 2, 1000, 1)) + sub(2, b"x") + sub(10, b"AVX")) + TAIL,
         E.NonCanonical),
        (NODE + GPU + tlv(2, sub(1, struct.pack("!BHI", 1, 1000, 1)) + sub(2, b"cpu")) + TAIL, E.NonCanonical),
        (NODE + tlv(3, struct.pack("!BIH", 2, 1, 10001)) + TAIL, E.BadValue),
        (NODE + tlv(3, struct.pack("!BIHBIH", 2, 1, 1, 1, 1, 1)) + TAIL, E.NonCanonical),
        (NODE + tlv(3, bytes(6)) + TAIL, E.MalformedTlv),
        (NODE + tlv(4, bytes([7]) + bytes(32)) + TAIL, E.BadValue),
        (NODE + tlv(4, bytes(32)) + TAIL, E.MalformedTlv),
        (NODE + tlv(5, bytes(3)) + tlv(6, b"a"), E.MalformedTlv),
        (NODE + TAIL + tlv(7, struct.pack("!dd", 91.0, 0.0)), E.BadValue),
        (NODE + TAIL + b"\x08\x00", E.MalformedTlv),  # half a TLV header before the signature
    ],
)
def test_body_errors(body, error):
    raw = seal(body, sequence=1, lifetime=10, key=KEY)
    err = raises(error, raw)
    assert 32 <= err.offset <= len(raw)


def test_signature_tlv_errors():
    raw = seal(NODE + TAIL, sequence=1, lifetime=10, key=KEY)
    # a TLV after the signature
    extra = bytearray(raw + tlv(9, b"z"))
    struct.pack_into("!H", extra, 30, len(extra))
    raises(E.BadSignatureTlv, resealed(extra))
    # no signature at all: replace the signature TLV by an unknown TLV of the same size
    nosig = bytearray(raw)
    nosig[-68] = 9
    raises(E.BadSignatureTlv, resealed(nosig))
    # a signature TLV of the wrong size
    short = bytearray(raw[:-1])
    struct.pack_into("!H", short, 30, len(short))
    struct.pack_into("!H", short, len(short) - 64 - 2, 64)
    raises(E.BadSignatureTlv, resealed(short))


def test_encode_refuses_what_does_not_fit():
    d = NodeDescriptor("x" * 256)
    with pytest.raises(E.LsaEncodeError, match="hostname"):
        encode_lsa(d, sequence=1, lifetime=1, key=KEY)
    with pytest.raises(E.LsaEncodeError, match="memory_mib"):
        encode_lsa(NodeDescriptor("n", memory_mib=-1), sequence=1, lifetime=1, key=KEY)
    with pytest.raises(E.LsaEncodeError, match="clock_mhz"):
        encode_lsa(NodeDescriptor("n", (DeviceCapability(DeviceClass.CPU, "c", clock_mhz=float("inf")),)),
                   sequence=1, lifetime=1, key=KEY)
    with pytest.raises(E.LsaEncodeError, match="sequence"):
        encode_lsa(d, sequence=0, lifetime=1, key=KEY)
    with pytest.raises(E.LsaEncodeError, match="secret"):
        encode_lsa(NodeDescriptor("n"), sequence=1, lifetime=1, key=b"short")
    big = NodeDescriptor("n", tuple(DeviceCapability(DeviceClass.GPU, f"m{i}" * 30) for i in range(30)))
    with pytest.raises(E.LsaEncodeError, match="MAX_LSA_SIZE"):
        encode_lsa(big, sequence=1, lifetime=1, key=KEY)
    with pytest.raises(E.LsaEncodeError, match="domain"):
        encode_lsa(NodeDescriptor("n"), domain=2**32, sequence=1, lifetime=1, key=KEY)


# ---------------------------------------------------------------- ordering


def hdr(seq: int, checksum: int = 0x1234, lifetime: int = 100) -> LsaHeader:
    return LsaHeader(1, b"\x01" * 20, seq, lifetime, checksum, 100)


def test_newer_orders_by_sequence_then_checksum_then_purge():
    assert newer(hdr(2), hdr(1)) == 1 and newer(hdr(1), hdr(2)) == -1
    assert newer(hdr(1, 0x2000), hdr(1, 0x1000)) == 1
    assert newer(hdr(1, 0x1000, 0), hdr(1, 0x2000)) == -1  # checksum is compared before the purge
    assert newer(hdr(1, lifetime=0), hdr(1)) == 1 and newer(hdr(1), hdr(1, lifetime=0)) == -1
    assert newer(hdr(1, lifetime=5), hdr(1, lifetime=900)) == 0  # age alone does not order


def test_mixed_profile_devices_keep_canonical_order():
    d = NodeDescriptor("mixed", (MI100, XEON_8463B, H100))
    raw = encode_lsa(d, sequence=1, lifetime=1, key=KEY)
    assert decode_lsa(raw).descriptor == d


def test_the_worked_example_in_docs_is_what_the_code_produces():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "tlv.md").read_text()
    block = doc.split("```")[1]
    documented = bytes.fromhex("".join(re.sub(r"^[0-9a-f]{4}  ", "", ln) for ln in block.strip().splitlines()))
    t4 = DeviceCapability(DeviceClass.GPU, "Tesla T4", vendor="NVIDIA", count=1, memory_mib=15360,
                          features=frozenset({"cuda"}))
    content = LsaContent(NodeDescriptor("t4-1", (t4,), arch="x86_64"), (Availability(DeviceClass.GPU, 1000, 250),),
                         ((DeviceClass.GPU, 10**15),), 64512, "Chicago")
    assert encode_lsa(content, sequence=1, lifetime=1200, key=KEY) == documented
    assert decode_lsa(documented).content == content


# ---------------------------------------------------------------- fast decode path


@pytest.mark.parametrize("n", [65519, 65520, 65521, 65522, 70001])
def test_fletcher_sums_on_both_sides_of_the_adler_modulus(n):
    # below 65521 bytes the plain sum is recovered from adler32 and a residue mod 255
    # (Chinese remainder); at and above it the block path is taken. All-0xff is the
    # largest plain sum for its length, so the CRT's range is used to its end.
    import random

    for data in (b"\xff" * n, random.Random(n).randbytes(n)):
        assert fletcher_sums(data) == reference_sums(data)


@given(devices)
@settings(max_examples=150, deadline=None)
def test_from_validated_builds_what_the_validating_constructor_builds(d):
    t = DeviceCapability.from_validated(
        d.device_class, d.model, d.vendor, d.count, d.compute_units, d.clock_mhz, d.flops, d.memory_mib,
        d.memory_bandwidth_gbps, d.interconnect, d.features, d.share_milli,
    )
    assert type(t) is DeviceCapability and t == d and hash(t) == hash(d) and t.canonical() == d.canonical()
    n = NodeDescriptor.from_validated("h", (d,), 1, 2.0, 3, "x86_64")
    assert type(n) is NodeDescriptor
    assert n == NodeDescriptor("h", (d,), 1, 2.0, 3, "x86_64") and n.digest() == NodeDescriptor("h", (d,), 1, 2.0, 3, "x86_64").digest()


def _public_copy(d: DeviceCapability) -> DeviceCapability:
    """The same fields through the public, validating constructor."""
    return DeviceCapability(d.device_class, d.model, d.vendor, d.count, d.compute_units, d.clock_mhz, d.flops,
                            d.memory_mib, d.memory_bandwidth_gbps, d.interconnect, d.features, d.share_milli)


@given(contents)
@settings(max_examples=100, deadline=None)
def test_decoded_descriptors_are_normalised_as_the_public_constructor_would(content):
    try:
        raw = encode_lsa(content, sequence=1, lifetime=1, key=KEY)
    except E.LsaEncodeError:
        return
    clear_descriptor_cache()
    decoded = decode_lsa(raw).descriptor
    for d in decoded.devices:
        assert type(d.device_class) is DeviceClass and type(d.features) is frozenset
        assert all(type(p) is Precision and type(v) is float for p, v in d.flops)
        assert [p for p, _ in d.flops] == sorted({p for p, _ in d.flops})
        assert _public_copy(d) == d
    assert NodeDescriptor(decoded.hostname, decoded.devices, decoded.memory_mib, decoded.disk_gib,
                          decoded.numa_nodes, decoded.arch).devices == decoded.devices


CORE = sub(1, struct.pack("!BHI", 2, 1000, 1))
DEV_AT = 32 + len(NODE) + 3  # first byte of the first DEVICE TLV's value (its first sub-TLV)


def device_error(*subs: bytes) -> tuple[bytes, int]:
    """An LSA whose single DEVICE TLV holds ``subs``; returns it and the offset of subs[0]."""
    return seal(NODE + tlv(2, b"".join(subs)) + TAIL, sequence=1, lifetime=10, key=KEY), DEV_AT


def test_device_errors_point_at_the_exact_byte():
    flop = struct.Struct("!Bd").pack
    model = sub(2, b"T4")
    at = DEV_AT + len(CORE) + len(model)  # the sub-TLV after core and model
    cases = [
        ((CORE, sub(2, b"T\xff4")), E.BadValue, DEV_AT + len(CORE) + 2 + 1),  # the bad UTF-8 byte
        ((sub(1, struct.pack("!BHI", 9, 1000, 1)), model), E.BadValue, DEV_AT + 2),  # class
        ((sub(1, struct.pack("!BHI", 2, 0, 1)), model), E.BadValue, DEV_AT + 3),  # share
        ((sub(1, struct.pack("!BHI", 2, 1000, 0)), model), E.BadValue, DEV_AT + 5),  # count
        ((sub(1, b"\x02\x03\xe8"), model), E.MalformedTlv, DEV_AT),  # core of 3 bytes
        ((CORE, model, sub(3, b"a"), sub(3, b"b")), E.DuplicateTlv, at + 3),
        ((CORE, model, sub(6, flop(1, 1.0) + flop(7, 1.0))), E.BadValue, at + 2 + 9),
        ((CORE, model, sub(6, flop(2, 1.0) + flop(2, 1.0))), E.NonCanonical, at + 2 + 9),
        ((CORE, model, sub(6, flop(1, 1.0) + flop(2, float("nan")))), E.BadValue, at + 2 + 9 + 1),
        ((CORE, model, sub(6, flop(1, -1.0))), E.BadValue, at + 2 + 1),
        ((CORE, model, sub(6, flop(1, float("inf")) + flop(9, 1.0))), E.BadValue, at + 2 + 1),  # first bad entry
        ((CORE, model, sub(5, struct.pack("!d", float("-inf")))), E.BadValue, at + 2),
        ((CORE, model, sub(8, struct.pack("!d", float("nan")))), E.BadValue, at + 2),
        ((CORE, model, sub(7, bytes(4))), E.MalformedTlv, at),
        ((CORE, model, sub(10, b"Cuda")), E.NonCanonical, at + 2),  # upper case: the value
        ((CORE, model, sub(10, b"rocm"), sub(10, b"cuda")), E.NonCanonical, at + 6),  # order: the sub-TLV
        ((CORE, model, sub(10, b"cu\xc3")), E.BadValue, at + 2 + 2),
        ((CORE, model, sub(9, b"\x80")), E.BadValue, at + 2),
        ((CORE, model, b"\x09"), E.MalformedTlv, at),  # half a sub-TLV header
        ((CORE, model, b"\x09\x05ab"), E.MalformedTlv, at),  # overruns the DEVICE TLV
    ]
    for subs, error, offset in cases:
        raw, _ = device_error(*subs)
        raises(error, raw, offset)


def test_node_and_top_level_errors_point_at_the_exact_byte():
    node_at = 32 + 3
    host = sub(1, b"n")
    cases = [
        (tlv(1, sub(1, b"\xe2\x82")) + TAIL, E.BadValue, node_at + 2),  # truncated UTF-8 sequence
        (tlv(1, host + sub(2, b"x\xff")) + TAIL, E.BadValue, node_at + len(host) + 3),
        (tlv(1, host + sub(4, struct.pack("!d", -0.5))) + TAIL, E.BadValue, node_at + len(host) + 2),
        (tlv(1, host + sub(5, bytes(2))) + TAIL, E.MalformedTlv, node_at + len(host)),
        (tlv(1, host + sub(3, bytes(8)) + sub(3, bytes(8))) + TAIL, E.DuplicateTlv, node_at + len(host) + 10),
        (NODE + tlv(3, struct.pack("!BIHBIH", 1, 1, 1, 2, 1, 10001)) + TAIL, E.BadValue, 32 + len(NODE) + 3 + 7 + 5),
        (NODE + tlv(3, struct.pack("!BIH", 5, 1, 1)) + TAIL, E.BadValue, 32 + len(NODE) + 3),
        (NODE + tlv(4, bytes([2]) + bytes(32) + bytes([1]) + bytes(32)) + TAIL, E.NonCanonical,
         32 + len(NODE) + 3 + 33),
        (NODE + tlv(5, bytes(4)) + tlv(6, b"Chi\xffcago"), E.BadValue, 32 + len(NODE) + 7 + 3 + 3),
    ]
    for body, error, offset in cases:
        raises(error, seal(body, sequence=1, lifetime=10, key=KEY), offset)


# ---------------------------------------------------------------- the codec tables


def test_codec_tables_have_one_row_per_type_in_code_order():
    assert [r.code for r in LSA_OPS.rows] == list(Tlv)
    assert [r.code for r in NODE_OPS.rows] == list(NodeSub)
    assert [r.code for r in DEVICE_OPS.rows] == list(DeviceSub)
    assert [r.code for r in RUNTIME_OPS.rows] == list(RuntimeSub)
    for table in (LSA_OPS, NODE_OPS, DEVICE_OPS, RUNTIME_OPS):
        assert all(table[r.code] is r for r in table.rows)
        assert sum(r is not None for r in table.by_code) == len(table.rows)
    row = NODE_OPS.rows[0]
    with pytest.raises(ValueError, match="ascending"):
        OpsTable(Level.SUB_TLV, "node", (NODE_OPS.rows[1], row))
    with pytest.raises(ValueError, match="distinct"):
        OpsTable(Level.SUB_TLV, "node", (row, row))


def test_length_rules():
    assert exactly(8).fits(8) and not exactly(8).fits(7) and not exactly(8).fits(16)
    assert multiple_of(9).fits(0) and multiple_of(9).fits(18) and not multiple_of(9).fits(10)
    assert all(ANY.fits(n) for n in (0, 1, 255, 1000))
    assert (str(exactly(4)), str(multiple_of(7)), str(ANY)) == ("4", "n × 7", "any")
    for table in (LSA_OPS, NODE_OPS, DEVICE_OPS, RUNTIME_OPS):
        for r in table.rows:
            assert [bool(b) for b in r.fits[:600]] == [r.length.fits(n) for n in range(600)]


def test_docs_print_the_codec_tables():
    """docs/tlv.md has a line for every row, with its code, type, name, length and flags."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "tlv.md").read_text()
    for name, table in (("LSA_OPS", LSA_OPS), ("NODE_OPS", NODE_OPS), ("DEVICE_OPS", DEVICE_OPS),
                        ("RUNTIME_OPS", RUNTIME_OPS)):
        for r in table.rows:
            required, repeated = ("yes" if r.required else ""), ("yes" if r.repeated else "")
            line = f"| {name} | {int(r.code)} | {r.code.name} | {r.name} | {r.length} | {required} | {repeated} |"
            assert line in docs, line


def test_a_sub_tlv_of_the_wrong_length_names_its_row():
    raw = seal(NODE + tlv(2, CORE + sub(2, b"T4") + sub(7, bytes(4))) + TAIL, sequence=1, lifetime=10, key=KEY)
    err = raises(E.MalformedTlv, raw)
    assert "memory_mib sub-TLV has 4 bytes, expected 8" in str(err)
    raw = seal(NODE + tlv(5, bytes(3)) + tlv(6, b"a"), sequence=1, lifetime=10, key=KEY)
    assert "domain TLV has 3 bytes, expected 4" in str(raises(E.MalformedTlv, raw, 32 + len(NODE)))


def test_values_from_validated_build_what_init_builds():
    h = LsaHeader.from_validated(1, b"\x01" * 20, 2, 3, 4, 5)
    a = Availability.from_validated(DeviceClass.GPU, 1000, 250)
    assert type(h) is LsaHeader and h == LsaHeader(1, b"\x01" * 20, 2, 3, 4, 5) and hash(h) == hash(LsaHeader(1, b"\x01" * 20, 2, 3, 4, 5))
    assert type(a) is Availability and a == Availability(DeviceClass.GPU, 1000, 250)
    c = h100_content()
    fields = (h, c.descriptor, c.availability, c.prices, c.domain, c.attachment, c.location, (), b"raw")
    lsa = ComputeLsa.from_validated(*fields)
    assert type(lsa) is ComputeLsa and lsa == ComputeLsa(*fields)
    with pytest.raises(AttributeError):  # frozen like any other instance
        lsa.domain = 1  # type: ignore[misc]


def test_the_descriptor_cache_counts_what_it_holds():
    clear_descriptor_cache()
    assert cached_descriptors() == 0
    raw = encode_lsa(h100_content(), sequence=1, lifetime=10, key=KEY)
    decode_lsa(raw)
    decode_lsa(raw)
    assert cached_descriptors() == 1
