"""``GET /v1/events``: server-sent events of every market and registry event, a backlog first, then live.

The dashboard's feed: ``event: hello`` (``{market, block}``), the last ``backlog`` events, then
each event as it is indexed. ``Last-Event-ID`` resumes after that event instead of the backlog.
Never ends (see ``marketplace.api.sse``).
"""

from __future__ import annotations

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from marketplace.api import sse
from marketplace.api.deps import Svc
from marketplace.api.feed import parse_event_id

router = APIRouter(prefix="/v1", tags=["events"])


@router.get("/events", response_class=StreamingResponse, responses=sse.RESPONSES,
            summary="Server-sent events: every market and registry event, a backlog first, then live")
async def market_events(request: Request, services: Svc,
                        backlog: int = Query(100, ge=0, le=5000, description="how many past events to send first"),
                        last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    after = parse_event_id(last_event_id) if last_event_id else None
    live = services.require_live()
    snap = await live.snapshot()  # a snapshot at most MIN_REFRESH_S old: the stream catches up from it
    if after is None:
        past = snap.events[-backlog:] if backlog else ()
        after = (past[0].block_number, past[0].log_index - 1) if past else (
            snap.events[-1].position if snap.events else (-1, -1))
    return StreamingResponse(sse.market_stream(request, live, snap, after), media_type=sse.MEDIA_TYPE,
                             headers=sse.HEADERS)
