"""The artifacts (``/v1/artifacts``): buyers' modules, images and data, providers' output files, by sha256.

``POST /v1/artifacts?kind=wasm|oci|data`` takes the raw bytes (``application/octet-stream``) with a
signed upload authorization in its headers (``marketplace.artifacts.auth``): who uploads (the quota
it counts against), the sha256 and size of the bytes, an expiry. Everything that can be checked
before the bytes arrive is: the kind, the signature, the size against the kind's limit and the
uploader's quota (413 at once, nothing read). The bytes then stream to disk, hashed as they come,
stopped at the limit; bytes that are not the signed ones are refused (422) and nothing is kept. An
upload is answered 201 with the artifact (its digest is the sha256 the client computed: clients
name it in orders). ``GET /v1/artifacts/{digest}`` serves the bytes (an agent checks them against
the digest before use), ``GET /v1/artifacts/{digest}/info`` what the market knows of them.

Limits (bytes per upload): ``marketplace.artifacts.kinds.MAX_BYTES``, stated in the OpenAPI
document on the upload route (``x-max-body-bytes``), far above the 2 MiB of an order document.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import EngineDep
from marketplace.api.workload_schemas import ARTIFACT_LIMITS, KINDS, ArtifactOut
from marketplace.artifacts import ArtifactRejected, UploadClaim, parse_kind, verify_upload
from marketplace.artifacts.store import digest_hex
from marketplace.engine.service import Engine
from marketplace.errors import InputError, LimitExceeded

engine_router = APIRouter(prefix="/v1", tags=["artifacts"])

OCTETS = "application/octet-stream"
_UPLOAD_DOC = {
    "requestBody": {"required": True, "description": "the artifact's bytes; at most "
                    + ", ".join(f"{v} bytes for {k}" for k, v in ARTIFACT_LIMITS.items()),
                    "content": {OCTETS: {"schema": {"type": "string", "format": "binary"}}}},
    "x-max-body-bytes": ARTIFACT_LIMITS,
    **declare_body_limit(max(ARTIFACT_LIMITS.values()), streamed=True),
}
_BYTES = {200: {"content": {OCTETS: {"schema": {"type": "string", "format": "binary"}}},
                "description": "the artifact's bytes; their sha256 is the digest"}}


def _hex(value: str, field: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise InputError(f"{field} must be {size} bytes of hex", field=field)
    return raw


def _claim(engine: Engine, kind: str, sha256: str, size: int, expires: int) -> UploadClaim:
    return UploadClaim(engine.deployment.chain_id, engine.market.address, kind, _hex(sha256, "X-Cona-Sha256", 32).hex(),
                       size, expires)


@engine_router.post("/artifacts", status_code=201, response_model=ArtifactOut, openapi_extra=_UPLOAD_DOC,
                    summary="Upload an artifact (raw bytes) with a signed upload authorization")
async def post_artifact(request: Request, engine: EngineDep,
                        kind: str = Query(..., description=f"one of {', '.join(KINDS)}"),
                        uploader: str = Header(..., alias="X-Cona-Uploader", description="the uploading account"),
                        signature: str = Header(..., alias="X-Cona-Signature",
                                                description="EIP-191 signature of the upload message, hex"),
                        sha256: str = Header(..., alias="X-Cona-Sha256", description="sha256 of the bytes, hex"),
                        size: int = Header(..., alias="X-Cona-Size", ge=0, description="length of the bytes"),
                        expires: int = Header(..., alias="X-Cona-Expires", description="unix time the claim ends")
                        ) -> JSONResponse:
    k = parse_kind(kind)
    store = engine.artifact_store
    claim = _claim(engine, k.value, sha256, size, expires)
    owner = verify_upload(claim, uploader, _hex(signature, "X-Cona-Signature", 65), engine.clock())
    limit = store.limits.max_bytes[k]
    if size > limit:  # refused before a byte is read
        raise LimitExceeded(f"a {k} artifact is at most {limit} bytes; {size} were announced",
                            limit=f"max_{k}_bytes", maximum=limit, field="X-Cona-Size")
    used = await run_in_threadpool(store.usage, owner)
    known = store.get("sha256:" + claim.sha256)
    if (known is None or owner not in known.owners) and used + size > store.limits.quota_bytes:
        raise LimitExceeded(f"{owner} stores {used} bytes of artifacts; {size} more would pass its quota of "
                            f"{store.limits.quota_bytes}", limit="quota_bytes", maximum=store.limits.quota_bytes,
                            field="X-Cona-Uploader")
    up = store.begin(k)
    try:
        async for chunk in request.stream():
            if up.size + len(chunk) > size:
                raise ArtifactRejected(f"more than the {size} signed bytes arrived", field="body")
            up.write(chunk)  # hashed and written as it comes
    except BaseException:
        up.abort()
        raise
    info = await run_in_threadpool(store.commit, up, owner, sha256=claim.sha256, size=size)
    return JSONResponse(info.to_dict(), status_code=201, headers={"Location": f"/v1/artifacts/{info.digest}"})


@engine_router.get("/artifacts/{digest}", response_class=FileResponse, responses=_BYTES,
                   summary="An artifact's bytes, by their sha256 (check them before use)")
def get_artifact(digest: str, engine: EngineDep) -> FileResponse:
    info = engine.artifact_store.info(digest)
    return FileResponse(engine.artifact_store.path(info.digest), media_type=OCTETS,
                        headers={"ETag": f'"{info.digest}"', "X-Cona-Kinds": ",".join(info.kinds),
                                 "Cache-Control": "public, max-age=31536000, immutable"})


@engine_router.get("/artifacts/{digest}/info", response_model=ArtifactOut,
                   summary="What the market knows of an artifact: kinds, size, owners, the kind checks' findings")
def get_artifact_info(digest: str, engine: EngineDep) -> dict[str, Any]:
    digest_hex(digest)
    return engine.artifact_store.info(digest).to_dict()
