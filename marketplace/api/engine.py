"""The engine routes (``/v1``): what provider agents and buyers send to the engine and read back.

Agents: ``POST /v1/lsas`` (raw LSA bytes, ``application/octet-stream``), ``POST /v1/heartbeats``
(``Heartbeat.to_dict()`` JSON), ``POST /v1/orders/{id}/result`` (the result bytes; accepted
only if their keccak is the result hash on chain). Buyers: ``POST /v1/orders`` (an EIP-712
signed intent with its spec, or ``tx_hash`` + spec for an order placed by the buyer's own
transaction; honours ``Idempotency-Key``), ``GET /v1/orders/{id}`` (chain state + spec +
the engine's status and reasons), ``/spec``, ``/result``, ``/explain``, ``POST /v1/quotes``,
``GET /v1/providers``.

Handlers are plain ``def``: FastAPI runs them in its thread pool, so the blocking chain calls
never stall the event loop. Errors are the app's problem details naming the field.

Read models (``ReadModels``, one per app): the two hot reads do not go to the chain or wait on
the engine's lock on every request (``cona bench api``: 1,000 reads/s on two cores).

- ``GET /v1/orders/{id}``: the chain part of the view (``getOrder``, an EVM call of ~1.4 ms on
  the embedded chain) is kept per order until the engine has seen a new event of that order
  (its record's history grows); only events change an order on chain, so the kept part is the
  chain as of the engine's index, the same point its status and history describe. The
  engine part (status, reasons, history) is read fresh on every request.
- ``GET /v1/providers`` (and the providers in ``/v1/topology``): the engine's list, kept at most
  ``PROVIDERS_TTL_S``; an LSA or heartbeat posted here drops it, so a provider's own writes
  show at once, while what the engine decides by itself (load, a failed provider) shows within
  the TTL. A request that finds another one reloading the list serves the previous one rather
  than queueing behind the engine's lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine.errors import LsaRejected
from marketplace.engine.service import Engine
from marketplace.errors import ChainUnavailable, InputError, NotFound
from marketplace.resources.model import DeviceClass

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["engine"])

#: how stale the engine's provider list may be when no LSA or heartbeat arrived here (seconds)
PROVIDERS_TTL_S = 0.25
#: order views kept at most (the oldest are dropped first)
MAX_ORDER_VIEWS = 4096


class ReadModels:
    """The engine's hot reads, kept between requests (see the module docstring). Thread-safe.

    ``peek_*`` never block (the event loop serves a kept answer without a thread-pool hop);
    ``providers`` and ``order_view`` may wait on the engine or the chain (thread pool only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # held only around dict and field updates, never across a call
        self._providers: tuple[list[dict[str, Any]], bytes] | None = None
        self._providers_at = 0.0
        self._providers_gen = 0  # bumped by every write that may change the list
        self._loading = threading.Lock()
        self._orders: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    # -- providers
    def providers_changed(self) -> None:
        with self._lock:
            self._providers_gen += 1
            self._providers = None

    def peek_providers(self) -> tuple[list[dict[str, Any]], bytes] | None:
        """The kept list and its JSON if younger than the TTL, or if another request is reloading it."""
        with self._lock:
            kept = self._providers
            if kept is None:
                return None
            if time.monotonic() - self._providers_at < PROVIDERS_TTL_S or self._loading.locked():
                return kept
        return None

    def providers(self) -> tuple[list[dict[str, Any]], bytes]:
        kept = self.peek_providers()
        if kept is not None:
            return kept
        with self._loading:
            kept = self.peek_providers()  # reloaded while we waited for the lock
            if kept is not None and not self._stale():
                return kept
            with self._lock:
                gen = self._providers_gen
            started = time.monotonic()
            out = self.engine.providers()
            doc = (out, json.dumps(jsonable_encoder(out), separators=(",", ":")).encode())
            with self._lock:
                if self._providers_gen == gen:  # no write arrived while we read: this list is current
                    self._providers, self._providers_at = doc, started
            return doc

    def _stale(self) -> bool:
        with self._lock:
            return self._providers is None or time.monotonic() - self._providers_at >= PROVIDERS_TTL_S

    # -- one order
    def _version(self, rec: Any) -> tuple[Any, ...]:
        # the order changes on chain only by its events; the spec may arrive after the order
        history = rec.history
        return len(history), history[-1]["tx"] if history else None, rec.spec_digest in self.engine.specs

    def peek_order(self, order_id: int) -> dict[str, Any] | None:
        """The view from the kept chain part and the engine's record as it is now, or None on a miss."""
        rec = self.engine.orders.get(order_id)  # a dict read: atomic, no wait on the engine's lock
        if rec is None:
            return None
        with self._lock:
            kept = self._orders.get(order_id)
        if kept is None or kept[0] != self._version(rec):
            return None
        return {**kept[1], "engine": {"status": rec.status, "reasons": list(rec.reasons),
                                      "history": list(rec.history)}}

    def order_view(self, order_id: int) -> dict[str, Any]:
        doc = self.peek_order(order_id)
        if doc is not None:
            return doc
        rec = self.engine.orders.get(order_id)
        version = None if rec is None else self._version(rec)  # taken before the read: never newer than it
        doc = self.engine.order_view(order_id)  # unknown yet: the engine syncs its index or says 404
        if version is not None:
            with self._lock:
                if len(self._orders) >= MAX_ORDER_VIEWS:
                    self._orders.pop(next(iter(self._orders)))
                self._orders[order_id] = (version, doc)
        return doc


_models_lock = threading.Lock()


def read_models(request: Request) -> ReadModels:
    """The app's ``ReadModels`` over its engine (503 without one)."""
    engine = _engine(request)
    app = request.app
    with _models_lock:
        models = getattr(app.state, "cona_read_models", None)
        if models is None or models.engine is not engine:
            models = ReadModels(engine)
            app.state.cona_read_models = models
        return models


class OrderRequest(BaseModel):
    intent: dict[str, Any] | None = Field(None, description="OrderIntent.to_dict(): the signed intent")
    signature: str | None = Field(None, description="65-byte EIP-712 signature r||s||v, hex")
    spec: dict[str, Any] = Field(..., description="the order document whose digest is intent.requirement")
    tier_proof: str | None = Field(None, description="tier proof bytes, hex")
    tx_hash: str | None = Field(None, description="instead of intent+signature: the buyer's own placeOrder tx")


class QuoteRequest(BaseModel):
    requirement: dict[str, Any]
    attachment: str | None = None


def _engine(request: Request) -> Engine:
    engine = getattr(request.app.state.cona, "engine", None)
    if engine is None:
        raise ChainUnavailable("the engine is not running in this process", hint="start it with `cona up`")
    return engine


@router.post("/lsas", status_code=202, summary="A provider's signed Compute LSA (raw bytes)")
def post_lsa(request: Request, body: bytes = Body(..., media_type="application/octet-stream")) -> Any:
    engine = _engine(request)
    res = engine.submit_lsa(body)
    read_models(request).providers_changed()
    if res.outcome == LsdbOutcome.REJECTED:
        raise LsaRejected(f"LSA rejected: {res.reason}", reason=res.reason, field="body")
    return {"outcome": res.outcome.value, "reason": res.reason}


@router.post("/heartbeats", status_code=202, summary="A provider's signed heartbeat")
def post_heartbeat(request: Request, body: dict[str, Any] = Body(...)) -> Any:
    _engine(request).heartbeat(body)
    read_models(request).providers_changed()
    return {"outcome": "accepted"}


@router.post("/orders", status_code=201, summary="Place a signed order (or attach a spec to the buyer's own tx)")
def post_order(request: Request, body: OrderRequest,
               idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> Any:
    engine = _engine(request)
    if body.tx_hash is not None:
        oid = engine.place_order_tx(body.tx_hash, body.spec)
    else:
        if body.intent is None:
            raise InputError("intent is required (or tx_hash for an order you placed yourself)", field="intent")
        if body.signature is None:
            raise InputError("signature is required with an intent", field="signature")
        oid = engine.place_order(body.intent, body.signature, body.spec, body.tier_proof, idempotency_key)
    return JSONResponse({"id": oid, "href": f"/v1/orders/{oid}"}, status_code=201)


@router.get("/orders/{order_id}", summary="An order: chain state, spec, and the engine's status and reasons")
async def get_order(order_id: int, request: Request) -> Any:
    models = read_models(request)
    doc = models.peek_order(order_id)
    if doc is None:  # a miss reads the chain: in the thread pool, never on the event loop
        doc = await run_in_threadpool(models.order_view, order_id)
    return JSONResponse(doc)


@router.get("/orders/{order_id}/spec", summary="The order's spec document")
def get_spec(order_id: int, request: Request) -> Any:
    return _engine(request).spec_of(order_id)


@router.post("/orders/{order_id}/result", status_code=201, summary="The provider uploads the result bytes")
def post_result(order_id: int, request: Request,
                body: bytes = Body(..., media_type="application/octet-stream")) -> Any:
    return {"id": order_id, "result": _engine(request).submit_result(order_id, body)}


@router.get("/orders/{order_id}/result", summary="The result bytes (their keccak is the on-chain result hash)")
def get_result(order_id: int, request: Request) -> Response:
    return Response(_engine(request).result(order_id), media_type="application/octet-stream")


@router.get("/orders/{order_id}/explain", summary="Why the order was (not) matched: per provider")
def get_explain(order_id: int, request: Request) -> Any:
    return _engine(request).explain(order_id)


@router.post("/quotes", summary="The providers that would match a requirement, with price, latency and reasons")
def post_quote(request: Request, body: QuoteRequest) -> Any:
    return _engine(request).quote(body.requirement, body.attachment)


@router.get("/providers", summary="Providers with an installed LSA (filter by class, VRAM, domain, price)")
async def get_providers(request: Request,
                        device_class: str | None = Query(None, description="cpu, gpu, npu or tpu"),
                        min_vram_mib: int | None = Query(None, ge=0, description="memory per device of that class"),
                        domain: int | None = Query(None, ge=0, description="network domain (AS)"),
                        max_price: int | None = Query(None, ge=0, description="wei per unit-hour, at most")) -> Any:
    models = read_models(request)
    kept = models.peek_providers()
    if kept is None:  # a reload waits on the engine's lock: in the thread pool
        kept = await run_in_threadpool(models.providers)
    if device_class is None and min_vram_mib is None and domain is None and max_price is None:
        return Response(kept[1], media_type="application/json")
    cls = DeviceClass.parse(device_class).name if device_class is not None else None
    if min_vram_mib is not None and cls is None:
        raise InputError("min_vram_mib needs device_class (whose devices' memory to compare)", field="min_vram_mib")

    def keep(p: dict[str, Any]) -> bool:
        devices = [d for d in p["devices"] if cls is None or d["class"] == cls]
        if not devices:
            return False
        if min_vram_mib is not None and not any((d.get("memory_mib") or 0) >= min_vram_mib for d in devices):
            return False
        if domain is not None and p["domain"] != domain:
            return False
        return max_price is None or int(p["price"]) <= max_price

    return [p for p in kept[0] if keep(p)]


@router.get("/providers/{address}", summary="One provider: its advertised hardware, node, price, load, liveness")
async def get_provider(request: Request, address: str) -> Any:
    try:
        wanted = to_checksum_address(address)
    except ValueError:
        raise InputError(f"{address!r} is not an address", field="address") from None
    models = read_models(request)
    kept = models.peek_providers() or await run_in_threadpool(models.providers)
    for p in kept[0]:
        if p["address"] == wanted:
            return p
    raise NotFound(f"no provider {wanted} has an installed LSA", field="address",
                   hint="its on-chain history is at /v1/audit/providers/{address}")


