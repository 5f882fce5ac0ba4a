"""The audit routes (``/v1/audit``): order, provider and batch histories and the escrow check, from chain data.

The answers come from the application's ``Auditor`` (``marketplace.chain.audit``): the
contracts' logs and views only, never the engine's memory. Its event index is the one the
read views use (``marketplace.api.deps``), incremental, so a question reads only the blocks
mined since the last one.

Answers are the auditor's ``to_dict()`` documents, validated against their models; keys the
auditor leaves out (an entry without an order state) stay out (``response_model_exclude_unset``).

Errors are problem details: an unknown order or provider is a 404 naming the field
(``order_id``, ``address``, ``batch_id``), a malformed address or batch id a 422, and no
deployment yet a 503 (``/problems/not-deployed``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from marketplace.api.deps import AuditDep
from marketplace.api.schemas import AuditBatch, AuditEscrow, AuditOrder, AuditProvider

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/orders/{order_id}", response_model=AuditOrder, response_model_exclude_unset=True,
            summary="An order's full history from chain events, its state, and the replay check")
def order_history(order_id: int, audit: AuditDep) -> dict[str, Any]:
    return audit.ask(lambda a: a.order(order_id)).to_dict()


@router.get("/providers/{address}", response_model=AuditProvider, response_model_exclude_unset=True,
            summary="A provider's registration, stake, slashes, leases and earnings")
def provider_history(address: str, audit: AuditDep) -> dict[str, Any]:
    return audit.ask(lambda a: a.provider(address)).to_dict()


@router.get("/escrow", response_model=AuditEscrow, response_model_exclude_unset=True,
            summary="Whether the contracts hold what they owe, by their books and by their events")
def escrow(audit: AuditDep) -> dict[str, Any]:
    return audit.ask(lambda a: a.escrow()).to_dict()


@router.get("/batches/{batch_id}", response_model=AuditBatch, response_model_exclude_unset=True,
            summary="A matching batch: its on-chain record (hashes, block, tx) and every order it assigned")
def batch(batch_id: str, audit: AuditDep) -> dict[str, Any]:
    return audit.ask(lambda a: a.batch(batch_id)).to_dict()
