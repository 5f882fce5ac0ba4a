"""The chain as Ethereum JSON-RPC at ``POST /rpc``, single requests and batches: reads and signed
transactions only.

Wallets and agents in other processes use the market's chain through it as they would a node
(the embedded chain's, anvil's or a real node's, relayed the same way). It is locked to an
allowlist (``ALLOWED``): reads of blocks, transactions, receipts, logs, balances, code, storage,
fees and calls, and ``eth_sendRawTransaction`` (a transaction its sender signed). Every other
method (``evm_*``, ``anvil_*``, ``hardhat_*``, ``debug_*``, ``personal_*``, ``eth_sendTransaction``
from an unlocked account, ``eth_sign``, filters that keep state per caller, ...) is refused with
``-32601``, inside a batch too, on every chain: none of them reaches the node. Development time
travel and funding live elsewhere (``routes/dev``), never here.

Bounded: the body (``MAX_RPC_BODY_BYTES``, declared on the route for ``marketplace.api.bounds``,
over it a JSON-RPC error with HTTP 413), the nesting (``MAX_JSON_DEPTH``) and the batch
(``MAX_RPC_BATCH``), all checked before anything is allocated per item. The JSON-RPC contract
is Ethereum's, not an OpenAPI one: errors are JSON-RPC error objects with status 200, a body
that is not JSON is ``-32700``, a request over a limit ``-32600``. Calls are counted by method
(bounded labels, ``marketplace.api.metrics``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import Svc
from marketplace.errors import DecodeError, LimitExceeded
from marketplace.limits import MAX_JSON_DEPTH, MAX_RPC_BATCH, MAX_RPC_BODY_BYTES, parse_json

router = APIRouter(tags=["chain"])

#: the methods ``/rpc`` relays: reads, and transactions their senders signed
ALLOWED = frozenset({
    "eth_chainId", "net_version", "net_listening", "web3_clientVersion", "eth_syncing",
    "eth_blockNumber", "eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByHash", "eth_getTransactionByBlockNumberAndIndex", "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionReceipt", "eth_getTransactionCount",
    "eth_getBalance", "eth_getCode", "eth_getStorageAt", "eth_getProof", "eth_getLogs",
    "eth_call", "eth_estimateGas", "eth_createAccessList",
    "eth_gasPrice", "eth_maxPriorityFeePerGas", "eth_feeHistory", "eth_blobBaseFee",
    "eth_sendRawTransaction",
})
#: JSON-RPC 2.0: the method does not exist / is not available
METHOD_NOT_ALLOWED = -32601

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "a JSON-RPC 2.0 response, or a list of them for a batch (errors included)",
          "content": {"application/json": {"schema": {"anyOf": [
              {"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}},
    413: {"description": f"the body is over {MAX_RPC_BODY_BYTES} bytes: a JSON-RPC error (-32600)",
          "content": {"application/json": {"schema": {"type": "object"}}}},
}


def rpc_error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def refusal(item: Any) -> dict[str, Any] | None:
    """The error answer for a request ``/rpc`` does not relay, or None for one it does."""
    if not isinstance(item, dict) or not isinstance(item.get("method"), str):
        return None  # malformed: the backend's relay answers -32600 with the request's id
    method = item["method"]
    if method in ALLOWED:
        return None
    shown = method if len(method) <= 64 else method[:64] + "..."
    return rpc_error(item.get("id"), METHOD_NOT_ALLOWED,
                     f"the method {shown} is not available at /rpc: it serves reads and eth_sendRawTransaction only")


def screen(payload: Any) -> tuple[list[Any], list[dict[str, Any] | None]]:
    """The requests to relay, and for each request of ``payload`` its refusal (or None: relayed)."""
    items = payload if isinstance(payload, list) else [payload]
    refused = [refusal(item) for item in items]
    return [item for item, r in zip(items, refused) if r is None], refused


def relay(backend: Any, payload: Any) -> Any:
    """Relay what the allowlist lets through, answer the rest, keep the batch's order."""
    if isinstance(payload, list) and len(payload) > MAX_RPC_BATCH:
        return rpc_error(None, -32600, f"batch of {len(payload)} requests is longer than the {MAX_RPC_BATCH} "
                                       "accepted; split it")
    passed, refused = screen(payload)
    if not isinstance(payload, list):
        return refused[0] if refused[0] is not None else backend.forward(payload)
    if not payload:
        return rpc_error(None, -32600, "empty batch")
    answers = iter(backend.forward(passed) if passed else [])
    return [r if r is not None else next(answers) for r in refused]


_BODY = {"requestBody": {"required": True, "description": "a JSON-RPC 2.0 request, or a batch (a list) of them",
                          "content": {"application/json": {"schema": {"anyOf": [
                              {"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}}


@router.post("/rpc", responses=_RESPONSES, summary="The chain as Ethereum JSON-RPC: reads and signed transactions",
             openapi_extra={**_BODY, **declare_body_limit(MAX_RPC_BODY_BYTES, json_depth=MAX_JSON_DEPTH,
                                                          batch=MAX_RPC_BATCH, raw=True)})
async def rpc(request: Request, services: Svc) -> Response:
    body = await request.body()
    try:
        payload = parse_json(body, max_bytes=MAX_RPC_BODY_BYTES, what="JSON-RPC request")
    except LimitExceeded as exc:
        return JSONResponse(rpc_error(None, exc.rpc_code, exc.message))
    except DecodeError as exc:
        return JSONResponse(rpc_error(None, -32700, f"parse error: {exc.message}"))
    services.metrics.count_rpc(payload)
    answer = await run_in_threadpool(relay, services.state.chain.backend, payload)
    return JSONResponse(answer)
