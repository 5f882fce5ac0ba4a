"""The peering wire format: length-prefixed frames carrying HELLO, LSA, PSNP and CSNP.

Every frame is ``length:u32 | type:u8 | body``, big-endian, where ``length`` counts the
type byte and the body. The first four messages mirror IS-IS on a point-to-point circuit:

- ``Hello``: protocol version, sender id, hold time, the sender's three-way adjacency
  state and the id of the neighbour it has heard (RFC 5303), so both ends agree on "up";
- ``LsaFrame``: one raw Compute LSA, exactly as the originator signed it (only its
  remaining lifetime differs), which the receiving LSDB decodes and checks itself;
- ``Psnp``: a list of LSA summaries that acknowledge LSAs received or request LSAs missing;
- ``Csnp``: every LSA summary a peer holds in the key range ``[start, end]``, sent when an
  adjacency comes up and periodically, so two databases find each other's differences.

Two more carry the inter-domain protocol between engines of different domains (BGP-like,
over the same circuit):

- ``DomainOpen``: the sender's domain (AS), the domain it addresses, a timestamp, its
  orchestrator's address and a 65-byte signature over those (``DomainOpen.signed_bytes``; checked by
  ``marketplace.federation.session``), so the
  receiver can check that the engine speaking holds the key registered for that domain
  before it takes a summary from it (BGP OPEN, with the identity check BGP leaves to TCP-AO);
- ``DomainUpdate``: one inter-domain UPDATE as ``marketplace.routing.domain_wire`` encodes it,
  carried opaque: the router decodes it item by item and refuses what is malformed.

A summary (``SnpEntry``) is ``type:u8 | originator:20 | sequence:u64 | lifetime:u32 |
checksum:u16`` (35 bytes). A request for an LSA the peer lacks altogether has sequence 0.

Invariants: ``encode_frame(decode(...))`` round-trips; the decoder never buffers more than
``max_frame`` bytes of one frame (the length prefix is checked first); any frame that does
not parse raises a ``FrameError`` naming the offset, never another exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from marketplace.peering.errors import FrameError, FrameTooLarge, UnknownMessage

PROTOCOL_VERSION = 1
#: 1 MiB: above any LSA (the codec caps those far lower) and any CSNP chunk we send.
MAX_FRAME = 1 << 20
ORIGINATOR_LEN = 20
KEY_LEN = 1 + ORIGINATOR_LEN
ENTRY = struct.Struct("!B20sQIH")
HELLO = struct.Struct("!BIIBI")
#: DomainOpen body: version, domain, receiver domain, unix time (s), orchestrator address, signature
OPEN = struct.Struct("!BIIQ20s65s")
OPEN_SIGNED = struct.Struct("!BIIQ20s")
#: entries per CSNP/PSNP frame, so that one summary frame stays far below MAX_FRAME
MAX_ENTRIES = 8192

Key = tuple[int, bytes]
MIN_KEY: Key = (0, b"\x00" * ORIGINATOR_LEN)
MAX_KEY: Key = (255, b"\xff" * ORIGINATOR_LEN)


class MessageType(IntEnum):
    HELLO = 1
    LSA = 2
    PSNP = 3
    CSNP = 4
    DOMAIN_UPDATE = 5
    DOMAIN_OPEN = 6


class AdjState(IntEnum):
    """Three-way adjacency states of RFC 5303; the integer values are wire codes."""

    UP = 0
    INITIALIZING = 1
    DOWN = 2


@dataclass(frozen=True, slots=True)
class Hello:
    node_id: int
    hold_ms: int
    state: AdjState
    #: the id of the peer this sender has heard on this circuit, 0 if none yet
    neighbor_id: int = 0
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class LsaFrame:
    raw: bytes


@dataclass(frozen=True, slots=True)
class SnpEntry:
    """A summary of one LSA: enough to tell which of two copies is newer without the body."""

    lsa_type: int
    originator: bytes
    sequence: int
    lifetime: int
    checksum: int

    @property
    def key(self) -> Key:
        return (self.lsa_type, self.originator)

    @classmethod
    def request(cls, key: Key) -> "SnpEntry":
        """The entry that asks for an LSA we do not hold at all."""
        return cls(key[0], key[1], 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Psnp:
    entries: tuple[SnpEntry, ...]


@dataclass(frozen=True, slots=True)
class Csnp:
    start: Key
    end: Key
    entries: tuple[SnpEntry, ...]


@dataclass(frozen=True, slots=True)
class DomainUpdate:
    """One inter-domain UPDATE (``domain_wire`` bytes), opaque to the transport."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class DomainOpen:
    """An engine's signed statement of its domain, sent when an adjacency comes up."""

    domain: int
    receiver: int
    timestamp: int
    address: bytes
    signature: bytes
    version: int = PROTOCOL_VERSION

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but the signature, as on the wire."""
        return OPEN_SIGNED.pack(self.version, self.domain, self.receiver, self.timestamp, self.address)


Message = Hello | LsaFrame | Psnp | Csnp | DomainUpdate | DomainOpen


def _check_entry(e: SnpEntry) -> None:
    if len(e.originator) != ORIGINATOR_LEN:
        raise FrameError(f"originator must be {ORIGINATOR_LEN} bytes, got {len(e.originator)}", field="originator")


def _entries(entries: tuple[SnpEntry, ...]) -> bytes:
    if len(entries) > MAX_ENTRIES:
        raise FrameError(f"{len(entries)} entries in one frame, at most {MAX_ENTRIES}", field="entries")
    out = bytearray(struct.pack("!H", len(entries)))
    for e in entries:
        _check_entry(e)
        out += ENTRY.pack(e.lsa_type, e.originator, e.sequence, e.lifetime, e.checksum)
    return bytes(out)


def _key(k: Key) -> bytes:
    if len(k[1]) != ORIGINATOR_LEN:
        raise FrameError(f"key originator must be {ORIGINATOR_LEN} bytes", field="key")
    return bytes([k[0]]) + k[1]


def encode_body(msg: Message) -> tuple[MessageType, bytes]:
    if isinstance(msg, Hello):
        return MessageType.HELLO, HELLO.pack(msg.version, msg.node_id, msg.hold_ms, int(msg.state), msg.neighbor_id)
    if isinstance(msg, LsaFrame):
        return MessageType.LSA, bytes(msg.raw)
    if isinstance(msg, Psnp):
        return MessageType.PSNP, _entries(msg.entries)
    if isinstance(msg, Csnp):
        return MessageType.CSNP, _key(msg.start) + _key(msg.end) + _entries(msg.entries)
    if isinstance(msg, DomainUpdate):
        return MessageType.DOMAIN_UPDATE, bytes(msg.raw)
    if isinstance(msg, DomainOpen):
        if len(msg.address) != ORIGINATOR_LEN or len(msg.signature) != 65:
            raise FrameError("DomainOpen needs a 20-byte address and a 65-byte signature", field="signature")
        return MessageType.DOMAIN_OPEN, OPEN.pack(msg.version, msg.domain, msg.receiver, msg.timestamp,
                                                  msg.address, msg.signature)
    raise TypeError(f"not a peering message: {msg!r}")


def encode_frame(msg: Message, *, max_frame: int = MAX_FRAME) -> bytes:
    kind, body = encode_body(msg)
    length = 1 + len(body)
    if length > max_frame:
        raise FrameTooLarge(f"{kind.name} frame of {length} bytes exceeds the limit of {max_frame}",
                            offset=0, field="length")
    return struct.pack("!IB", length, kind) + body


def _decode_entries(body: bytes, at: int) -> tuple[tuple[SnpEntry, ...], int]:
    if len(body) < at + 2:
        raise FrameError("summary list truncated before its count", offset=at)
    (count,) = struct.unpack_from("!H", body, at)
    at += 2
    if count > MAX_ENTRIES:
        raise FrameError(f"{count} entries in one frame, at most {MAX_ENTRIES}", offset=at - 2)
    if len(body) != at + count * ENTRY.size:
        raise FrameError(f"summary list of {count} entries needs {count * ENTRY.size} bytes, "
                         f"frame has {len(body) - at}", offset=at)
    entries = tuple(SnpEntry(*ENTRY.unpack_from(body, at + i * ENTRY.size)) for i in range(count))
    return entries, at + count * ENTRY.size


def decode_body(kind: int, body: bytes) -> Message:
    """Decode one frame body; ``FrameError`` (offset within the body) on anything malformed."""
    if kind == MessageType.HELLO:
        if len(body) != HELLO.size:
            raise FrameError(f"HELLO body must be {HELLO.size} bytes, got {len(body)}", offset=0)
        version, node_id, hold_ms, state, neighbor = HELLO.unpack(body)
        if version != PROTOCOL_VERSION:
            raise UnknownMessage(f"protocol version {version}, this peer speaks {PROTOCOL_VERSION}", offset=0)
        try:
            adj = AdjState(state)
        except ValueError:
            raise FrameError(f"unknown adjacency state {state}", offset=9) from None
        if node_id == 0:
            raise FrameError("HELLO from node id 0 (ids start at 1)", offset=1)
        return Hello(node_id, hold_ms, adj, neighbor, version)
    if kind == MessageType.LSA:
        if not body:
            raise FrameError("empty LSA frame", offset=0)
        return LsaFrame(bytes(body))
    if kind == MessageType.PSNP:
        entries, _ = _decode_entries(body, 0)
        return Psnp(entries)
    if kind == MessageType.CSNP:
        if len(body) < 2 * KEY_LEN:
            raise FrameError("CSNP truncated before its key range", offset=0)
        start = (body[0], bytes(body[1:KEY_LEN]))
        end = (body[KEY_LEN], bytes(body[KEY_LEN + 1:2 * KEY_LEN]))
        if start > end:
            raise FrameError("CSNP range starts after it ends", offset=0)
        entries, _ = _decode_entries(body, 2 * KEY_LEN)
        return Csnp(start, end, entries)
    if kind == MessageType.DOMAIN_UPDATE:
        if not body:
            raise FrameError("empty DomainUpdate frame", offset=0)
        return DomainUpdate(bytes(body))
    if kind == MessageType.DOMAIN_OPEN:
        if len(body) != OPEN.size:
            raise FrameError(f"DomainOpen body must be {OPEN.size} bytes, got {len(body)}", offset=0)
        version, domain, receiver, stamp, address, signature = OPEN.unpack(body)
        if version != PROTOCOL_VERSION:
            raise UnknownMessage(f"protocol version {version}, this peer speaks {PROTOCOL_VERSION}", offset=0)
        if domain == 0 or receiver == 0:
            raise FrameError("DomainOpen names domain 0 (domains start at 1)", offset=1)
        return DomainOpen(domain, receiver, stamp, address, signature, version)
    raise UnknownMessage(f"unknown message type {kind}", offset=0)


class FrameDecoder:
    """Incremental decoder: feed it whatever the socket returned, get whole messages back.

    After a ``FrameError`` the decoder is poisoned (the stream has lost its framing) and
    every later ``feed`` raises again; the caller closes the connection.
    """

    __slots__ = ("_buf", "_max", "_error", "consumed")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._error: FrameError | None = None
        #: bytes consumed by whole frames so far, so error offsets are stream offsets
        self.consumed = 0

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= 4:
            (length,) = struct.unpack_from("!I", self._buf, 0)
            if length == 0 or length > self._max:
                self._error = (FrameTooLarge if length else FrameError)(
                    f"frame length {length} outside 1..{self._max}", offset=self.consumed, field="length")
                raise self._error
            if len(self._buf) < 4 + length:
                break
            kind = self._buf[4]
            body = bytes(self._buf[5:4 + length])
            try:
                out.append(decode_body(kind, body))
            except FrameError as exc:
                self._error = type(exc)(exc.message, offset=self.consumed + 5 + (exc.offset or 0))
                raise self._error from None
            del self._buf[:4 + length]
            self.consumed += 4 + length
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered of a frame not yet complete."""
        return len(self._buf)


def chunk_csnp(entries: list[SnpEntry], per_frame: int = MAX_ENTRIES) -> list[Csnp]:
    """Cover the whole key space with CSNPs of at most ``per_frame`` sorted entries each.

    Ranges are contiguous and together span ``MIN_KEY..MAX_KEY``, so a receiver can tell
    that an LSA it holds and no CSNP lists is one the sender lacks.
    """
    entries = sorted(entries, key=lambda e: e.key)
    if not entries:
        return [Csnp(MIN_KEY, MAX_KEY, ())]
    out: list[Csnp] = []
    for i in range(0, len(entries), per_frame):
        part = entries[i:i + per_frame]
        start = MIN_KEY if i == 0 else part[0].key
        nxt = i + per_frame
        # a range ends just before the next chunk's first key, so no key falls between ranges
        end = MAX_KEY if nxt >= len(entries) else _key_before(entries[nxt].key)
        out.append(Csnp(start, end, tuple(part)))
    return out


def _key_before(key: Key) -> Key:
    as_int = int.from_bytes(_key(key), "big") - 1
    raw = as_int.to_bytes(KEY_LEN, "big")
    return (raw[0], raw[1:])
