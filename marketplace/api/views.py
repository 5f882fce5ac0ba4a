"""Read views for buyers and the dashboard: the topology, the order book, and live event streams.

- ``GET /v1/topology``: the network the market runs on (nodes, links with latency and
  bandwidth) and the providers attached to it with their load (from the engine when this
  process runs one, else the registry's providers with no attachment); ``?format=geojson``
  gives a GeoJSON FeatureCollection of the nodes and links that have coordinates.
- ``GET /v1/orders``: the on-chain orders, newest first, with cursor pagination
  (``?cursor=&limit=``) and filters (``buyer``, ``state``, ``provider``).
- ``GET /v1/orders/{id}/events``: server-sent events, one per on-chain transition of the
  order as it is indexed (block, tx hash, log index, args, state after); the stream ends
  after the order reaches a final state. ``Last-Event-ID`` resumes after that event.
- ``GET /v1/events``: server-sent events of every market and registry event (the
  dashboard's feed), a backlog first, then live.

Everything here comes from the chain alone, through the ``MarketFeed``: one event index
per application (the contracts' logs, as the auditor reads them) and the order table
replayed from it. Chain reads block, so handlers run them in the thread pool and SSE
generators sleep with ``asyncio.sleep`` between polls: the event loop never waits on
the chain.

Read costs (``cona bench api``: 1,000 reads/s on two cores): the order-book page is served from
encoded bytes kept per snapshot and query (a snapshot is replaced only by new events), so a
repeated read costs the one ``eth_blockNumber`` of its freshness check and no rebuilding or
response validation; concurrent readers share one refresh that began after they asked. On the
embedded chain that check reads the head without I/O or the chain lock, so a kept page whose
snapshot is at the head is served from the event loop: no thread hop, and no wait behind a
transaction executing in py-evm (measured: the page's p99 went from 19 to about 5 ms). The
topology document is kept as bytes until the providers or the block change; with an engine in
the process its providers are the engine's kept list (``marketplace.api.engine.ReadModels``,
``PROVIDERS_TTL_S``) and its block may be ``MIN_REFRESH_S`` old, so a kept answer is served
from the event loop without a thread hop; without an engine it is as fresh as the order book.

Invariants: an event's id is ``<block>-<log index>``, its position in chain order, so a
resumed stream neither repeats nor skips an event of the canonical chain; the order
cursor is the id of the last order returned, and since pages walk ids downwards, orders
placed while a client pages never shift the pages it has yet to read.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Literal

from eth_utils import to_checksum_address
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketplace.chain.audit import MARKET, REGISTRY, check_address
from marketplace.chain.deploy import ZERO
from marketplace.chain.indexer import EventIndexer, IndexedEvent
from marketplace.chain.market import OrderState
from marketplace.errors import ChainUnavailable, InputError, NotFound
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["views"])

#: a feed re-reads the chain at most this often, however many clients poll it (seconds)
MIN_REFRESH_S = 0.2
#: how often an SSE stream looks for new events, and how long it stays silent before a keep-alive
POLL_S = 0.25
KEEPALIVE_S = 15.0
MAX_LIMIT = 200
#: encoded order-book pages kept (one per query; the oldest dropped first)
MAX_PAGES = 256
_CURSOR_PREFIX = "order:"
_STATE_NAMES = [s.name.lower() for s in OrderState if s is not OrderState.NONE]


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order as its events leave it: the order book's row, never the engine's memory."""

    id: int
    buyer: str
    state: OrderState
    device_class: int
    units: int
    duration: int
    tier: int
    max_price: int
    escrow: int
    provider: str = ZERO
    price: int = 0
    placed_block: int = 0
    placed_at: int = 0
    placed_tx: str = ""
    updated_block: int = 0
    updated_at: int = 0
    #: (state name, block timestamp) for each transition: the lease timeline
    timeline: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        try:
            dc = DeviceClass(self.device_class).name
        except ValueError:
            dc = str(self.device_class)
        return {
            "id": self.id, "buyer": self.buyer, "state": self.state.name.lower(), "final": self.state.final,
            "device_class": dc, "units": self.units, "duration": self.duration, "tier": self.tier,
            "max_price": str(self.max_price), "escrow": str(self.escrow),
            "provider": None if self.provider == ZERO else self.provider,
            "price": str(self.price), "placed_block": self.placed_block, "placed_at": self.placed_at,
            "placed_tx": self.placed_tx, "updated_block": self.updated_block, "updated_at": self.updated_at,
            "timeline": [{"state": s.lower(), "at": t} for s, t in self.timeline],
        }


def event_id(ev: IndexedEvent) -> str:
    return f"{ev.block_number}-{ev.log_index}"


def parse_event_id(raw: str, name: str = "Last-Event-ID") -> tuple[int, int]:
    try:
        block, index = raw.strip().split("-")
        pos = (int(block), int(index))
    except ValueError:
        raise InputError(f"{name} must be <block>-<log index> as sent in an event's id, got {raw!r}",
                         field=name) from None
    if pos[0] < 0 or pos[1] < 0:
        raise InputError(f"{name} must not be negative, got {raw!r}", field=name)
    return pos


def _state_after(name: str, args: dict[str, Any], before: OrderState) -> OrderState:
    """The contract's state machine, by event (see ``marketplace.chain.audit.ORDER_TRANSITIONS``)."""
    simple = {"OrderPlaced": OrderState.OPEN, "Assigned": OrderState.ASSIGNED, "Accepted": OrderState.RUNNING,
              "Completed": OrderState.COMPLETED, "Settled": OrderState.SETTLED, "Cancelled": OrderState.CANCELLED,
              "Disputed": OrderState.DISPUTED, "Resolved": OrderState.RESOLVED}
    if name in simple:
        return simple[name]
    if name in ("AcceptanceTimedOut", "OrderFailed"):
        # the contract hands the lease to the next backup, or refunds when none is left
        return OrderState.REFUNDED if to_checksum_address(args["next"]) == ZERO else OrderState.ASSIGNED
    return before


def _apply(row: OrderRow, ev: IndexedEvent) -> tuple[OrderRow, OrderState]:
    a = ev.args
    state = _state_after(ev.name, a, row.state)
    changes: dict[str, Any] = {"state": state, "updated_block": ev.block_number, "updated_at": ev.timestamp,
                               "timeline": row.timeline + ((state.name, ev.timestamp),)}
    if ev.name == "Assigned":
        changes.update(provider=to_checksum_address(a["provider"]), price=int(a["price"]))
    elif ev.name in ("AcceptanceTimedOut", "OrderFailed") and state is OrderState.ASSIGNED:
        changes.update(provider=to_checksum_address(a["next"]))
    return replace(row, **changes), state


ORDER_EVENTS = ("OrderPlaced", "Assigned", "Accepted", "Completed", "Settled", "Cancelled", "AcceptanceTimedOut",
                "OrderFailed", "Disputed", "Resolved")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the feed knows at one index cursor: every event in chain order, and the order book."""

    block: int
    events: tuple[IndexedEvent, ...] = ()
    #: the order's state after each event that moved an order, keyed by event id
    states: dict[str, OrderState] = field(default_factory=dict)
    orders: dict[int, OrderRow] = field(default_factory=dict)
    order_events: dict[int, tuple[IndexedEvent, ...]] = field(default_factory=dict)
    positions: tuple[tuple[int, int], ...] = ()

    def since(self, pos: tuple[int, int]) -> tuple[IndexedEvent, ...]:
        """The events after position ``pos`` (block, log index), in chain order."""
        return self.events[bisect.bisect_right(self.positions, pos):]

    @classmethod
    def build(cls, block: int, events: list[IndexedEvent]) -> "Snapshot":
        orders: dict[int, OrderRow] = {}
        states: dict[str, OrderState] = {}
        by_order: dict[int, list[IndexedEvent]] = {}
        for ev in events:
            if ev.contract != MARKET or ev.name not in ORDER_EVENTS:
                continue
            a = ev.args
            oid = int(a["order"])
            if ev.name == "OrderPlaced":
                row = OrderRow(oid, to_checksum_address(a["buyer"]), OrderState.NONE, int(a["deviceClass"]),
                               int(a["units"]), int(a["duration"]), int(a["tier"]), int(a["maxPrice"]),
                               int(a["escrow"]), placed_block=ev.block_number, placed_at=ev.timestamp,
                               placed_tx=ev.tx_hash)
            elif oid in orders:
                row = orders[oid]
            else:
                log.warning("event %s of order %d at block %d precedes its OrderPlaced in the index",
                            ev.name, oid, ev.block_number)
                continue
            orders[oid], states[event_id(ev)] = _apply(row, ev)
            by_order.setdefault(oid, []).append(ev)
        return cls(block, tuple(events), states, orders, {k: tuple(v) for k, v in by_order.items()},
                   tuple((e.block_number, e.log_index) for e in events))

    def describe(self, ev: IndexedEvent) -> dict[str, Any]:
        """An event as the streams send it."""
        out = ev.to_dict()
        out["id"] = event_id(ev)
        for key in ("order", "provider", "account"):
            if key in ev.args:
                out[key] = int(ev.args[key]) if key == "order" else ev.args[key]
        state = self.states.get(out["id"])
        if state is not None:
            out["state"] = state.name.lower()
            out["final"] = state.final
        return out


class MarketFeed:
    """The market's events for the read views: one event index, refreshed at most every ``MIN_REFRESH_S``.

    Thread-safe: ``refresh`` and ``snapshot`` may be called from any thread (the thread pool
    and every SSE stream share one feed); a snapshot is immutable once published.
    """

    def __init__(self, indexer: EventIndexer, market: str) -> None:
        self.indexer = indexer
        self.market = market
        self._lock = threading.Lock()
        self._snapshot = Snapshot(indexer.cursor)
        self._refreshed = 0.0
        self._version: tuple[int, int] | None = None

    @classmethod
    def open(cls, state: Any) -> "MarketFeed":
        contracts = (state.deployment or {}).get("contracts") or {}
        market = contracts.get(MARKET)
        registry = contracts.get(REGISTRY)
        if not market or not registry:
            raise ChainUnavailable("no market is deployed on this chain yet",
                                   hint="deploy it (`cona deploy`) or start with `cona up`")
        abis = state.chain.abis
        indexer = EventIndexer(state.chain.backend, {MARKET: (market, abis[MARKET]),
                                                     REGISTRY: (registry, abis[REGISTRY])},
                               start_block=int(state.deployment.get("block", 0)))
        log.info("views feed opened for market %s from block %s", market, state.deployment.get("block", 0))
        return cls(indexer, market)

    def refresh(self, *, max_age: float = MIN_REFRESH_S) -> Snapshot:
        """Bring the index to the head (blocking: call from a worker thread) and return the snapshot.

        A snapshot younger than ``max_age`` seconds is returned as it is (SSE polls share one
        refresh); otherwise one ``eth_blockNumber`` decides whether there is anything to index,
        so a request handler (``max_age=0``) reads its own writes at the price of one call."""
        asked = time.monotonic()
        with self._lock:
            # a refresh that began no earlier than max_age before we asked (max_age=0: after we asked,
            # while we waited for the lock) saw every write that preceded this call: share its result
            if self._version is not None and self._refreshed >= asked - max_age:
                return self._snapshot
            now = time.monotonic()
            self._refreshed = now
            if self._version is not None and self.indexer.backend.block_number() == self.indexer.cursor:
                return self._snapshot
            self.indexer.sync()
            # the number of stored events and the cursor change on new events and on a reorg alike
            count = self.indexer.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            version = (self.indexer.cursor, count)
            if version != self._version:
                events = self.indexer.events()
                self._snapshot = Snapshot.build(self.indexer.cursor, events)
                if self._version is None or count != self._version[1]:
                    log.debug("views feed of %s at block %d: %d events, %d orders", self.market,
                              self.indexer.cursor, count, len(self._snapshot.orders))
                self._version = version
            else:
                self._snapshot = replace(self._snapshot, block=self.indexer.cursor)
            return self._snapshot

    def peek(self, max_age: float) -> Snapshot | None:
        """The snapshot if a refresh began less than ``max_age`` seconds ago, else None. Never blocks
        (the event loop may call it); a refresh in progress leaves the previous snapshot served."""
        if self._version is not None and time.monotonic() - self._refreshed < max_age:
            return self._snapshot
        return None

    def close(self) -> None:
        with self._lock:
            self.indexer.close()


_feed_lock = threading.Lock()
_pages_lock = threading.Lock()


def feed_of(request: Request) -> MarketFeed:
    app = request.app
    with _feed_lock:
        feed = getattr(app.state, "cona_feed", None)
        if feed is None:
            feed = MarketFeed.open(app.state.cona)
            app.state.cona_feed = feed
        return feed


# ---------------------------------------------------------------------------- models (the OpenAPI schema)


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None


#: problem details as OpenAPI responses (application/problem+json); app.py passes them to FastAPI(responses=...)
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": desc,
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for code, desc in ((400, "Bad request (names the field)"), (404, "Not found (names the field)"),
                       (409, "Conflict with the current state"), (422, "Invalid input (names the field)"),
                       (503, "The chain, the engine or the deployment is not available"))
}


class NodeOut(BaseModel):
    id: str
    label: str
    lat: float | None
    lon: float | None
    internal: bool


class LinkOut(BaseModel):
    u: str
    v: str
    key: int
    latency_ms: float
    bandwidth_mbps: float | None
    cost: float
    up: bool
    latency_source: str


class TopologyProvider(BaseModel):
    address: str
    attachment: str | None = Field(None, description="the topology node the provider is attached to")
    load: float | None = Field(None, description="utilisation 0..1 (engine only)")
    status: str
    domain: int | None = None
    hostname: str | None = None
    devices: list[Any] = Field(default_factory=list)
    price: Any = None
    source: Literal["engine", "chain"]


class TopologyOut(BaseModel):
    name: str
    nodes: list[NodeOut]
    links: list[LinkOut]
    providers: list[TopologyProvider]
    block: int


class OrderOut(BaseModel):
    id: int
    buyer: str
    state: str
    final: bool
    device_class: str
    units: int
    duration: int
    tier: int
    max_price: str
    escrow: str
    provider: str | None
    price: str
    placed_block: int
    placed_at: int
    placed_tx: str
    updated_block: int
    updated_at: int
    timeline: list[dict[str, Any]]


class OrdersPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")
    block: int = Field(..., description="the block the index had reached")


# ---------------------------------------------------------------------------- topology


def _topology_of(state: Any) -> Any:
    engine = getattr(state, "engine", None)
    topo = getattr(engine, "topology", None) if engine is not None else None
    return topo if topo is not None else getattr(state, "topology", None)


def _chain_providers(snap: Snapshot) -> list[dict[str, Any]]:
    """The registry's providers from its events (status replayed), for a process without an engine."""
    status: dict[str, tuple[str, int]] = {}
    for ev in snap.events:
        if ev.contract != REGISTRY or "provider" not in ev.args:
            continue
        who = to_checksum_address(ev.args["provider"])
        name = {"Registered": "active", "ProviderPaused": "paused", "ProviderResumed": "active",
                "UnbondingStarted": "unbonding", "ProviderExited": "exited"}.get(ev.name)
        domain = int(ev.args["domain"]) if "domain" in ev.args else status.get(who, ("", 0))[1]
        if name is not None or who not in status:
            status[who] = (name or status.get(who, ("active", 0))[0], domain)
        else:
            status[who] = (status[who][0], domain)
    return [{"address": who, "attachment": None, "load": None, "status": st, "domain": dom, "source": "chain"}
            for who, (st, dom) in sorted(status.items())]


def _engine_providers(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in listed:
        out.append({"address": p["address"], "attachment": p.get("attachment"), "load": p.get("load"),
                    "status": str(p.get("status")), "domain": p.get("domain"), "hostname": p.get("hostname"),
                    "devices": p.get("devices", []), "price": p.get("price"), "source": "engine"})
    return out


def _geojson(topo: Any, providers: list[dict[str, Any]]) -> dict[str, Any]:
    at: dict[str, list[dict[str, Any]]] = {}
    for p in providers:
        if p.get("attachment") is not None:
            at.setdefault(str(p["attachment"]), []).append(p)
    features = []
    for nid in topo.nodes:
        n = topo.node_info.get(nid)
        if n is None or n.lat is None or n.lon is None:
            continue
        here = at.get(nid, [])
        loads = [p["load"] for p in here if p.get("load") is not None]
        features.append({"type": "Feature", "id": nid,
                         "geometry": {"type": "Point", "coordinates": [n.lon, n.lat]},  # GeoJSON is lon, lat
                         "properties": {"kind": "node", "id": nid, "label": n.label,
                                        "providers": [p["address"] for p in here],
                                        "load": max(loads) if loads else None}})
    for link in topo.links:
        a, b = topo.node_info.get(link.u), topo.node_info.get(link.v)
        if a is None or b is None or None in (a.lat, a.lon, b.lat, b.lon):
            continue
        features.append({"type": "Feature", "id": f"{link.u}-{link.v}-{link.key}",
                         "geometry": {"type": "LineString", "coordinates": [[a.lon, a.lat], [b.lon, b.lat]]},
                         "properties": {"kind": "link", "u": link.u, "v": link.v, "latency_ms": link.latency_ms,
                                        "bandwidth_mbps": link.bandwidth_mbps, "up": link.up}})
    return {"type": "FeatureCollection", "name": topo.name, "features": features}


@router.get("/topology", response_model=TopologyOut,
            responses={200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}}, **PROBLEMS},
            summary="The network: nodes, links (latency, bandwidth), providers and their load; GeoJSON on request")
async def topology(request: Request, format: Literal["json", "geojson"] = Query("json")) -> Any:
    state = request.app.state.cona
    topo = _topology_of(state)
    if topo is None:
        raise NotFound("no topology is loaded in this process", field="topology",
                       hint="start the market with a topology (`cona up --topology FILE`)")
    feed = getattr(request.app.state, "cona_feed", None) or await run_in_threadpool(feed_of, request)
    if getattr(state, "engine", None) is None:
        # the registry's providers, replayed from the chain: as fresh as the order book
        snap = await run_in_threadpool(feed.refresh, max_age=0)
        providers = _chain_providers(snap)
        key: tuple[Any, ...] = (snap.block, json.dumps(providers, sort_keys=True, default=str))
    else:
        # the engine's providers (kept up to PROVIDERS_TTL_S, see marketplace.api.engine): the block
        # beside them may be as old (MIN_REFRESH_S). Kept answers are served without a thread hop.
        from marketplace.api.engine import read_models

        models = read_models(request)
        snap = feed.peek(MIN_REFRESH_S) or await run_in_threadpool(feed.refresh)
        kept = models.peek_providers() or await run_in_threadpool(models.providers)
        providers = _engine_providers(kept[0])
        key = (snap.block, kept[1])
    # the document is rebuilt (in the thread pool) only when the providers or the block changed;
    # kept as bytes, it skips the response model's validation too (done once, when built)
    docs: dict[str, tuple[Any, Any, bytes, str]] | None = getattr(request.app.state, "cona_topology_docs", None)
    if docs is None:  # two first requests may both make one: either will do
        docs = request.app.state.cona_topology_docs = {}
    got = docs.get(format)
    if got is not None and got[0] is topo and got[1] == key:  # a Topology is immutable
        return Response(got[2], media_type=got[3])
    body, media = await run_in_threadpool(_render_topology, topo, providers, snap, format)
    docs[format] = (topo, key, body, media)
    return Response(body, media_type=media)


def _render_topology(topo: Any, providers: list[dict[str, Any]], snap: Snapshot, format: str) -> tuple[bytes, str]:
    if format == "geojson":
        return _json_bytes(_geojson(topo, providers)), "application/geo+json"
    doc = TopologyOut.model_validate(_topology_doc(topo, providers, snap)).model_dump(mode="json")
    return _json_bytes(doc), "application/json"


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _topology_doc(topo: Any, providers: list[dict[str, Any]], snap: Snapshot) -> dict[str, Any]:
    nodes = []
    for nid in topo.nodes:
        n = topo.node_info.get(nid)
        nodes.append({"id": nid, "label": n.label if n else "", "lat": n.lat if n else None,
                      "lon": n.lon if n else None, "internal": n.internal if n else True})
    links = [{"u": lk.u, "v": lk.v, "key": lk.key, "latency_ms": lk.latency_ms, "bandwidth_mbps": lk.bandwidth_mbps,
              "cost": lk.cost, "up": lk.up, "latency_source": lk.latency_source} for lk in topo.links]
    return {"name": topo.name, "nodes": nodes, "links": links, "providers": providers, "block": snap.block}


# ---------------------------------------------------------------------------- the order book


def encode_cursor(order_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{order_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> int:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        oid = int(text[len(_CURSOR_PREFIX):])
        if oid < 1:
            raise ValueError(text)
        return oid
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"cursor {raw!r} is not one this API returned (pass next_cursor as it came)",
                         field="cursor") from None


def _local_head(feed: MarketFeed) -> int | None:
    """The chain's head number when it can be read without I/O or a lock (the embedded chain in this
    process), else None: the event loop may call it."""
    head = getattr(getattr(feed.indexer.backend, "rpc", None), "head_number", None)  # EmbeddedRpc's
    return head() if callable(head) else None


@router.get("/orders", response_model=OrdersPage, responses=PROBLEMS,
            summary="The on-chain orders, newest first, with cursor pagination and filters")
async def list_orders(request: Request,
                cursor: str | None = Query(None, max_length=64, description="next_cursor of the previous page"),
                limit: int = Query(50, ge=1, le=MAX_LIMIT),
                buyer: str | None = Query(None, description="only this buyer's orders (0x address)"),
                provider: str | None = Query(None, description="only orders whose current provider is this"),
                state: str | None = Query(None, description=f"one of {', '.join(_STATE_NAMES)}")) -> Any:
    before = decode_cursor(cursor) if cursor else None
    who = check_address(buyer, "buyer") if buyer else None
    prov = check_address(provider, "provider") if provider else None
    want: OrderState | None = None
    if state is not None:
        if state.lower() not in _STATE_NAMES:
            raise InputError(f"state must be one of {', '.join(_STATE_NAMES)}, got {state!r}", field="state")
        want = OrderState[state.upper()]
    # a page is built once per snapshot (which only a new event replaces) and query, then served as bytes
    key = (before, limit, who, prov, want)
    pages: dict[Any, tuple[Snapshot, bytes]] | None = getattr(request.app.state, "cona_order_pages", None)
    if pages is None:  # two first requests may both make one: either will do
        pages = request.app.state.cona_order_pages = {}
    feed: MarketFeed | None = getattr(request.app.state, "cona_feed", None)
    if feed is not None:
        # served from the event loop when the kept page's snapshot is at the head: the answer a
        # refresh would give (it compares the same two numbers), without its thread-pool hop
        kept = pages.get(key)
        snap = feed.peek(float("inf"))
        if kept is not None and snap is not None and kept[0] is snap and _local_head(feed) == snap.block:
            return Response(kept[1], media_type="application/json")
    return await run_in_threadpool(_order_page, request, pages, key, before, limit, who, prov, want)


def _order_page(request: Request, pages: dict[Any, tuple[Snapshot, bytes]], key: tuple[Any, ...],
                before: int | None, limit: int, who: str | None, prov: str | None,
                want: OrderState | None) -> Response:
    snap = feed_of(request).refresh(max_age=0)
    kept = pages.get(key)
    if kept is not None and kept[0] is snap:
        return Response(kept[1], media_type="application/json")
    page: list[OrderRow] = []
    more = False
    for oid in sorted(snap.orders, reverse=True):
        if before is not None and oid >= before:
            continue
        row = snap.orders[oid]
        if (who and row.buyer != who) or (prov and row.provider != prov) or (want and row.state is not want):
            continue
        if len(page) == limit:
            more = True
            break
        page.append(row)
    doc = {"orders": [r.to_dict() for r in page], "next_cursor": encode_cursor(page[-1].id) if more else None,
           "block": snap.block}
    body = _json_bytes(OrdersPage.model_validate(doc).model_dump(mode="json"))
    with _pages_lock:
        if len(pages) >= MAX_PAGES:
            pages.pop(next(iter(pages)), None)
        pages[key] = (snap, body)
    return Response(body, media_type="application/json")


# ---------------------------------------------------------------------------- server-sent events


def _sse(ev_id: str | None, name: str, data: Any) -> bytes:
    lines = []
    if ev_id is not None:
        lines.append(f"id: {ev_id}")
    lines.append(f"event: {name}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "text/event-stream: one `id:`/`event:`/`data:` record per event",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **PROBLEMS,
}


@router.get("/orders/{order_id}/events", response_class=StreamingResponse, responses=_SSE_RESPONSES,
            summary="Server-sent events: the order's on-chain transitions as they are indexed; ends when final")
async def order_events(order_id: int, request: Request,
                       last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    after = parse_event_id(last_event_id) if last_event_id else (-1, -1)
    if order_id < 1:
        raise InputError(f"an order id is a positive integer, got {order_id}", field="order_id")
    feed = await run_in_threadpool(feed_of, request)
    snap = await run_in_threadpool(feed.refresh, max_age=0)
    if order_id not in snap.orders:
        raise NotFound(f"no order {order_id} on market {feed.market} (as of block {snap.block})", field="order_id")

    async def stream() -> AsyncIterator[bytes]:
        pos = after
        quiet = time.monotonic()
        current = snap
        log.info("order %d: event stream opened after %s", order_id, pos)
        while True:
            for ev in current.order_events.get(order_id, ()):
                if (ev.block_number, ev.log_index) <= pos:
                    continue
                pos = (ev.block_number, ev.log_index)
                quiet = time.monotonic()
                yield _sse(event_id(ev), "transition", current.describe(ev))
            row = current.orders.get(order_id)
            if row is not None and row.state.final and pos >= (row.updated_block, -1):
                yield _sse(None, "end", {"order": order_id, "state": row.state.name.lower()})
                log.info("order %d: event stream ended at %s", order_id, row.state.name)
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - quiet > KEEPALIVE_S:
                quiet = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(POLL_S)
            current = await run_in_threadpool(feed.refresh)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


@router.get("/events", response_class=StreamingResponse, responses=_SSE_RESPONSES,
            summary="Server-sent events: every market and registry event, a backlog first, then live")
async def market_events(request: Request,
                        backlog: int = Query(100, ge=0, le=5000, description="how many past events to send first"),
                        last_event_id: str | None = Header(None, alias="Last-Event-ID")) -> StreamingResponse:
    after = parse_event_id(last_event_id) if last_event_id else None
    feed = await run_in_threadpool(feed_of, request)
    snap = await run_in_threadpool(feed.refresh, max_age=0)
    if after is None:
        past = snap.events[-backlog:] if backlog else ()
        after = (past[0].block_number, past[0].log_index - 1) if past else (
            (snap.events[-1].block_number, snap.events[-1].log_index) if snap.events else (-1, -1))

    async def stream() -> AsyncIterator[bytes]:
        pos = after
        quiet = time.monotonic()
        current = snap
        yield _sse(None, "hello", {"market": feed.market, "block": current.block})
        while True:
            for ev in current.since(pos):
                pos = (ev.block_number, ev.log_index)
                quiet = time.monotonic()
                yield _sse(event_id(ev), "chain", current.describe(ev))
            if await request.is_disconnected():
                return
            if time.monotonic() - quiet > KEEPALIVE_S:
                quiet = time.monotonic()
                yield b": keep-alive\n\n"
            await asyncio.sleep(POLL_S)
            current = await run_in_threadpool(feed.refresh)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)
