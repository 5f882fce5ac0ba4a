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
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine.errors import LsaRejected
from marketplace.engine.service import Engine
from marketplace.errors import ChainUnavailable, InputError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["engine"])


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
    if res.outcome == LsdbOutcome.REJECTED:
        raise LsaRejected(f"LSA rejected: {res.reason}", reason=res.reason, field="body")
    return {"outcome": res.outcome.value, "reason": res.reason}


@router.post("/heartbeats", status_code=202, summary="A provider's signed heartbeat")
def post_heartbeat(request: Request, body: dict[str, Any] = Body(...)) -> Any:
    _engine(request).heartbeat(body)
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
def get_order(order_id: int, request: Request) -> Any:
    return _engine(request).order_view(order_id)


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


@router.get("/providers", summary="Providers with an installed LSA")
def get_providers(request: Request) -> Any:
    return _engine(request).providers()
