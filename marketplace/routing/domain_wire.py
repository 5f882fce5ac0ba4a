"""The wire form of one inter-domain UPDATE (``domains.Message``), for a transport between engines.

Big-endian, in the style of the peering frames (a transport wraps the body in its own frame)::

    update     = version:u8 | sender:u32 | receiver:u32 | count:u16 | item*count
    withdrawal = 1:u8 | origin:u32 | class:u8 | has_seq:u8 | seq:u64
    summary    = 2:u8 | origin:u32 | class:u8 | total:f64 | free:f64 | min_price:f64
                 | min_latency_ms:f64 | seq:u64 | sender_class:u8 | path_len:u8 | as:u32*path_len

``decode_update`` never raises for a bad item: each item's length is known from its header, so
an item whose values are impossible (free above total, an unknown device class, a path that
does not end at the origin...) is skipped and reported as a ``WireProblem`` with its origin and
class when those could be read, and the rest of the UPDATE is still used. What cannot be framed
(a truncated item, a wrong version, trailing bytes) ends the decoding there with a problem.
``receive_wire`` feeds a router: the good items through ``receive``, each problem through
``refuse_malformed`` (counted, logged, and treat-as-withdraw for the key, RFC 7606).

Invariants: ``decode_update(encode_update(m))`` gives ``m`` back with no problems; decoding
arbitrary bytes returns or raises ``DomainError`` (only for an unreadable header), nothing else.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from marketplace.errors import ConaError
from marketplace.resources.model import DeviceClass
from marketplace.routing.domain_values import DomainSummary, Item, Key, Message, Withdrawal
from marketplace.routing.domains import DomainRouter
from marketplace.routing.errors import DomainError

VERSION = 1
HEADER = struct.Struct("!BIIH")
WITHDRAWAL = struct.Struct("!IBBQ")
SUMMARY = struct.Struct("!IBddddQBB")
_KIND_WITHDRAWAL, _KIND_SUMMARY = 1, 2
MAX_ITEMS = 4096
MAX_PATH = 255


@dataclass(frozen=True, slots=True)
class WireProblem:
    """An item that could not be used: ``key`` when its origin and class were readable."""

    offset: int
    reason: str
    key: Key | None = None


def encode_update(msg: Message) -> bytes:
    if len(msg.body) > MAX_ITEMS:
        raise DomainError(f"an UPDATE carries at most {MAX_ITEMS} items, got {len(msg.body)}", field="body")
    out = [HEADER.pack(VERSION, msg.sender, msg.receiver, len(msg.body))]
    for item in msg.body:
        if isinstance(item, Withdrawal):
            out.append(bytes([_KIND_WITHDRAWAL]) + WITHDRAWAL.pack(
                item.origin_as, int(item.device_class), item.seq is not None, item.seq or 0))
        elif isinstance(item, DomainSummary):
            if len(item.as_path) > MAX_PATH:
                raise DomainError(f"AS path of {len(item.as_path)} hops, at most {MAX_PATH} on the wire",
                                  field="as_path")
            out.append(bytes([_KIND_SUMMARY]) + SUMMARY.pack(
                item.origin_as, int(item.device_class), item.total, item.free, item.min_price, item.min_latency_ms,
                item.seq, int(item.sender_class), len(item.as_path)))
            out.append(struct.pack(f"!{len(item.as_path)}I", *item.as_path))
        else:
            raise DomainError(f"not an UPDATE item: {type(item).__name__}", field="body")
    return b"".join(out)


def decode_update(data: bytes) -> tuple[Message, list[WireProblem]]:
    """The UPDATE with the items that decoded, and the problems of those that did not."""
    if len(data) < HEADER.size:
        raise DomainError(f"UPDATE of {len(data)} bytes is shorter than its {HEADER.size}-byte header", offset=0)
    version, sender, receiver, count = HEADER.unpack_from(data, 0)
    if version != VERSION:
        raise DomainError(f"UPDATE version {version}, this router speaks {VERSION}", offset=0)
    if count > MAX_ITEMS:
        raise DomainError(f"UPDATE announces {count} items, at most {MAX_ITEMS}", offset=HEADER.size - 2)
    items: list[Item] = []
    problems: list[WireProblem] = []
    at = HEADER.size
    for _ in range(count):
        item, at, problem = _decode_item(data, at)
        if problem is not None:
            problems.append(problem)
            if item is None and at < 0:
                return Message(sender, receiver, tuple(items)), problems
        if item is not None:
            items.append(item)
    if at != len(data):
        problems.append(WireProblem(at, f"{len(data) - at} bytes after the last item"))
    return Message(sender, receiver, tuple(items)), problems


def _decode_item(data: bytes, at: int) -> tuple[Item | None, int, WireProblem | None]:
    """(item or None, next offset or -1 when framing is lost, problem or None)."""
    start = at
    if at >= len(data):
        return None, -1, WireProblem(at, "truncated before an item")
    kind = data[at]
    at += 1
    if kind == _KIND_WITHDRAWAL:
        if len(data) < at + WITHDRAWAL.size:
            return None, -1, WireProblem(start, "truncated withdrawal")
        origin, cls, has_seq, seq = WITHDRAWAL.unpack_from(data, at)
        nxt = at + WITHDRAWAL.size
        try:
            return Withdrawal(origin, DeviceClass(cls), seq if has_seq else None), nxt, None
        except (ValueError, ConaError) as e:
            return None, nxt, WireProblem(start, f"bad withdrawal: {e}", _key(origin, cls))
    if kind == _KIND_SUMMARY:
        if len(data) < at + SUMMARY.size:
            return None, -1, WireProblem(start, "truncated summary")
        origin, cls, total, free, price, latency, seq, sender_class, n = SUMMARY.unpack_from(data, at)
        at += SUMMARY.size
        if len(data) < at + 4 * n:
            return None, -1, WireProblem(start, "truncated AS path")
        path = struct.unpack_from(f"!{n}I", data, at)
        nxt = at + 4 * n
        if not all(math.isfinite(v) for v in (total, free, price, latency)):
            return None, nxt, WireProblem(start, "a value is not a finite number", _key(origin, cls))
        try:
            return DomainSummary(origin, DeviceClass(cls), total, free, price, path, latency, seq,
                                 sender_class), nxt, None
        except (ValueError, ConaError) as e:
            return None, nxt, WireProblem(start, f"bad summary: {e}", _key(origin, cls))
    return None, -1, WireProblem(start, f"unknown item kind {kind}")


def _key(origin: int, cls: int) -> Key | None:
    try:
        return (origin, DeviceClass(cls))
    except ValueError:
        return None


def receive_wire(router: DomainRouter, data: bytes, now: float, *, peer: int) -> list[Message]:
    """Feed one UPDATE received on the session authenticated as AS ``peer`` to ``router``."""
    try:
        msg, problems = decode_update(data)
    except DomainError as e:
        return router.refuse_malformed(peer, None, e.message, now)
    out = router.receive(msg, now, peer=peer) if msg.body or not problems else []
    if msg.sender != peer:
        return out  # refused by receive as peer-as-mismatch: its problems are not that neighbour's
    for p in problems:
        out += router.refuse_malformed(peer, p.key, f"offset {p.offset}: {p.reason}", now)
    return out
