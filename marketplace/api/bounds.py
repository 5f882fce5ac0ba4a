"""Bounded input on every route: the body's size and its JSON nesting, enforced before a route runs
and declared in the OpenAPI document.

``BodyLimit`` is plain ASGI middleware. For each request it finds the route (as the router will)
and its limits (``declare_body_limit`` on the route, else ``MAX_BODY_BYTES`` and
``MAX_JSON_DEPTH``), then:

- a ``Content-Length`` over the limit is answered 413 at once, the body never read;
- a route that streams its body (``streamed``: artifact uploads) then reads it itself and stops it
  at its own limit; for every other route:
- otherwise the body is read as it arrives, and the reading stops at the first byte over the
  limit (a chunked body without a length is counted too): 413;
- a JSON body (any route but those that take raw bytes) nested deeper than the limit is
  answered 413 after a scan that never recurses (``marketplace.limits.max_nesting``): the
  framework's own parser, which does recurse, only ever sees a document within the limit;
- then the route runs on the buffered body, as if read from the socket.

Refusals are problem details (``LimitExceeded``: ``limit``, ``maximum``, ``field: body``), or, on a
route that speaks JSON-RPC, a JSON-RPC error object (-32600) with the same status. So a client
cannot make the process hold more than a route's limit per request, nor reach a recursive
parser with a deep document.

``document(app)`` puts the limits into the OpenAPI document: each operation gets ``x-limits``
(``max_body_bytes``, and ``max_json_depth`` where the body is JSON; ``max_batch`` for JSON-RPC)
and, when it takes a body, a 413 response.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

from starlette.routing import Match

from marketplace.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH, max_nesting

log = logging.getLogger(__name__)

#: the operation's extension that carries its limits (``openapi_extra``)
LIMITS_KEY = "x-limits"
PROBLEM = "application/problem+json"


def declare_body_limit(max_bytes: int, *, json_depth: int | None = MAX_JSON_DEPTH, batch: int | None = None,
                       raw: bool = False, streamed: bool = False) -> dict[str, Any]:
    """``openapi_extra`` for a route with its own limits. ``json_depth=None``: the body is not JSON
    (raw bytes); ``raw``: the route parses the body itself and answers JSON-RPC errors (``/rpc``);
    ``streamed``: the route reads the body as it arrives and stops it at its own (tighter) limit
    (artifact uploads, up to gigabytes: never buffered here)."""
    limits: dict[str, Any] = {"max_body_bytes": max_bytes}
    if streamed:
        json_depth = None
        limits["streamed"] = True
    if json_depth is not None:
        limits["max_json_depth"] = json_depth
    if batch is not None:
        limits["max_batch"] = batch
    if raw:
        limits["json_rpc"] = True
    return {LIMITS_KEY: limits}


DEFAULT_LIMITS: dict[str, Any] = declare_body_limit(MAX_BODY_BYTES)[LIMITS_KEY]


def limits_of(route: Any) -> dict[str, Any]:
    extra = getattr(route, "openapi_extra", None) or {}
    return extra.get(LIMITS_KEY) or DEFAULT_LIMITS


class BodyLimit:
    """The middleware (see the module docstring). ``routes``: every route the application serves.

    FastAPI's own ``max_body_size`` is not used: the depth check needs the buffered body before
    FastAPI's (recursive) parser sees it, and ``/rpc`` answers its refusals as JSON-RPC errors."""

    def __init__(self, app: Any, routes: list[Any]) -> None:
        self.app = app
        self.routes = routes

    def _limits(self, scope: dict[str, Any]) -> dict[str, Any]:
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return limits_of(route)
            if match == Match.PARTIAL and partial is None:
                partial = route
        return limits_of(partial) if partial is not None else DEFAULT_LIMITS

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is None and not chunked:  # no body (a GET, an SSE subscription): nothing to bound
            await self.app(scope, receive, send)
            return
        limits = self._limits(scope)
        maximum = int(limits["max_body_bytes"])
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if declared is not None and declared > maximum:
            await self._refuse(send, limits, "max_body_bytes", maximum,
                               f"the body is {declared} bytes, more than the {maximum} this route accepts")
            return
        if limits.get("streamed"):  # bounded by the route while it reads (``declare_body_limit``)
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(bytes(body), message, receive), send)
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > maximum:
                await self._refuse(send, limits, "max_body_bytes", maximum,
                                   f"the body is more than the {maximum} bytes this route accepts")
                return
        depth_limit = limits.get("max_json_depth")
        content_type = headers.get(b"content-type", b"").lower()
        if depth_limit is not None and not limits.get("json_rpc") and body and \
                (not content_type or b"json" in content_type):
            depth = max_nesting(bytes(body))
            if depth > depth_limit:
                await self._refuse(send, limits, "max_depth", depth_limit,
                                   f"the body is JSON nested {depth} deep, deeper than the {depth_limit} accepted")
                return
        await self.app(scope, _replay(bytes(body), None, receive), send)

    @staticmethod
    async def _refuse(send: Any, limits: dict[str, Any], limit: str, maximum: int, detail: str) -> None:
        log.info("request refused: %s", detail)
        if limits.get("json_rpc"):
            doc: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": detail}}
            media = b"application/json"
        else:
            doc = {"type": "/problems/limit-exceeded", "title": "LimitExceeded", "status": 413, "detail": detail,
                   "field": "body", "limit": limit, "maximum": maximum}
            media = PROBLEM.encode()
        payload = json.dumps(doc).encode()
        # the body was not read (or not all of it): the connection is closed after the answer, so the
        # rest of it is never read either
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", media), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, pending: Any, receive: Any) -> Callable[[], Any]:
    """A ``receive`` that hands over the buffered body once (then ``pending``, if the client already
    left), then waits on the real one (for the disconnect)."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if pending is not None:
            return pending
        return await receive()

    return replay


def document(app: Any) -> None:
    """Put every route's limits into ``app``'s OpenAPI document (``x-limits``, and a 413 response)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for ops in schema.get("paths", {}).values():
            for method, op in ops.items():
                if not isinstance(op, dict):
                    continue
                limits = op.setdefault(LIMITS_KEY, dict(DEFAULT_LIMITS))
                if "requestBody" in op:
                    responses = op.setdefault("responses", {})
                    responses.setdefault("413", {
                        "description": f"The body is over {limits['max_body_bytes']} bytes"
                                       + (f" or JSON nested deeper than {limits['max_json_depth']}"
                                          if "max_json_depth" in limits else ""),
                        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
                        if not limits.get("json_rpc") else {"application/json": {"schema": {"type": "object"}}}})
                elif method in ("get", "head", "delete"):
                    limits.pop("max_json_depth", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
