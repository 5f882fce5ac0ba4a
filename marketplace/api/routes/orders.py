"""The orders (``/v1/orders``): the order book, one order, its spec, result, explanation and live events,
placing one, and the buyer's own cancel and dispute.

Always mounted (``router``): the order book (``GET /v1/orders``, from chain events alone,
``marketplace.api.orderbook``), an order's server-sent events (``marketplace.api.sse``) and
the relay of the buyer's signed cancel/dispute (``marketplace.api.relay``). Mounted when this
process runs the engine (``engine_router``): placing an order, one order's view (chain state
+ spec + the engine's status), its spec, result (up and down) and the matcher's explanation.

Hot reads answer from the event loop when they can: a kept order-book page whose snapshot is
at the head (the answer a refresh would give: it compares the same two numbers; on the embedded
chain the head is read without I/O or the chain lock, and skipping the thread hop took the
page's p99 under ``cona bench api`` from 19 to about 5 ms), a kept order view
(``marketplace.api.readmodels``). Everything that may wait on the chain or the engine's
lock runs in the thread pool (plain ``def`` handlers, or ``run_in_threadpool``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from marketplace.api import sse
from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import EngineDep, ReadModelsDep, RelayMarketDep, Svc
from marketplace.api.feed import MarketFeed, parse_event_id
from marketplace.api.orderbook import MAX_LIMIT, STATE_NAMES, OrderPages, PageQuery, decode_cursor, parse_state
from marketplace.api.problems import PROBLEMS
from marketplace.api.relay import relay
from marketplace.api.schemas import (Explanation, OrderIn, OrderPlaced, OrdersPage, OrderSpec, OrderView, RawTxIn,
                                     Relayed, ResultStored)
from marketplace.chain.audit import check_address
from marketplace.errors import InputError, NotFound
from marketplace.limits import MAX_ORDER_BODY_BYTES, MAX_RESULT_BODY_BYTES, MAX_SMALL_BODY_BYTES

router = APIRouter(prefix="/v1", tags=["orders"])
engine_router = APIRouter(prefix="/v1", tags=["orders"])

JSON = "application/json"
OCTETS = "application/octet-stream"
_BYTES = {"schema": {"type": "string", "format": "binary"}}
_FORBIDDEN = {403: {**PROBLEMS[409], "description": "Signed by someone who does not own the order"}}
#: what a refused placement answers (``engine.placing``: the contract's error, nothing sent)
_REFUSED = {402: {**PROBLEMS[409], "description": "The buyer's deposit in the market does not cover the escrow"},
            409: {**PROBLEMS[409], "description": "The intent's nonce is not the buyer's next, or the "
                                                  "Idempotency-Key was used for another order of this buyer"},
            503: {**PROBLEMS[503], "description": "The chain is unavailable, the market is paused, or too many "
                                                  "orders are waiting (retry with the same Idempotency-Key)"}}


class OctetStream(Response):
    media_type = OCTETS


# ---------------------------------------------------------------------------- the order book and streams


@router.get("/orders", response_model=OrdersPage, responses=PROBLEMS,
            summary="The on-chain orders, newest first, with cursor pagination and filters")
async def list_orders(services: Svc,
                      cursor: str | None = Query(None, max_length=64, description="next_cursor of the previous page"),
                      limit: int = Query(50, ge=1, le=MAX_LIMIT),
                      buyer: str | None = Query(None, description="only this buyer's orders (0x address)"),
                      provider: str | None = Query(None, description="only orders whose current provider is this"),
                      state: str | None = Query(None, description=f"one of {', '.join(STATE_NAMES)}")) -> Response:
    q = PageQuery(decode_cursor(cursor) if cursor else None, limit,
                  check_address(buyer, "buyer") if buyer else None,
                  check_address(provider, "provider") if provider else None,
                  parse_state(state) if state is not None else None)
    feed = services.require_feed()
    pages = services.order_pages
    # served from the event loop when the kept page's snapshot is at the head: the answer a
    # refresh would give (it compares the same two numbers), without its thread-pool hop
    snap = feed.peek(float("inf"))
    body = pages.get(q, snap) if snap is not None else None
    if body is None or feed.local_head() != snap.block:
        body = await run_in_threadpool(_page, feed, pages, q)
    return Response(body, media_type=JSON)


def _page(feed: MarketFeed, pages: OrderPages, q: PageQuery) -> bytes:
    return pages.page(feed.refresh(max_age=0), q)


@router.get("/orders/{order_id}/events", response_class=StreamingResponse, responses=sse.RESPONSES,
            summary="Server-sent events: the order's on-chain transitions as they are indexed; ends when final")
async def order_events(order_id: int, request: Request, services: Svc,
                       last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    after = parse_event_id(last_event_id) if last_event_id else (-1, -1)
    if order_id < 1:
        raise InputError(f"an order id is a positive integer, got {order_id}", field="order_id")
    live = services.require_live()
    snap = await live.snapshot()
    if order_id not in snap.orders:  # placed since? read our writes: a refresh now, before a 404
        snap = await run_in_threadpool(live.feed.refresh, max_age=0)
    if order_id not in snap.orders:
        raise NotFound(f"no order {order_id} on market {live.feed.market} (as of block {snap.block})",
                       field="order_id")
    return StreamingResponse(sse.order_stream(request, live, snap, order_id, after), media_type=sse.MEDIA_TYPE,
                             headers=sse.HEADERS)


@router.post("/orders/{order_id}/cancel", response_model=Relayed, response_model_exclude_unset=True,
             responses=_FORBIDDEN, openapi_extra=declare_body_limit(MAX_SMALL_BODY_BYTES),
             summary="Relay the buyer's own signed ComputeMarket.cancel(id)")
def post_cancel(order_id: int, body: RawTxIn, market: RelayMarketDep) -> dict[str, Any]:
    return relay(market, "cancel", order_id, body.raw_tx)


@router.post("/orders/{order_id}/dispute", response_model=Relayed, response_model_exclude_unset=True,
             responses=_FORBIDDEN, openapi_extra=declare_body_limit(MAX_SMALL_BODY_BYTES),
             summary="Relay the buyer's own signed ComputeMarket.dispute(id)")
def post_dispute(order_id: int, body: RawTxIn, market: RelayMarketDep) -> dict[str, Any]:
    return relay(market, "dispute", order_id, body.raw_tx)


# ---------------------------------------------------------------------------- the engine's


@engine_router.post("/orders", status_code=201, response_model=OrderPlaced, responses=_REFUSED,
                    openapi_extra=declare_body_limit(MAX_ORDER_BODY_BYTES),
                    summary="Place a signed order (or attach a spec to the buyer's own tx)")
def post_order(engine: EngineDep, body: OrderIn,
               idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    if body.tx_hash is not None:
        oid = engine.place_order_tx(body.tx_hash, body.spec)
    else:
        if body.intent is None:
            raise InputError("intent is required (or tx_hash for an order you placed yourself)", field="intent")
        if body.signature is None:
            raise InputError("signature is required with an intent", field="signature")
        oid = engine.place_order(body.intent, body.signature, body.spec, body.tier_proof, idempotency_key)
    return {"id": oid, "href": f"/v1/orders/{oid}"}


@engine_router.get("/orders/{order_id}", response_model=OrderView,
                   summary="An order: chain state, spec, and the engine's status and reasons")
async def get_order(order_id: int, models: ReadModelsDep) -> JSONResponse:
    doc = models.peek_order(order_id)
    if doc is None:  # a miss reads the chain: in the thread pool, never on the event loop
        doc = await run_in_threadpool(models.order_view, order_id)
    return JSONResponse(doc)


@engine_router.get("/orders/{order_id}/spec", response_model=OrderSpec, response_model_exclude_unset=True,
                   summary="The order's spec document")
def get_spec(order_id: int, engine: EngineDep) -> dict[str, Any]:
    return engine.spec_of(order_id)


@engine_router.post("/orders/{order_id}/result", status_code=201, response_model=ResultStored,
                    openapi_extra=declare_body_limit(MAX_RESULT_BODY_BYTES, json_depth=None),
                    summary="The provider uploads the result bytes")
def post_result(order_id: int, engine: EngineDep, body: bytes = Body(..., media_type=OCTETS)) -> dict[str, Any]:
    return {"id": order_id, "result": engine.submit_result(order_id, body)}


@engine_router.get("/orders/{order_id}/result", response_class=OctetStream,
                   responses={200: {"content": {OCTETS: _BYTES}}},
                   summary="The result bytes (their keccak is the on-chain result hash)")
def get_result(order_id: int, engine: EngineDep) -> Response:
    return Response(engine.result(order_id), media_type=OCTETS)


@engine_router.get("/orders/{order_id}/explain", response_model=Explanation, response_model_exclude_unset=True,
                   summary="Why the order was (not) matched: per provider")
def get_explain(order_id: int, engine: EngineDep) -> dict[str, Any]:
    return engine.explain(order_id)
