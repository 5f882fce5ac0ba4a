"""Input limits (``marketplace/limits.py``): the depth-bounded JSON parser, the depth of parsed
values, and the interpreter's recursion limit in a process that talks to a chain."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.errors import DecodeError, LimitExceeded
from marketplace.limits import MAX_JSON_DEPTH, RECURSION_LIMIT, json_depth, max_nesting, parse_json


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_at_the_limit_parses_and_one_more_is_refused():
    assert json_depth(parse_json(_nested(MAX_JSON_DEPTH))) == MAX_JSON_DEPTH
    with pytest.raises(LimitExceeded) as info:
        parse_json(_nested(MAX_JSON_DEPTH + 1))
    assert info.value.limit == "max_depth" and info.value.maximum == MAX_JSON_DEPTH
    assert info.value.http_status == 413 and info.value.rpc_code == -32600


def test_a_document_nested_100000_deep_is_refused_by_a_scan_not_a_recursion():
    body = b'{"a":' * 50_000 + b"[" * 50_000 + b"1" + b"]" * 50_000 + b"}" * 50_000
    with _recursion_headroom(30):  # a measure that recursed even 30 levels would fail here
        with pytest.raises(LimitExceeded, match="nested 100000 deep"):
            parse_json(body, max_bytes=None)


@contextlib.contextmanager
def _recursion_headroom(frames: int):
    """Only ``frames`` more Python frames allowed than the caller already uses."""
    before = sys.getrecursionlimit()
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def test_the_size_limit_counts_bytes():
    with pytest.raises(LimitExceeded, match="11 bytes, more than the 10") as info:
        parse_json('"éé"' + " " * 5, max_bytes=10)  # 9 characters, 11 UTF-8 bytes
    assert info.value.limit == "max_bytes"
    assert parse_json(b'"abcdefgh"', max_bytes=10) == "abcdefgh"


def test_brackets_inside_strings_do_not_count():
    doc = json.dumps({"s": "[" * 500 + '\\"{{{' + "]" * 3, "t": ['"[', "\\", "{"]}).encode()
    assert max_nesting(doc) == 2
    assert parse_json(doc)["t"] == ['"[', "\\", "{"]


def test_text_that_is_not_json_is_a_decode_error_with_its_offset():
    with pytest.raises(DecodeError) as info:
        parse_json(b'{"a": [1, 2,, 3]}')
    assert info.value.offset == 12 and "not JSON" in str(info.value)
    with pytest.raises(DecodeError):
        parse_json(b"\xff\xfe not utf-8")
    with pytest.raises(DecodeError):
        parse_json(b"1" * 5000)  # an integer longer than Python converts


def test_an_unterminated_string_cannot_hide_brackets():
    # the string never closes, so the scan counts what follows: never shallower than json.loads gets
    body = b'["' + b"[" * 100
    assert max_nesting(body) >= 101
    with pytest.raises(LimitExceeded):
        parse_json(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n\u00e9'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\x'), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_the_scan_measures_what_the_parser_builds(value):
    body = json.dumps(value).encode()
    assert max_nesting(body) == json_depth(value)
    assert parse_json(body, max_depth=100) == value


def test_json_depth_stops_early_when_asked():
    deep: list = []
    cursor = deep
    for _ in range(100_000):  # built without recursion, measured without recursion
        cursor.append([])
        cursor = cursor[0]
    assert json_depth(deep, stop_above=10) == 11
    assert json_depth(deep) == 100_001
    assert json_depth(7) == 0 and json_depth({}) == 1 and json_depth({"a": [1, {"b": ()}]}) == 4


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_process_that_talks_to_a_chain_has_its_recursion_limit_pinned():
    # py_ecc (imported by eth-account and py-evm) raises the limit to 100,000; the chain edge pins it back
    out = _run("import sys, marketplace.api.app, marketplace.chain.durable, eth.precompiles.ecpairing; "
               "print(sys.getrecursionlimit())")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == RECURSION_LIMIT


def test_a_deep_document_parsed_by_json_in_a_thread_raises_instead_of_crashing():
    # what killed the market: json.loads of 100,000 nested arrays in a server thread (SIGSEGV at 100,000)
    code = ("import json, threading, marketplace.chain.backends\n"
            "out = []\n"
            "def parse():\n"
            "    try:\n"
            "        json.loads('[' * 100000 + ']' * 100000)\n"
            "    except RecursionError:\n"
            "        out.append('RecursionError')\n"
            "t = threading.Thread(target=parse); t.start(); t.join(); print(out[0])\n")
    out = _run(code)
    assert out.returncode == 0, (out.returncode, out.stderr[-500:])
    assert out.stdout.strip() == "RecursionError"
