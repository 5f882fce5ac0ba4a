"""The audit routes (``/v1/audit``): order, provider and batch histories and the escrow check, from chain data.

The answers come from the ``Auditor`` (``marketplace.chain.audit``): the contracts' logs
and views only, never the engine's memory. One auditor per application, created on first
use for the deployed market and kept (its event index is incremental, so each request
reads only the blocks mined since the last one).

Errors are problem details (the app's handlers): an unknown order or provider is a 404
naming the field (``order_id``, ``address``, ``batch_id``), a malformed address or batch id a
422, and no deployment yet a 503.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from fastapi import APIRouter, Request

from marketplace.chain.audit import Auditor

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_lock = threading.Lock()


def _answer(request: Request, question: Callable[[Auditor], Any]) -> Any:
    """Asks the application's auditor, one question at a time: a question syncs the index and
    then reads the contracts at the block it reached, and two threads must not move that
    block under each other."""
    from marketplace.api.app import problem  # the app module imports this router

    app = request.app
    with _lock:
        auditor = getattr(app.state, "cona_auditor", None)
        if auditor is None:
            state = app.state.cona
            market = (state.deployment.get("contracts") or {}).get("ComputeMarket")
            if not market:
                return problem(503, "Not deployed", "no market is deployed on this chain yet", code="not-deployed",
                               instance=request.url.path)
            auditor = Auditor.open(state.chain, market_address=market)
            app.state.cona_auditor = auditor
            log.info("audit index opened for market %s", market)
        return question(auditor).to_dict()


@router.get("/orders/{order_id}", summary="An order's full history from chain events, its state, and the replay check")
def order_history(order_id: int, request: Request) -> Any:
    return _answer(request, lambda a: a.order(order_id))


@router.get("/providers/{address}", summary="A provider's registration, stake, slashes, leases and earnings")
def provider_history(address: str, request: Request) -> Any:
    return _answer(request, lambda a: a.provider(address))


@router.get("/escrow", summary="Whether the contracts hold what they owe, by their books and by their events")
def escrow(request: Request) -> Any:
    return _answer(request, lambda a: a.escrow())


@router.get("/batches/{batch_id}",
            summary="A matching batch: its on-chain record (hashes, block, tx) and every order it assigned")
def batch(batch_id: str, request: Request) -> Any:
    return _answer(request, lambda a: a.batch(batch_id))
