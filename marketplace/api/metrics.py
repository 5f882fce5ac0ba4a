"""The API's Prometheus metrics and the ASGI middleware that counts and times every request.

One ``Metrics`` per application (its own registry, so two apps in one process, as in the
tests, do not share counters). Route labels are the route's path template, never the raw
path, and JSON-RPC method labels are bounded (``rpc_label``): a client cannot grow the
label set without limit.

In a multi-domain market ``follow`` adds the engine link's refusals and counters at scrape time
(``cona_domain_refused_total{reason}``: bad OPENs, UPDATEs, handovers, and the router's own
reasons; ``cona_peering_refused_total{reason}``: LSAs the flooding peer refused;
``cona_domain_events_total{name}``: sessions, UPDATEs, handovers). Reasons are the fixed
vocabularies of the router, the session checks and the LSDB, so the label set stays bounded.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily

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

    def follow(self, status: Callable[[], dict[str, Any] | None]) -> None:
        """Export a multi-domain engine link's counters (``status()``: its ``EngineLink.status``)."""
        self.registry.register(_DomainCollector(status))

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


class _DomainCollector:
    def __init__(self, status: Callable[[], dict[str, Any] | None]) -> None:
        self.status = status

    def collect(self) -> Iterator[CounterMetricFamily]:
        st = self.status()
        if not st:
            return
        peering = st.get("peering") or {}
        for name, doc, values in (
                ("cona_domain_refused", "Input refused from other domains' engines, by reason", st.get("rejected")),
                ("cona_peering_refused", "LSAs the flooding peer refused, by reason",
                 {**(peering.get("rejected") or {}), **(peering.get("lsdb_rejected") or {})}),
                ("cona_domain_events", "Sessions, UPDATEs, flooded LSAs and handovers",
                 {**(st.get("counters") or {}), **(st.get("bridge") or {}),
                  **((st.get("ownership") or {}).get("counters") or {})})):
            family = CounterMetricFamily(name, doc, labels=["reason" if "refused" in name else "name"])
            for label, value in sorted((values or {}).items()):
                family.add_metric([str(label)], float(value))
            yield family

    def describe(self) -> list[CounterMetricFamily]:
        return []
