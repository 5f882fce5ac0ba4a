"""``POST /v1/quotes``: which providers would serve a requirement, at what price and latency, and why not the others.

The requirement is handed to ``Requirement.from_dict`` as sent (it names the field at fault);
the answer is the matcher's verdict per provider (``Engine.quote``) with the requirement as the
market normalises it and its digest (what an order's intent signs).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import EngineDep
from marketplace.api.schemas import Quote, QuoteIn
from marketplace.limits import MAX_SMALL_BODY_BYTES

engine_router = APIRouter(prefix="/v1", tags=["quotes"])


@engine_router.post("/quotes", response_model=Quote, response_model_exclude_unset=True,
                    openapi_extra=declare_body_limit(MAX_SMALL_BODY_BYTES),
                    summary="The providers that would match a requirement, with price, latency and reasons")
def post_quote(engine: EngineDep, body: QuoteIn) -> dict[str, Any]:
    return engine.quote(body.requirement, body.attachment)
