"""``GET /v1/providers`` and ``/v1/providers/{address}``: the providers with an installed LSA, as the engine sees them.

Served from the engine's kept list (``marketplace.api.readmodels``): the unfiltered list is the
kept bytes, served from the event loop (no response validation: it was encoded once); filters
(device class, memory per device, domain, price) select from the kept list.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.deps import ReadModelsDep
from marketplace.api.problems import PROBLEMS
from marketplace.api.readmodels import ReadModels
from marketplace.api.schemas import ProviderOut
from marketplace.errors import InputError, NotFound
from marketplace.resources.model import DeviceClass

engine_router = APIRouter(prefix="/v1", tags=["providers"])


async def _listed(models: ReadModels) -> tuple[list[dict[str, Any]], bytes]:
    kept = models.peek_providers()
    if kept is None:  # a reload waits on the engine's lock: in the thread pool
        kept = await run_in_threadpool(models.providers)
    return kept


@engine_router.get("/providers", response_model=list[ProviderOut], response_model_exclude_unset=True,
                   responses=PROBLEMS,
                   summary="Providers with an installed LSA (filter by class, VRAM, domain, price)")
async def get_providers(models: ReadModelsDep,
                        device_class: str | None = Query(None, description="cpu, gpu, npu or tpu"),
                        min_vram_mib: int | None = Query(None, ge=0, description="memory per device of that class"),
                        domain: int | None = Query(None, ge=0, description="network domain (AS)"),
                        max_price: int | None = Query(None, ge=0, description="wei per unit-hour, at most")) -> Any:
    listed, body = await _listed(models)
    if device_class is None and min_vram_mib is None and domain is None and max_price is None:
        return Response(body, media_type="application/json")
    cls = DeviceClass.parse(device_class).name if device_class is not None else None
    if min_vram_mib is not None and cls is None:
        raise InputError("min_vram_mib needs device_class (whose devices' memory to compare)", field="min_vram_mib")

    def keep(p: dict[str, Any]) -> bool:
        devices = [d for d in p["devices"] if cls is None or d["class"] == cls]
        if not devices:
            return False
        if min_vram_mib is not None and not any((d.get("memory_mib") or 0) >= min_vram_mib for d in devices):
            return False
        if domain is not None and p["domain"] != domain:
            return False
        return max_price is None or int(p["price"]) <= max_price

    return [p for p in listed if keep(p)]


@engine_router.get("/providers/{address}", response_model=ProviderOut, response_model_exclude_unset=True,
                   responses=PROBLEMS,
                   summary="One provider: its advertised hardware, node, price, load, liveness")
async def get_provider(models: ReadModelsDep, address: str) -> Any:
    try:
        wanted = to_checksum_address(address)
    except ValueError:
        raise InputError(f"{address!r} is not an address", field="address") from None
    listed, _ = await _listed(models)
    for p in listed:
        if p["address"] == wanted:
            return p
    raise NotFound(f"no provider {wanted} has an installed LSA", field="address",
                   hint="its on-chain history is at /v1/audit/providers/{address}")
