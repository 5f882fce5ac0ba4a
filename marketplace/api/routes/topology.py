"""``GET /v1/topology``: the network the market runs on, its providers and their load; GeoJSON on request.

Providers come from the engine when this process runs one (its kept list, at most
``PROVIDERS_TTL_S`` old, beside a block at most ``MIN_REFRESH_S`` old: a kept document is then
served from the event loop, without a thread hop), else from the registry's events (as fresh as
the order book). The document is rebuilt, in the thread pool, only when the topology, the
providers or the block change (``marketplace.api.topology_doc``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.deps import Svc
from marketplace.api.feed import MIN_REFRESH_S
from marketplace.api.problems import PROBLEMS
from marketplace.api.openapi import inline_schema
from marketplace.api.schemas import GeoJsonOut, TopologyOut
from marketplace.api.topology_doc import GEOJSON, chain_providers, engine_providers, render
from marketplace.errors import NotFound

router = APIRouter(prefix="/v1", tags=["topology"])


@router.get("/topology", response_model=TopologyOut,
            responses={200: {"content": {GEOJSON: {"schema": inline_schema(GeoJsonOut)}}}, **PROBLEMS},
            summary="The network: nodes, links (latency, bandwidth), providers and their load; GeoJSON on request")
async def topology(services: Svc, format: Literal["json", "geojson"] = Query("json")) -> Response:
    topo = services.topology()
    if topo is None:
        raise NotFound("no topology is loaded in this process", field="topology",
                       hint="start the market with a topology (`cona up --topology FILE`)")
    feed = services.require_feed()
    models = services.read_models
    listed: list[dict[str, Any]] | None = None
    if models is None:
        # the registry's providers, replayed from the chain: as fresh as the order book
        snap = await run_in_threadpool(feed.refresh, max_age=0)
        key: object = (snap.block, snap.providers)
    else:
        snap = feed.peek(MIN_REFRESH_S) or await run_in_threadpool(feed.refresh)
        kept = models.peek_providers() or await run_in_threadpool(models.providers)
        listed, key = kept[0], (snap.block, kept[1])
    got = services.topology_docs.get(format, topo, key)
    if got is not None:
        return Response(got[0], media_type=got[1])
    providers = chain_providers(snap.providers) if listed is None else engine_providers(listed)
    body, media = await run_in_threadpool(render, topo, providers, snap.block, format)
    services.topology_docs.put(format, topo, key, body, media)
    return Response(body, media_type=media)
