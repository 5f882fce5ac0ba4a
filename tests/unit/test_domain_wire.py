"""The wire form of inter-domain UPDATEs: round trip, fuzzing, and malformed items refused by the
router (counted, treat-as-withdraw) while the good items of the same UPDATE are used."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.resources.model import DeviceClass
from marketplace.routing.domain_policy import RouteClass
from marketplace.routing.domain_wire import SUMMARY, decode_update, encode_update, receive_wire
from marketplace.routing.domain_values import DomainSummary, Message, Withdrawal
from marketplace.routing.domains import DomainRouter
from marketplace.routing.errors import DomainError

pytestmark = pytest.mark.unit

GPU, CPU = DeviceClass.GPU, DeviceClass.CPU
asn = st.integers(1, 2**32 - 1)


@st.composite
def summaries(draw) -> DomainSummary:
    path = tuple(draw(st.lists(asn, min_size=1, max_size=12, unique=True)))
    total = draw(st.floats(0, 1e9))
    return DomainSummary(path[-1], draw(st.sampled_from(list(DeviceClass))), total, draw(st.floats(0, total)),
                         draw(st.floats(0, 1e6)), path, draw(st.floats(0, 1e4)), draw(st.integers(0, 2**63)),
                         draw(st.sampled_from(list(RouteClass))))


withdrawals = st.builds(Withdrawal, asn, st.sampled_from(list(DeviceClass)), st.none() | st.integers(0, 2**63))


@settings(max_examples=200, deadline=None)
@given(asn, asn, st.lists(summaries() | withdrawals, max_size=8))
def test_round_trip(sender, receiver, items):
    msg = Message(sender, receiver, tuple(items))
    assert decode_update(encode_update(msg)) == (msg, [])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_domain_error(data):
    try:
        msg, problems = decode_update(data)
    except DomainError:
        return
    assert isinstance(msg, Message) and all(p.offset >= 0 for p in problems)


@settings(max_examples=200, deadline=None)
@given(summaries(), st.integers(0, 200), st.integers(0, 255))
def test_a_flipped_byte_never_escapes_as_another_exception(s, where, value):
    raw = bytearray(encode_update(Message(1, 2, (s,))))
    raw[where % len(raw)] = value
    try:
        decode_update(bytes(raw))
    except DomainError:
        pass


def good(origin: int = 99, path: tuple[int, ...] = (1, 99)) -> DomainSummary:
    return DomainSummary(origin, GPU, 8, 4, 1.0, path, 1.0, 1)


def corrupt_free(raw: bytes, item_offset: int) -> bytes:
    """Set the second summary's ``free`` above its ``total``."""
    at = item_offset + 1 + struct.calcsize("!IB") + 8
    return raw[:at] + struct.pack("!d", 1e6) + raw[at + 8:]


def test_a_bad_item_is_refused_and_the_rest_of_the_update_used():
    r = DomainRouter(10, [1, 2])
    r.receive(Message(1, 10, DomainSummary(98, CPU, 8, 4, 1.0, (1, 98), 1.0, 1)))
    assert r.best(98, CPU) is not None
    first = encode_update(Message(1, 10, (good(),)))
    raw = encode_update(Message(1, 10, (good(), DomainSummary(98, CPU, 8, 4, 1.0, (1, 98), 1.0, 2))))
    raw = corrupt_free(raw, len(first))
    msg, problems = decode_update(raw)
    assert msg.body == (good(),) and len(problems) == 1 and problems[0].key == (98, CPU)
    assert "free" in problems[0].reason
    receive_wire(r, raw, 1.0, peer=1)
    assert r.best(99, GPU).via == 1  # the good item was used
    assert r.best(98, CPU) is None and r.rejected["malformed"] == 1  # treat-as-withdraw for the bad one


@pytest.mark.parametrize("mangle, reason", [
    (lambda raw: raw[:-3], "truncated"),
    (lambda raw: raw + b"\x00", "after the last item"),
    (lambda raw: raw[:11] + b"\x07" + raw[12:], "unknown item kind"),
])
def test_framing_problems_are_reported(mangle, reason):
    raw = mangle(encode_update(Message(1, 10, (good(),))))
    _, problems = decode_update(raw)
    assert any(reason in p.reason for p in problems)


def test_unreadable_headers_raise_and_the_router_counts_them():
    raw = encode_update(Message(1, 10, (good(),)))
    for bad in (raw[:5], b"\x09" + raw[1:], raw[:9] + b"\xff\xff" + raw[11:]):
        with pytest.raises(DomainError):
            decode_update(bad)
    r = DomainRouter(10, [1])
    assert receive_wire(r, raw[:5], 0.0, peer=1) == [] and r.rejected["malformed"] == 1


def test_a_lying_session_is_refused_whole():
    r = DomainRouter(10, [1, 2])
    raw = encode_update(Message(1, 10, (good(),)))  # says it comes from AS1 ...
    assert receive_wire(r, raw, 0.0, peer=2) == []  # ... on AS2's session
    assert r.rejected["peer-as-mismatch"] == 1 and r.best(99, GPU) is None


def test_encoder_refuses_what_the_wire_cannot_carry():
    with pytest.raises(DomainError, match="at most"):
        encode_update(Message(1, 2, tuple(Withdrawal(7, GPU) for _ in range(5000))))
    long_path = tuple(range(1, 300))
    with pytest.raises(DomainError, match="hops"):
        encode_update(Message(1, 2, (DomainSummary(299, GPU, 1, 1, 1.0, long_path, 1.0),)))
    with pytest.raises(DomainError, match="not an UPDATE item"):
        encode_update(Message(1, 2, ("x",)))
    assert SUMMARY.size == 47
