"""What the routes share, built once per application in its lifespan and handed to them with ``Depends``.

``ApiState`` is what the composition root (``cona up`` / ``cona serve``) gives the API: the
chain, the deployment record, the engine when this process runs one, the topology, and
optionally the process's one ``EventIndexer``. ``Services.build`` turns it into what the routes
use, once, when the application starts (``create_app``'s lifespan):

- the market feed (``MarketFeed``: the order book, the topology's providers, the SSE streams)
  and the ``Auditor``, both over one event index: the given ``indexer``, or one opened here
  (in memory, from the deployment block) and closed with the application;
- the market client the relay sends buyers' transactions through;
- the engine's read models (``ReadModels``), when an engine runs;
- the kept answers: order-book pages and topology documents.

A part that cannot be built (no deployment yet, the chain did not answer) is not fatal: the
routes that need it answer 503 as a problem detail, every request, and the rest of the API
serves. The dependencies (``FeedDep``, ``EngineDep``, ...) are ``async def``: resolving them
costs no thread-pool hop, so a kept answer is still served from the event loop.

Invariants: one ``Services`` per running application, never rebuilt per request; the feed and
the auditor read the index under one lock (``index_lock``), so an audit question never sees
the index move between its sync and its reads.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Callable, TypeVar

from fastapi import Depends, Request

from marketplace.api.feed import MarketFeed
from marketplace.api.metrics import Metrics
from marketplace.api.orderbook import OrderPages
from marketplace.api.problems import Unavailable
from marketplace.api.readmodels import ReadModels
from marketplace.api.sse import SharedRefresh
from marketplace.api.topology_doc import TopologyDocs
from marketplace.chain.audit import MARKET, REGISTRY, Auditor, check_address
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment
from marketplace.chain.indexer import EventIndexer
from marketplace.chain.market import Market
from marketplace.chain.registry import Registry
from marketplace.engine.service import Engine
from marketplace.errors import ChainUnavailable, ConaError

if TYPE_CHECKING:
    from marketplace.routing import Topology

log = logging.getLogger(__name__)

T = TypeVar("T")
NOT_DEPLOYED = "no market is deployed on this chain yet"


@dataclass
class ApiState:
    """What the API serves from. Built by ``cona up`` / ``cona serve``, never by the app itself."""

    chain: Chain
    deployment: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: the engine service when this process runs it
    engine: Engine | None = None
    #: the network the market runs on (the engine's wins when an engine runs)
    topology: Topology | None = None
    #: the process's event index of the market and the registry; None: the API opens its own
    indexer: EventIndexer | None = None
    #: serve the development endpoints (``routes/dev``); None: when the chain id is a development chain's
    dev: bool | None = None


def market_at(chain: Chain, address: str) -> Market:
    """The market at ``address`` and its registry (found through the market's own ``registry()`` view):
    all a deployment record needs to name for the read views and the audit."""
    market_c = chain.at(MARKET, check_address(address, "market"))
    registry_c = chain.at(REGISTRY, market_c.call("registry"))
    return Market(chain, market_c, Registry(chain, registry_c, None, market_c), None)


@dataclass(frozen=True)
class Audit:
    """The application's auditor and the lock its questions hold (one question at a time: a question
    syncs the index, then reads the contracts at the block it reached)."""

    auditor: Auditor
    lock: threading.Lock

    def ask(self, question: Callable[[Auditor], T]) -> T:
        with self.lock:
            return question(self.auditor)


class Services:
    """Everything the routes share (see the module docstring). Build with ``Services.build``."""

    def __init__(self, state: ApiState, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics
        self.index_lock = threading.Lock()
        self.feed: MarketFeed | None = None
        #: the feed's snapshot as the server-sent event streams share it (``sse.SharedRefresh``)
        self.live: SharedRefresh | None = None
        self.audit: Audit | None = None
        self.relay_market: Market | None = None
        self.read_models = ReadModels(state.engine) if state.engine is not None else None
        self.order_pages = OrderPages()
        self.topology_docs = TopologyDocs()
        self._owned: EventIndexer | None = None
        #: why a part could not be built, by part ("index", "relay"): answered on every request that needs it
        self._failed: dict[str, ConaError] = {}

    @classmethod
    def build(cls, state: ApiState, metrics: Metrics) -> "Services":
        """Everything, once (blocking: chain reads; the lifespan runs it in a worker thread)."""
        return cls(state, metrics).open()

    def open(self) -> "Services":
        self._open_index()
        self._open_relay()
        return self

    def _open_index(self) -> None:
        state = self.state
        address = ((state.deployment or {}).get("contracts") or {}).get(MARKET)
        if not address:
            return
        try:
            market = market_at(state.chain, address)
            indexer = state.indexer
            if indexer is None:
                indexer = self._owned = EventIndexer(
                    state.chain.backend, {MARKET: (market.address, market.contract.abi),
                                          REGISTRY: (market.registry.address, market.registry.contract.abi)},
                    start_block=int(state.deployment.get("block", 0)))
        except ConaError as exc:
            log.error("market %s: the read views and the audit cannot open its event index: %s", address, exc)
            self._failed["index"] = exc
            return
        self.feed = MarketFeed(indexer, market.address, lock=self.index_lock)
        self.live = SharedRefresh(self.feed)
        self.audit = Audit(Auditor(market, indexer), self.index_lock)
        log.info("event index of market %s from block %d (%s)", market.address, indexer.cursor + 1,
                 "the API's own" if self._owned is not None else "shared")

    def _open_relay(self) -> None:
        if not self.state.deployment:
            return
        try:
            self.relay_market = Market.from_deployment(self.state.chain, Deployment.from_dict(self.state.deployment))
        except ConaError as exc:
            log.error("the relay cannot bind the deployed market: %s", exc)
            self._failed["relay"] = exc

    def close(self) -> None:
        if self._owned is not None:
            with self.index_lock:
                self._owned.close()
            self._owned = None

    # -- the parts, or the problem a route answers without them

    def _failure(self, part: str) -> ConaError | None:
        exc = self._failed.get(part)
        return None if exc is None else exc.with_traceback(None)

    def require_feed(self) -> MarketFeed:
        if self.feed is None:
            raise self._failure("index") or ChainUnavailable(
                NOT_DEPLOYED, hint="deploy it (`cona deploy`) or start with `cona up`")
        return self.feed

    def require_live(self) -> SharedRefresh:
        self.require_feed()
        assert self.live is not None
        return self.live

    def require_audit(self) -> Audit:
        if self.audit is None:
            raise self._failure("index") or Unavailable(NOT_DEPLOYED, title="Not deployed", code="not-deployed")
        return self.audit

    def require_relay_market(self) -> Market:
        if self.relay_market is None:
            raise self._failure("relay") or ChainUnavailable("the market is not deployed yet", hint="wait for /readyz")
        return self.relay_market

    def require_engine(self) -> Engine:
        if self.state.engine is None:
            raise ChainUnavailable("the engine is not running in this process", hint="start it with `cona up`")
        return self.state.engine

    def require_read_models(self) -> ReadModels:
        if self.read_models is None:
            raise ChainUnavailable("the engine is not running in this process", hint="start it with `cona up`")
        return self.read_models

    def topology(self) -> Topology | None:
        """The network the market runs on: the engine's when one runs here, else the one loaded."""
        engine = self.state.engine
        topo = getattr(engine, "topology", None) if engine is not None else None
        return topo if topo is not None else self.state.topology


# ---------------------------------------------------------------------------- dependencies


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:  # a programming error, not a client's: say what to do
        raise RuntimeError("the application's lifespan has not run (serve it with uvicorn, or enter "
                           "`with TestClient(app)`)")
    return services


Svc = Annotated[Services, Depends(get_services)]


async def get_feed(services: Svc) -> MarketFeed:
    return services.require_feed()


async def get_audit(services: Svc) -> Audit:
    return services.require_audit()


async def get_relay_market(services: Svc) -> Market:
    return services.require_relay_market()


async def get_engine(services: Svc) -> Engine:
    return services.require_engine()


async def get_read_models(services: Svc) -> ReadModels:
    return services.require_read_models()


FeedDep = Annotated[MarketFeed, Depends(get_feed)]
AuditDep = Annotated[Audit, Depends(get_audit)]
RelayMarketDep = Annotated[Market, Depends(get_relay_market)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ReadModelsDep = Annotated[ReadModels, Depends(get_read_models)]
