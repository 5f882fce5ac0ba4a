"""The web API (FastAPI): the northbound interface of the service layer, assembled.

``create_app(ApiState(...))`` is all a composition root (``cona up``, ``cona serve``, a test)
calls. It only assembles: the lifespan builds the shared services once (``deps.Services``:
the market feed and the auditor over one event index, the relay's market client, the
engine's read models, the kept answers) and closes them at shutdown; the middleware counts
and times requests (``metrics``); every error leaves as a problem detail (``problems``); the
routes are one module per resource (``routes``), those of the engine mounted only when this
process runs one.

Layout (``marketplace/api/``): ``app`` (this), ``deps`` (what routes share), ``schemas``
(typed request and response bodies), ``problems`` (RFC 9457), ``metrics``, ``routes/*`` (one
resource each), and what the routes call: ``feed`` (chain events folded into the order and
provider books), ``orderbook``, ``sse``, ``topology_doc``, ``readmodels`` (the engine's kept
reads), ``relay`` (buyer-signed transactions). See docs/api.md.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from marketplace.api import bounds, problems
from marketplace.api.bounds import BodyLimit
from marketplace.api.deps import ApiState, Services
from marketplace.api.metrics import Metrics, ObserveMiddleware
from marketplace.api.routes import (artifacts, audit, dashboard, dev, events, heartbeats, lsas, ops, orders,
                                    providers, quotes, rpc, topology)

__all__ = ["ApiState", "create_app"]

log = logging.getLogger(__name__)


def routers(state: ApiState) -> list[APIRouter]:
    """The routers ``state`` serves: every resource's, the development endpoints on a development chain
    (``routes.dev``), and the engine's when this process runs one."""
    always = [ops.router, rpc.router, audit.router, orders.router, topology.router, events.router, dashboard.router]
    if dev.dev_chain(state):
        always.append(dev.router)
    if state.engine is None:
        return always
    return always + [orders.engine_router, providers.engine_router, quotes.engine_router, lsas.engine_router,
                     heartbeats.engine_router, artifacts.engine_router]


def create_app(state: ApiState) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await run_in_threadpool(Services.build, state, metrics)
        app.state.services = services
        try:
            yield
        finally:
            app.state.services = None
            services.close()

    app = FastAPI(title="CONA", version="0.1.0", lifespan=lifespan, responses=problems.PROBLEMS,
                  description="An open market for computing power, settled on an Ethereum chain.")
    served = routers(state)
    # every route, as declared: what the body limits and a 405's Allow are looked up in (the
    # application's own route list holds the included routers, not their routes)
    app.state.route_table = [route for router in served for route in router.routes]
    # the last added is the outermost: the metrics see the bodies refused for their size too
    app.add_middleware(BodyLimit, routes=app.state.route_table)
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    problems.install(app)
    for router in served:
        app.include_router(router)
    bounds.document(app)
    return app
