"""The peering frame codec: round trips, incremental decoding, and every malformed frame refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.errors import DecodeError
from marketplace.peering.errors import FrameError, FrameTooLarge, UnknownMessage
from marketplace.peering.wire import (
    MAX_KEY,
    MIN_KEY,
    AdjState,
    Csnp,
    FrameDecoder,
    Hello,
    LsaFrame,
    MessageType,
    Psnp,
    SnpEntry,
    chunk_csnp,
    encode_frame,
)

pytestmark = pytest.mark.unit

entries = st.builds(SnpEntry, st.integers(0, 255), st.binary(min_size=20, max_size=20), st.integers(0, 2**64 - 1),
                    st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1))
keys = st.tuples(st.integers(0, 255), st.binary(min_size=20, max_size=20))
messages = st.one_of(
    st.builds(Hello, st.integers(1, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from(AdjState),
              st.integers(0, 2**32 - 1)),
    st.builds(LsaFrame, st.binary(min_size=1, max_size=2000)),
    st.builds(Psnp, st.lists(entries, max_size=20).map(tuple)),
    st.tuples(keys, keys, st.lists(entries, max_size=20)).map(
        lambda t: Csnp(min(t[0], t[1]), max(t[0], t[1]), tuple(t[2]))),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_any_stream_of_messages_decodes_back_whatever_the_chunking(msgs, data):
    stream = b"".join(encode_frame(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    out = []
    prev = 0
    for cut in cuts + [len(stream)]:
        out += decoder.feed(stream[prev:cut])
        prev = cut
    assert out == msgs
    assert decoder.pending == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_frame_error_or_waits_never_anything_else(blob):
    decoder = FrameDecoder(max_frame=4096)
    try:
        decoder.feed(blob)
    except FrameError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(blob)
        with pytest.raises(FrameError):  # poisoned: the stream lost its framing
            decoder.feed(b"")


def test_length_prefix_over_the_limit_is_refused_before_buffering():
    decoder = FrameDecoder(max_frame=1000)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(struct.pack("!IB", 1001, MessageType.LSA))
    assert "1001" in str(info.value) and isinstance(info.value, DecodeError)


def test_zero_length_frame_is_refused():
    with pytest.raises(FrameError, match="frame length 0"):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_encoder_refuses_a_frame_over_the_limit():
    with pytest.raises(FrameTooLarge):
        encode_frame(LsaFrame(b"x" * 100), max_frame=50)


@pytest.mark.parametrize(("kind", "body", "match"), [
    (9, b"", "unknown message type 9"),
    (MessageType.HELLO, b"\x01" * 5, "HELLO body must be 14"),
    (MessageType.HELLO, struct.pack("!BIIBI", 2, 1, 1000, 2, 0), "protocol version 2"),
    (MessageType.HELLO, struct.pack("!BIIBI", 1, 1, 1000, 7, 0), "unknown adjacency state 7"),
    (MessageType.HELLO, struct.pack("!BIIBI", 1, 0, 1000, 2, 0), "node id 0"),
    (MessageType.LSA, b"", "empty LSA"),
    (MessageType.PSNP, b"\x00", "truncated before its count"),
    (MessageType.PSNP, b"\x00\x02" + b"\x00" * 35, "needs 70 bytes"),
    (MessageType.PSNP, b"\xff\xff", "at most"),
    (MessageType.CSNP, b"\x00" * 30, "truncated before its key range"),
    (MessageType.CSNP, b"\x01" + b"\x00" * 20 + b"\x00" * 21 + b"\x00\x00", "starts after it ends"),
])
def test_each_malformed_body_names_what_is_wrong(kind, body, match):
    frame = struct.pack("!IB", 1 + len(body), kind) + body
    with pytest.raises(FrameError, match=match):
        FrameDecoder().feed(frame)


def test_unknown_version_is_an_unknown_message():
    body = struct.pack("!BIIBI", 9, 1, 1000, 2, 0)
    with pytest.raises(UnknownMessage):
        FrameDecoder().feed(struct.pack("!IB", 1 + len(body), MessageType.HELLO) + body)


def test_error_offset_is_the_stream_offset_of_the_bad_frame():
    good = encode_frame(Hello(1, 1000, AdjState.DOWN))
    bad = struct.pack("!IB", 1, 77)
    with pytest.raises(FrameError) as info:
        FrameDecoder().feed(good + bad)
    assert info.value.offset == len(good) + 5


@given(st.lists(entries, max_size=60, unique_by=lambda e: e.key), st.integers(1, 7))
def test_csnp_chunks_cover_the_key_space_without_gaps(items, per_frame):
    chunks = chunk_csnp(items, per_frame=per_frame)
    assert chunks[0].start == MIN_KEY and chunks[-1].end == MAX_KEY
    for a, b in zip(chunks, chunks[1:]):
        succ = int.from_bytes(bytes([a.end[0]]) + a.end[1], "big") + 1
        assert succ == int.from_bytes(bytes([b.start[0]]) + b.start[1], "big")
    listed = [e for c in chunks for e in c.entries]
    assert sorted(listed, key=lambda e: e.key) == sorted(items, key=lambda e: e.key)
    for c in chunks:
        assert all(c.start <= e.key <= c.end for e in c.entries)
        assert len(c.entries) <= per_frame


def test_request_entry_has_sequence_zero():
    key = (1, b"\x11" * 20)
    e = SnpEntry.request(key)
    assert e.key == key and e.sequence == 0 and e.lifetime == 0


def test_domain_frames_round_trip_and_malformed_ones_are_refused():
    from marketplace.peering.wire import OPEN, DomainOpen, DomainUpdate

    opened = DomainOpen(3, 1, 1_700_000_000, b"\x11" * 20, b"\x22" * 65)
    update = DomainUpdate(b"\x01\x02\x03")
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(opened) + encode_frame(update)) == [opened, update]
    assert opened.signed_bytes() == OPEN.pack(1, 3, 1, 1_700_000_000, b"\x11" * 20, b"\x22" * 65)[:-65]
    with pytest.raises(FrameError):
        encode_frame(DomainOpen(3, 1, 0, b"\x11" * 19, b"\x22" * 65))
    for body, kind in ((b"", MessageType.DOMAIN_UPDATE), (b"\x01" * 10, MessageType.DOMAIN_OPEN),
                       (OPEN.pack(1, 0, 1, 0, b"\x11" * 20, b"\x22" * 65), MessageType.DOMAIN_OPEN),
                       (OPEN.pack(9, 2, 1, 0, b"\x11" * 20, b"\x22" * 65), MessageType.DOMAIN_OPEN)):
        with pytest.raises(FrameError):
            FrameDecoder().feed(struct.pack("!IB", 1 + len(body), kind) + body)
