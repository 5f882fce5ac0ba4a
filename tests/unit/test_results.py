"""The result format and digest (``marketplace.results``): one definition for agent, engine and buyer."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from marketplace.results import ResultRecord, parse_result, result_digest

pytestmark = pytest.mark.unit


@given(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12),
       st.integers(-2**31, 2**31 - 1), st.binary(max_size=64))
def test_parse_inverts_encode_and_the_digest_is_keccak_of_the_bytes(status, code, output):
    rec = ResultRecord(status, code, output)
    assert parse_result(rec.encode()) == rec
    assert rec.digest == result_digest(rec.encode()) == keccak(rec.encode())


def test_the_wire_layout_is_status_zero_exit_code_then_output():
    assert ResultRecord("ok", -1, b"hi").encode() == b"ok\x00\xff\xff\xff\xffhi"


@pytest.mark.parametrize("blob", [b"", b"no separator", b"ok\x00\x00\x00"])
def test_bytes_that_are_not_a_result_parse_to_none(blob):
    assert parse_result(blob) is None
