"""The chain as Ethereum JSON-RPC at ``POST /rpc``, single requests and batches.

Wallets and agents in other processes use the embedded chain through it as they would a node
(anvil's or a real one is forwarded the same way). The JSON-RPC contract is Ethereum's, not an
OpenAPI one: errors are JSON-RPC error objects with status 200, a body that is not JSON is
``-32700``. Calls are counted by method (bounded labels, ``marketplace.api.metrics``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.deps import Svc

router = APIRouter(tags=["chain"])

_RESPONSES = {200: {"description": "a JSON-RPC 2.0 response, or a list of them for a batch",
                    "content": {"application/json": {"schema": {"anyOf": [
                        {"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}}


@router.post("/rpc", responses=_RESPONSES, summary="The chain as Ethereum JSON-RPC (single request or batch)")
async def rpc(request: Request, services: Svc) -> Response:
    try:
        payload = await request.json()
    except ValueError:
        return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
    services.metrics.count_rpc(payload)
    answer = await run_in_threadpool(services.state.chain.backend.forward, payload)
    return JSONResponse(answer)
