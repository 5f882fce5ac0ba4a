"""``POST /v1/heartbeats``: a provider agent's signed heartbeat (``Heartbeat.to_dict()`` JSON).

The body is handed to ``Heartbeat.from_dict`` as sent (its signature covers the fields), which
names the field at fault; a heartbeat from a provider without an installed LSA is a 409
(``unknown-provider``: advertise again). Drops the kept provider list, as an LSA does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import EngineDep, ReadModelsDep
from marketplace.api.openapi import DescribedBy
from marketplace.api.schemas import Accepted, HeartbeatIn
from marketplace.limits import MAX_SMALL_BODY_BYTES

engine_router = APIRouter(prefix="/v1", tags=["providers"])


@engine_router.post("/heartbeats", status_code=202, response_model=Accepted, summary="A provider's signed heartbeat",
                    openapi_extra=declare_body_limit(MAX_SMALL_BODY_BYTES))
def post_heartbeat(engine: EngineDep, models: ReadModelsDep,
                   body: Annotated[dict[str, Any], DescribedBy(HeartbeatIn), Body()]) -> dict[str, Any]:
    engine.heartbeat(body)
    models.providers_changed()
    return {"outcome": "accepted"}
