"""Server-sent event streams over the market feed: one order's transitions, and the whole market.

Each chain event is one record (``id: <block>-<log index>``, ``event:``, ``data:`` JSON), so a
client that sends the last id back as ``Last-Event-ID`` resumes with no repeat and no gap.
The generators poll the feed every ``POLL_S`` (its refresh is shared by every stream, chain
reads in the thread pool) and sleep with ``asyncio.sleep`` in between: the event loop never
waits on the chain. After ``KEEPALIVE_S`` of silence a ``: keep-alive`` comment keeps proxies
from closing the connection.

Invariant: an order stream ends, with ``event: end``, exactly when it has sent every event of
its order up to the one that made it final.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from marketplace.api.feed import MarketFeed, Snapshot, event_id
from marketplace.api.problems import PROBLEMS

log = logging.getLogger(__name__)

#: how often a stream looks for new events, and how long it stays silent before a keep-alive
POLL_S = 0.25
KEEPALIVE_S = 15.0
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "text/event-stream: one `id:`/`event:`/`data:` record per event",
          "content": {MEDIA_TYPE: {"schema": {"type": "string"}}}},
    **PROBLEMS,
}


def record(ev_id: str | None, name: str, data: Any) -> bytes:
    lines = []
    if ev_id is not None:
        lines.append(f"id: {ev_id}")
    lines.append(f"event: {name}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


class _Quiet:
    """When a stream last sent something: a keep-alive is due after ``KEEPALIVE_S`` of silence."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def sent(self) -> None:
        self.at = time.monotonic()

    def keepalive(self) -> bytes | None:
        if time.monotonic() - self.at > KEEPALIVE_S:
            self.sent()
            return b": keep-alive\n\n"
        return None


async def order_stream(request: Request, feed: MarketFeed, snap: Snapshot, order_id: int,
                       after: tuple[int, int]) -> AsyncIterator[bytes]:
    """Order ``order_id``'s transitions after position ``after``, live, then ``end`` once it is final."""
    pos, quiet, current = after, _Quiet(), snap
    log.info("order %d: event stream opened after %s", order_id, pos)
    while True:
        for ev in current.order_events.get(order_id, ()):
            if ev.position <= pos:
                continue
            pos = ev.position
            quiet.sent()
            yield record(event_id(ev), "transition", current.describe(ev))
        row = current.orders.get(order_id)
        if row is not None and row.state.final and pos >= (row.updated_block, -1):
            yield record(None, "end", {"order": order_id, "state": row.state.label})
            log.info("order %d: event stream ended at %s", order_id, row.state.name)
            return
        if await request.is_disconnected():
            return
        beat = quiet.keepalive()
        if beat is not None:
            yield beat
        await asyncio.sleep(POLL_S)
        current = await run_in_threadpool(feed.refresh)


async def market_stream(request: Request, feed: MarketFeed, snap: Snapshot,
                        after: tuple[int, int]) -> AsyncIterator[bytes]:
    """``hello``, then every market and registry event after position ``after``, live. Never ends."""
    pos, quiet, current = after, _Quiet(), snap
    yield record(None, "hello", {"market": feed.market, "block": current.block})
    while True:
        for ev in current.since(pos):
            pos = ev.position
            quiet.sent()
            yield record(event_id(ev), "chain", current.describe(ev))
        if await request.is_disconnected():
            return
        beat = quiet.keepalive()
        if beat is not None:
            yield beat
        await asyncio.sleep(POLL_S)
        current = await run_in_threadpool(feed.refresh)
