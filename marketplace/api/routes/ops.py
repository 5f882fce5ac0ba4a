"""Operations: liveness, readiness, Prometheus metrics, and the deployment the market runs on.

``/healthz`` answers while the process runs; ``/readyz`` only when the chain answers and the
contracts are deployed (503 otherwise, as a problem detail); ``/metrics`` is the Prometheus
text format; ``/v1/deployment`` is what a wallet or an agent needs to talk to the chain.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from marketplace.api.deps import Svc
from marketplace.api.problems import PROBLEMS, problem
from marketplace.api.schemas import DeploymentOut, Health, Ready
from marketplace.errors import ConaError

router = APIRouter(tags=["operations"])

_HEALTHY = b'{"status":"ok"}'


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Response:
    return Response(_HEALTHY, media_type="application/json")


@router.get("/readyz", response_model=Ready, responses=PROBLEMS,
            summary="Readiness: the chain answers and contracts are deployed")
def readyz(services: Svc) -> JSONResponse:
    state = services.state
    try:
        block = state.chain.backend.block_number()
    except ConaError as exc:
        return problem(503, "Not ready", f"chain unreachable: {exc.message}", code="not-ready")
    if not state.deployment:
        return problem(503, "Not ready", "contracts are not deployed yet", code="not-ready")
    return JSONResponse({"status": "ready", "block": block, "chain_id": state.chain.backend.chain_id})


@router.get("/metrics", summary="Prometheus metrics",
            responses={200: {"description": "Prometheus text format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
def prometheus(services: Svc) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/deployment", tags=["chain"], response_model=DeploymentOut, response_model_exclude_unset=True,
            summary="The chain and the addresses of the deployed contracts")
def deployment(services: Svc) -> dict[str, Any]:
    state = services.state
    return {"chain_id": state.chain.backend.chain_id, "backend": state.chain.backend.name, "rpc": "/rpc",
            **state.deployment}
