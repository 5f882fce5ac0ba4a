"""The API's Prometheus metrics and the ASGI middleware that counts and times every request.

One ``Metrics`` per application (its own registry, so two apps in one process, as in the
tests, do not share counters). Route labels are the route's path template, never the raw
path, and JSON-RPC method labels are bounded (``rpc_label``): a client cannot grow the
label set without limit.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

_RPC_NAMESPACES = {"eth", "net", "web3", "evm", "anvil"}


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

    def count_rpc(self, payload: Any) -> None:
        """Count the JSON-RPC calls of a request (single or batch) by method."""
        for item in payload if isinstance(payload, list) else [payload]:
            if isinstance(item, dict) and isinstance(item.get("method"), str):
                self.rpc_calls.labels(rpc_label(item["method"])).inc()


def rpc_label(method: str) -> str:
    """The method's label, or ``other``: client-chosen strings must not grow the metrics without limit."""
    return method if method.split("_")[0] in _RPC_NAMESPACES and len(method) < 48 else "other"


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
