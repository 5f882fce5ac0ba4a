"""The web API (FastAPI): the northbound interface of the service layer.

This module builds the application around an ``ApiState`` (settings, the chain, the
deployment) that the caller constructs at the edge. It owns the error model: every
``ConaError`` and every validation failure leaves as an RFC 9457 problem detail
(``application/problem+json``) that names the field at fault.

Served now: ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus), ``/rpc`` (the chain
as JSON-RPC, so wallets and agents in other processes use the embedded chain like a
node), ``/v1/deployment``, and the OpenAPI document. The buyer, provider, topology and
audit routes are added as the layers behind them land.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from marketplace.api.audit import router as audit_router
from marketplace.api.dashboard import router as dashboard_router
from marketplace.api.relay import router as relay_router
from marketplace.api.views import PROBLEMS, router as views_router
from marketplace.chain.contracts import Chain
from marketplace.errors import ConaError, InputError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
_RPC_NAMESPACES = {"eth", "net", "web3", "evm", "anvil"}


@dataclass
class ApiState:
    """What the API serves from. Built by ``cona up`` / ``cona serve``, never by the app itself."""

    chain: Chain
    deployment: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: the engine service (``marketplace.engine.service.Engine``) when this process runs it
    engine: Any = None
    #: the network the market runs on (the engine's wins when an engine runs)
    topology: Any = None


def problem(status: int, title: str, detail: str, *, code: str, instance: str | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cona_http_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("cona_http_request_seconds", "HTTP request latency", ["route", "method"],
                                 registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        self.rpc_calls = Counter("cona_rpc_calls_total", "JSON-RPC calls relayed at /rpc", ["method"],
                                 registry=self.registry)


class ObserveMiddleware:
    """Request count and latency per route, as plain ASGI: Starlette's ``@app.middleware("http")``
    wraps every request in a task and a streaming body (about 0.25 ms each here), this does not,
    and it leaves server-sent event streams alone."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes every handler is a 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path, scope["method"]).observe(time.perf_counter() - start)


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="CONA",
        version="0.1.0",
        description="An open market for computing power, settled on an Ethereum chain.",
        responses=PROBLEMS,
    )
    metrics = Metrics()
    app.state.cona = state
    app.state.metrics = metrics

    app.add_middleware(ObserveMiddleware, metrics=metrics)

    @app.exception_handler(ConaError)
    async def cona_error(request: Request, exc: ConaError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        fields = exc.to_dict()
        fields.pop("message", None)
        fields.pop("code", None)
        return problem(exc.http_status, type(exc).__name__, exc.message, code=exc.code,
                       instance=request.url.path, **fields)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")),
             "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        return problem(422, "Invalid input", f"{first['field']}: {first['message']}", code=InputError.code,
                       instance=request.url.path, field=first["field"], errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "HTTP error", str(exc.detail), code=f"http-{exc.status_code}",
                       instance=request.url.path)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the chain answers and contracts are deployed")
    def readyz() -> JSONResponse:
        try:
            block = state.chain.backend.block_number()
        except ConaError as exc:
            return problem(503, "Not ready", f"chain unreachable: {exc.message}", code="not-ready")
        if not state.deployment:
            return problem(503, "Not ready", "contracts are not deployed yet", code="not-ready")
        return JSONResponse({"status": "ready", "block": block, "chain_id": state.chain.backend.chain_id})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}})
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/deployment", tags=["chain"], summary="The chain and the addresses of the deployed contracts")
    def deployment() -> dict[str, Any]:
        return {"chain_id": state.chain.backend.chain_id, "backend": state.chain.backend.name,
                "rpc": "/rpc", **state.deployment}

    @app.post("/rpc", tags=["chain"], summary="The chain as Ethereum JSON-RPC (single request or batch)")
    async def rpc(request: Request) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
        for item in payload if isinstance(payload, list) else [payload]:
            if isinstance(item, dict) and isinstance(item.get("method"), str):
                method = item["method"]
                # bounded label set: client-chosen strings must not grow the metrics without limit
                metrics.rpc_calls.labels(method if method.split("_")[0] in _RPC_NAMESPACES and len(method) < 48
                                         else "other").inc()
        from starlette.concurrency import run_in_threadpool

        answer = await run_in_threadpool(state.chain.backend.forward, payload)
        return JSONResponse(answer)

    app.include_router(audit_router)
    app.include_router(views_router)
    app.include_router(relay_router)
    app.include_router(dashboard_router)
    if state.engine is not None:
        from marketplace.api.engine import router as engine_router

        app.include_router(engine_router)
    return app
