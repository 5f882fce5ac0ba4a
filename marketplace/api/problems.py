"""Problem details (RFC 9457): the one shape every error of the API leaves in.

Every ``ConaError`` raised by a route or a dependency, every request that fails validation,
and every HTTP error of the framework (an unknown path, a wrong method) is answered here as
``application/problem+json``::

    {"type": "/problems/<code>", "title": ..., "status": ..., "detail": ..., "instance": <path>,
     "field": <the parameter at fault>, ...the error's other fields}

``PROBLEMS`` describes them for the OpenAPI document (``FastAPI(responses=PROBLEMS)``);
``install`` registers the handlers. ``Unavailable`` is the problem a route or dependency
raises when the application itself cannot answer yet (no deployment, chain unreachable):
its title and type are chosen by the raiser rather than derived from an exception class.

Invariant: no handler here raises; a 5xx is logged with the method and path.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from marketplace.api.schemas import Problem
from marketplace.errors import ConaError, InputError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

#: problem details as OpenAPI responses (application/problem+json), given to every operation
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": desc,
           "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for code, desc in ((400, "Bad request (names the field)"), (404, "Not found (names the field)"),
                       (409, "Conflict with the current state"), (422, "Invalid input (names the field)"),
                       (503, "The chain, the engine or the deployment is not available"))
}


class Unavailable(Exception):
    """A 503 (or other) problem with an explicit title and type code: the app cannot answer yet."""

    def __init__(self, detail: str, *, title: str, code: str, status: int = 503) -> None:
        super().__init__(detail)
        self.detail, self.title, self.code, self.status = detail, title, code, status


def problem(status: int, title: str, detail: str, *, code: str, instance: str | None = None,
            **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


async def cona_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConaError)
    if exc.http_status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    fields = exc.to_dict()
    fields.pop("message", None)
    fields.pop("code", None)
    return problem(exc.http_status, type(exc).__name__, exc.message, code=exc.code, instance=request.url.path,
                   **fields)


async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unavailable)
    return problem(exc.status, exc.title, exc.detail, code=exc.code, instance=request.url.path)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")),
         "message": err.get("msg", "")}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    return problem(422, "Invalid input", f"{first['field']}: {first['message']}", code=InputError.code,
                   instance=request.url.path, field=first["field"], errors=errors)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    answer = problem(exc.status_code, "HTTP error", str(exc.detail), code=f"http-{exc.status_code}",
                     instance=request.url.path)
    for name, value in (exc.headers or {}).items():
        answer.headers[name] = value
    if exc.status_code == 405:
        answer.headers["Allow"] = allowed_methods(request)
    return answer


def allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (RFC 9110: a 405 names them in ``Allow``):
    the router names only the first route that matched, and a path can be served by several."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "route_table", None) or request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem detail."""
    app.add_exception_handler(ConaError, cona_error)
    app.add_exception_handler(Unavailable, unavailable)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
