"""Server-sent event streams over the market feed: one order's transitions, and the whole market.

Each chain event is one record (``id: <block>-<log index>``, ``event:``, ``data:`` JSON), so a
client that sends the last id back as ``Last-Event-ID`` resumes with no repeat and no gap.
The generators poll the feed every ``POLL_S`` through one ``SharedRefresh`` per application: a
snapshot younger than the feed's ``MIN_REFRESH_S`` is taken as it is, on the event loop, and
otherwise one refresh runs in the thread pool while every stream that needs it awaits that one
(so 200 subscribers cost a refresh every ``MIN_REFRESH_S``, not 800 thread-pool hops a second
queueing behind each other and in front of new subscribers). They sleep with ``asyncio.sleep``
in between: the event loop never waits on the chain. After ``KEEPALIVE_S`` of silence a
``: keep-alive`` comment keeps proxies from closing the connection.

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

from marketplace.api.feed import MIN_REFRESH_S, MarketFeed, Snapshot, event_id
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


class SharedRefresh:
    """The feed's snapshot for the streams of one application (one event loop): kept if fresh, else
    one refresh in the thread pool that every caller awaits (single flight)."""

    def __init__(self, feed: MarketFeed) -> None:
        self.feed = feed
        self._inflight: asyncio.Future[Snapshot] | None = None

    async def snapshot(self) -> Snapshot:
        snap = self.feed.peek(MIN_REFRESH_S)
        if snap is not None:
            return snap
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(run_in_threadpool(self.feed.refresh))
            self._inflight.add_done_callback(self._done)
        # shielded: a client that goes away does not cancel the refresh the others await
        return await asyncio.shield(self._inflight)

    def _done(self, _: Any) -> None:
        self._inflight = None


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


async def order_stream(request: Request, live: SharedRefresh, snap: Snapshot, order_id: int,
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
        current = await live.snapshot()


async def market_stream(request: Request, live: SharedRefresh, snap: Snapshot,
                        after: tuple[int, int]) -> AsyncIterator[bytes]:
    """``hello``, then every market and registry event after position ``after``, live. Never ends."""
    pos, quiet, current = after, _Quiet(), snap
    yield record(None, "hello", {"market": live.feed.market, "block": current.block})
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
        current = await live.snapshot()
