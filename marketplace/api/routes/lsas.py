"""``POST /v1/lsas``: a provider agent's signed Compute LSA, as raw TLV bytes (``application/octet-stream``).

The engine checks and installs it (``Engine.submit_lsa``: signature, registration, hardware
digest, sequence); an installed, duplicate or older LSA is a 202 with its outcome, a rejected
one a 409 naming the reason. Any LSA posted here drops the kept provider list, so the
provider's own write shows at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import EngineDep, ReadModelsDep
from marketplace.api.schemas import LsaOutcome
from marketplace.convergence.lsa.wire import MAX_LSA_SIZE
from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine.errors import LsaRejected

engine_router = APIRouter(prefix="/v1", tags=["providers"])


@engine_router.post("/lsas", status_code=202, response_model=LsaOutcome,
                    openapi_extra=declare_body_limit(MAX_LSA_SIZE, json_depth=None),
                    summary="A provider's signed Compute LSA (raw bytes)")
def post_lsa(engine: EngineDep, models: ReadModelsDep,
             body: bytes = Body(..., media_type="application/octet-stream")) -> dict[str, Any]:
    res = engine.submit_lsa(body)
    models.providers_changed()
    if res.outcome == LsdbOutcome.REJECTED:
        raise LsaRejected(f"LSA rejected: {res.reason}", reason=res.reason, field="body")
    return {"outcome": res.outcome.value, "reason": res.reason}
