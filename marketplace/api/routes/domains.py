"""``GET /v1/domains`` and ``POST /v1/handovers``: the multi-domain market as one engine sees it.

``/v1/domains``: this engine's domain and home node, the API of every domain's engine (an agent
attaches to its domain's engine through it), the authenticated peering sessions, the summaries
the domain router selected, and every refusal counted by reason (bad OPENs, UPDATEs, handovers,
flooded LSAs). An engine that runs the whole market answers ``domain: null``.

``/v1/handovers``: another domain's engine hands this one an order (``docs/engine.md``); the
signature and the sender's domain are checked before the engine takes it. Refusals are 409
problem details whose ``reason`` the sender records.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from marketplace.api.deps import EngineDep
from marketplace.api.domain_schemas import DomainsOut, HandoverIn, HandoverOut
from marketplace.api.problems import PROBLEMS
from marketplace.engine.errors import HandoverRefused

engine_router = APIRouter(prefix="/v1", tags=["domains"])


@engine_router.get("/domains", response_model=DomainsOut, responses=PROBLEMS,
                   summary="This engine's domain, the engines of the others, and the domain routes it selected")
async def get_domains(engine: EngineDep) -> dict[str, Any]:
    link = engine.federation
    if link is None:
        return {"domain": None, "engines": {}}
    return await run_in_threadpool(link.status)


@engine_router.post("/handovers", status_code=202, response_model=HandoverOut, responses=PROBLEMS,
                    summary="Another domain's engine hands this one an order (signed by its orchestrator key)")
def post_handover(engine: EngineDep, body: HandoverIn) -> dict[str, Any]:
    link = engine.federation
    if link is None:
        raise HandoverRefused("this engine matches the whole market: it takes no handovers",
                              reason="not-federated", field="to_domain")
    return link.receive_handover(body.model_dump())
