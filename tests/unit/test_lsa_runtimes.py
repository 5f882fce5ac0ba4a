"""The RUNTIMES TLV of a Compute LSA: what a provider runs, byte by byte (docs/tlv.md), its faults
at the exact byte, and the offer's own rules (``marketplace.resources.runtimes``)."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.lsa import content_for, profiles
from marketplace.convergence import errors as E
from marketplace.convergence.lsa import decode_lsa, encode_lsa, seal
from marketplace.resources.runtimes import (ContainerOffer, ImageRejected, InvalidOffer, RegistryPolicy, Runtime,
                                            RuntimeOffer, WorkloadNeed, parse_ref, unmet)
from tests.unit.test_lsa_fuzz import check, repaired

pytestmark = pytest.mark.unit

KEY = bytes(range(1, 33))
NODE = struct.pack("!BH", 1, 4) + bytes((1, 2)) + b"n1"
TAIL = struct.pack("!BHI", 5, 4, 7) + struct.pack("!BH", 6, 1) + b"a"
WC = RuntimeOffer(True, True, ContainerOffer("amd64", devices=True), programs=("wc-l",))


def tlv8(value: bytes) -> bytes:
    return struct.pack("!BH", 8, len(value)) + value


def sub(t: int, value: bytes) -> bytes:
    return bytes((t, len(value))) + value


def lsa_with(value: bytes) -> bytes:
    return seal(NODE + TAIL + tlv8(value), sequence=1, lifetime=10, key=KEY)


def test_the_docs_example_is_what_the_code_writes():
    content = replace(content_for(profiles()["h100x8"], 1, 0), runtimes=WC)
    raw = encode_lsa(content, sequence=1, lifetime=10, key=KEY)
    example = bytes.fromhex("080011 010103 020602616d643634 04047763 2d6c".replace(" ", ""))
    assert example in raw and raw.index(example) == len(raw) - 68 - len(example)  # last before the signature
    assert "`08 00 11`" in (Path(__file__).resolve().parents[2] / "docs" / "tlv.md").read_text()
    lsa = decode_lsa(raw)
    assert lsa.runtimes == WC and lsa.content == content
    assert encode_lsa(lsa.content, sequence=1, lifetime=10, key=KEY) == raw


def test_without_the_tlv_a_provider_offers_nothing_but_the_shipped_modules():
    lsa = decode_lsa(seal(NODE + TAIL, sequence=1, lifetime=10, key=KEY))
    assert lsa.runtimes is None
    need = WorkloadNeed(Runtime.WASM, buyer_module=True)
    assert [r for r, _ in unmet(lsa.runtimes, need)] == ["runtime"]
    assert unmet(None, WorkloadNeed(Runtime.WASM)) == ()  # a shipped module: everyone runs it


def test_every_field_decodes():
    value = (sub(1, b"\x01") + sub(2, b"\x01arm64") + sub(3, b"localhost:5000/a") + sub(3, b"localhost:5000/b:1")
             + sub(4, b"cat") + sub(4, b"sort"))
    offer = decode_lsa(lsa_with(value)).runtimes
    assert offer == RuntimeOffer(True, False, ContainerOffer("arm64", network=True), ("localhost:5000/a",
                                                                                      "localhost:5000/b:1"),
                                 ("cat", "sort"))
    # unknown sub-TLVs are skipped (a later version's) and kept in the raw bytes
    raw = lsa_with(sub(1, b"\x00") + sub(9, b"later"))
    assert decode_lsa(raw).runtimes == RuntimeOffer(False, False) and decode_lsa(raw).raw == raw


START = 32 + len(NODE) + len(TAIL)  # the RUNTIMES TLV's first byte
V = START + 3  # its value's first byte


@pytest.mark.parametrize("value, error, offset", [
    (b"", E.MissingTlv, V),  # the wasm sub-TLV is required
    (sub(1, b""), E.MalformedTlv, V),
    (sub(1, b"\x04"), E.BadValue, V + 2),  # a reserved wasm bit
    (sub(1, b"\x01") + sub(1, b"\x01"), E.DuplicateTlv, V + 3),
    (sub(1, b"\x01") + sub(2, b"\x00"), E.BadValue, V + 5),  # no architecture
    (sub(1, b"\x01") + sub(2, b"\x04amd64"), E.BadValue, V + 5),  # a reserved container bit
    (sub(1, b"\x01") + sub(2, b"\x00AMD 64"), E.BadValue, V + 6),
    (sub(1, b"\x01") + sub(2, b"\x00\xff\xfe"), E.BadValue, V + 6),  # not UTF-8
    (sub(1, b"\x01") + sub(4, b"b") + sub(4, b"a"), E.NonCanonical, V + 6),
    (sub(1, b"\x01") + sub(4, b"a") + sub(4, b"a"), E.NonCanonical, V + 6),
    (sub(1, b"\x01") + sub(4, b"Bad Name"), E.BadValue, V),
    (sub(1, b"\x01") + sub(3, b"localhost:5000/x"), E.BadValue, V),  # an image without a container runtime
    (sub(1, b"\x01") + sub(2, b"\x00amd64") + sub(3, b"busybox"), E.BadValue, V),  # no host
    (sub(1, b"\x01") + sub(4, b"a") + b"\x04", E.MalformedTlv, V + 6),  # a sub-TLV header cut short
])
def test_faults_point_at_their_byte(value, error, offset):
    with pytest.raises(error) as info:
        decode_lsa(lsa_with(value))
    assert info.value.offset == offset, str(info.value)


def test_the_tlv_comes_after_location_and_once():
    twice = seal(NODE + TAIL + tlv8(sub(1, b"\x01")) + tlv8(sub(1, b"\x01")), sequence=1, lifetime=10, key=KEY)
    with pytest.raises(E.DuplicateTlv):
        decode_lsa(twice)
    early = seal(NODE + tlv8(sub(1, b"\x01")) + TAIL, sequence=1, lifetime=10, key=KEY)
    with pytest.raises(E.NonCanonical):
        decode_lsa(early)


SEED = encode_lsa(replace(content_for(profiles()["h100x8"], 1, 0), runtimes=RuntimeOffer(
    True, True, ContainerOffer("amd64", True, True), ("localhost:5000/tools/busybox",), ("sha256sum", "wc-l"))),
    sequence=3, lifetime=600, key=KEY)


@given(st.integers(0, len(SEED) - 1), st.integers(0, 255))
@settings(max_examples=400, deadline=None)
def test_fuzz_one_byte_of_the_runtimes_tlv(pos, value):
    at = SEED.index(b"\x08\x00") + pos % 60  # in and around the RUNTIMES TLV
    data = bytearray(SEED)
    data[min(at, len(data) - 69)] = value
    check(repaired(data))


@given(st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_fuzz_any_runtimes_value(value):
    check(lsa_with(value))


# ---------------------------------------------------------------- the offer and the rule


def test_an_offer_is_canonical_and_refuses_what_it_cannot_advertise():
    assert RuntimeOffer(programs=("b", "a", "a")).programs == ("a", "b")
    for bad in ({"programs": ("Bad",)}, {"images": ("localhost:5000/x",)},
                {"container": ContainerOffer("amd64"), "images": ("busybox",)},
                {"container": ContainerOffer("amd64"), "images": ("localhost:5000/x:latest@sha256:" + "0" * 64 + "x",)}):
        with pytest.raises(InvalidOffer):
            RuntimeOffer(**bad)
    with pytest.raises(InvalidOffer):
        ContainerOffer("x86 64")
    with pytest.raises(ImageRejected):
        parse_ref("no-host")


def test_unmet_names_each_missing_capability():
    offer = RuntimeOffer(buyer_wasm=True, nondeterministic=False, container=ContainerOffer("amd64"),
                         images=("localhost:5000/tools/busybox",), programs=("sha256sum",))
    assert unmet(offer, WorkloadNeed(Runtime.WASM, buyer_module=True)) == ()
    assert [r for r, _ in unmet(offer, WorkloadNeed(Runtime.WASM, buyer_module=True, deterministic=False))] == [
        "nondeterministic"]
    assert [r for r, _ in unmet(RuntimeOffer(buyer_wasm=False), WorkloadNeed(Runtime.WASM, buyer_module=True))] == [
        "wasm-modules"]
    assert unmet(offer, WorkloadNeed(Runtime.NATIVE, program="sha256sum")) == ()
    (why,) = unmet(offer, WorkloadNeed(Runtime.NATIVE, program="wc-l"))
    assert why == ("program", "needs the native program 'wc-l'; provider offers sha256sum")
    assert unmet(offer, WorkloadNeed(Runtime.CONTAINER, image="localhost:5000/tools/busybox:1")) == ()
    assert unmet(offer, WorkloadNeed(Runtime.CONTAINER, arches=("amd64",))) == ()
    assert unmet(offer, WorkloadNeed(Runtime.CONTAINER, arches=("arm64", "amd64"))) == ()
    got = unmet(offer, WorkloadNeed(Runtime.CONTAINER, image="localhost:5000/other:1", arches=("arm64",),
                                    network=True, devices=True))
    assert [r for r, _ in got] == ["image", "platform", "network", "devices"]
    assert "linux/arm64" in got[1][1] and "linux/amd64" in got[1][1]
    assert [r for r, _ in unmet(RuntimeOffer(), WorkloadNeed(Runtime.CONTAINER))] == ["runtime"]
    assert [r for r, _ in unmet(None, WorkloadNeed(Runtime.NATIVE, program="x"))] == ["program"]


def test_registry_policy_reads_the_same_references():
    policy = RegistryPolicy.of(["localhost:5000/tools/busybox"])
    assert str(policy.check("localhost:5000/tools/busybox:1")) == "localhost:5000/tools/busybox:1"
    with pytest.raises(ImageRejected, match="not on this provider's image allowlist"):
        policy.check("localhost:5000/tools/other")


def test_a_need_document_round_trips_and_keeps_only_what_differs():
    need = WorkloadNeed(Runtime.CONTAINER, arches=("amd64",), devices=True)
    assert need.to_dict() == {"runtime": "container", "arches": ["amd64"], "devices": True}
    assert WorkloadNeed.from_dict(need.to_dict()) == need
    assert WorkloadNeed(Runtime.WASM).trivial and not WorkloadNeed(Runtime.WASM, buyer_module=True).trivial
