"""The live dashboard at ``/``: one page, its script and its style sheet, served from this package.

The page (``static/index.html``, ``static/app.js``, ``static/dashboard.css``) is plain HTML,
JavaScript and CSS written for CONA: no front-end package and no CDN (there is no internet
at run time). It reads only the public API: ``/v1/topology`` (the map), ``/v1/providers``
(the hardware table, when an engine runs) or the topology's providers, ``/v1/orders`` (the
order book), ``/v1/events`` (server-sent events: live rows and lease timelines) and
``/v1/audit/orders/{id}`` (one order's on-chain history).

Invariant: only the files named in ``ASSETS`` are served, so a request path can never
reach outside the static directory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from marketplace.errors import NotFound

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {"app.js": "text/javascript", "dashboard.css": "text/css", "favicon.svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no dashboard asset {name!r}", field="name")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})
