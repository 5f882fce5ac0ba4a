"""The result format and digest (``marketplace.results``): one definition for agent, engine and buyer."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from marketplace.errors import InputError
from marketplace.results import OutputFile, ResultRecord, decode_manifest, encode_manifest, parse_result, \
    result_digest

pytestmark = pytest.mark.unit

STATUS = st.text(alphabet=st.characters(blacklist_characters="\x00\x01", blacklist_categories=("Cs",)), max_size=12)
NAME = st.lists(st.text(alphabet="abcxyz019._-é", min_size=1, max_size=8).filter(lambda p: p not in (".", "..")),
                min_size=1, max_size=3).map("/".join)
FILES = st.dictionaries(NAME, st.binary(max_size=32), max_size=4).map(
    lambda d: tuple(OutputFile.of(name, data) for name, data in d.items()))


@given(STATUS, st.integers(-2**31, 2**31 - 1), st.binary(max_size=64))
def test_parse_inverts_encode_and_the_digest_is_keccak_of_the_bytes(status, code, output):
    rec = ResultRecord(status, code, output)
    assert parse_result(rec.encode()) == rec
    assert rec.digest == result_digest(rec.encode()) == keccak(rec.encode())


@given(STATUS, st.integers(-2**31, 2**31 - 1), st.binary(max_size=64), FILES)
def test_parse_inverts_encode_with_output_files(status, code, output, files):
    rec = ResultRecord(status, code, output, files)
    assert parse_result(rec.encode()) == rec
    assert rec.digest == keccak(rec.encode())


def test_the_wire_layout_is_status_zero_exit_code_then_output():
    # byte-for-byte the format of every result committed before output files existed
    assert ResultRecord("ok", -1, b"hi").encode() == b"ok\x00\xff\xff\xff\xffhi"
    assert ResultRecord("ok", 0, b"hi", ()).digest == keccak(b"ok\x00\x00\x00\x00\x00hi")


def test_the_wire_layout_with_files_is_a_sorted_sha256_manifest_before_stdout():
    b, a = OutputFile.of("out/b.txt", b"bee"), OutputFile.of("a", b"")
    blob = ResultRecord("ok", 3, b"out", (b, a)).encode()
    manifest = (b"\x00\x00\x00\x02"
                + b"\x00\x01a" + (0).to_bytes(8, "big") + hashlib.sha256(b"").digest()
                + b"\x00\x09out/b.txt" + (3).to_bytes(8, "big") + hashlib.sha256(b"bee").digest())
    assert blob == b"ok\x01\x00\x00\x00\x03" + len(manifest).to_bytes(4, "big") + manifest + b"out"
    assert decode_manifest(encode_manifest((a, b))) == (a, b)


def test_the_digest_covers_every_file_digest_and_name():
    base = ResultRecord("ok", 0, b"x", (OutputFile.of("r.txt", b"1"),))
    assert ResultRecord("ok", 0, b"x", (OutputFile.of("r.txt", b"2"),)).digest != base.digest
    assert ResultRecord("ok", 0, b"x", (OutputFile.of("s.txt", b"1"),)).digest != base.digest
    assert ResultRecord("ok", 0, b"x").digest != base.digest


@pytest.mark.parametrize("blob", [b"", b"no separator", b"ok\x00\x00\x00", b"ok\x01\x00\x00\x00\x00",
                                  b"ok\x01\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x01\x00",
                                  # a with-files record naming no file is not one the agent writes
                                  b"ok\x01\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00"])
def test_bytes_that_are_not_a_result_parse_to_none(blob):
    assert parse_result(blob) is None


def test_a_truncated_or_padded_manifest_is_not_one():
    good = encode_manifest((OutputFile.of("a", b"z"),))
    assert decode_manifest(good[:-1]) is None and decode_manifest(good + b"\x00") is None


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "./a", "a/", "nul\x00", "x" * 1025])
def test_output_file_names_must_be_plain_relative_paths(name):
    with pytest.raises(InputError):
        OutputFile.of(name, b"")


def test_bad_records_are_refused():
    with pytest.raises(InputError, match="0x00 or 0x01"):
        ResultRecord("o\x01k", 0, b"")
    with pytest.raises(InputError, match="named twice"):
        ResultRecord("ok", 0, b"", (OutputFile.of("a", b"1"), OutputFile.of("a", b"2")))
    with pytest.raises(InputError, match="32 bytes"):
        OutputFile("a", 1, b"short")


def test_names_that_are_not_utf8_are_refused_and_odd_status_bytes_still_parse():
    with pytest.raises(InputError, match="not UTF-8"):
        OutputFile("bad\udcff", 0, bytes(32))
    assert parse_result(b"\xffok\x00\x00\x00\x00\x00out").status == "\ufffdok"
