"""``/v1/artifacts`` over HTTP: signed uploads, every bad input with one clear problem detail before the
bytes are kept, downloads checked against their digest, and orders naming what was uploaded.

A real server (uvicorn on a free port, in a thread) for the streamed transfers of
``marketplace.artifacts.transfer``; the problem details through the same server with plain httpx.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from marketplace.api.app import ApiState, create_app
from marketplace.artifacts import Kind, StoreLimits, UploadClaim, sign_upload
from marketplace.artifacts.transfer import DigestMismatch, claim_headers, fetch, upload
from marketplace.client import ApiClient
from marketplace.engine.service import Engine, EngineConfig
from marketplace.errors import InputError, NotFound
from provider_agent.workloads.examples import EXAMPLES
from tests.chain.test_engine import HW, TOPOLOGY, Clock, w, world  # noqa: F401 - fixtures
from tests.unit.test_container_images import make_archive

pytestmark = pytest.mark.chain

WC_C = (EXAMPLES / "wordcount-c.wasm").read_bytes()
LIMITS = StoreLimits(max_bytes={Kind.WASM: 200_000, Kind.OCI: 100_000, Kind.DATA: 300_000}, quota_bytes=600_000)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(w, tmp_path):  # noqa: F811
    engine = Engine(w.chain, w.dep, topology=TOPOLOGY, state_dir=tmp_path / "engine", clock=Clock(),
                    config=EngineConfig(artifacts=LIMITS))
    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app(ApiState(chain=w.chain, deployment=w.dep.to_dict(),
                                                               engine=engine)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    api = ApiClient(f"http://127.0.0.1:{port}")
    try:
        yield w, engine, api
    finally:
        api.close()
        server.should_exit = True
        thread.join(10)


def _post(api: ApiClient, w, signer, data: bytes, kind: str = "data", **claim) -> httpx.Response:
    c = UploadClaim(w.dep.chain_id, w.market.address, claim.pop("claim_kind", kind),
                    claim.pop("sha", hashlib.sha256(data).hexdigest()), claim.pop("size", len(data)),
                    claim.pop("expires", int(time.time()) + 60))
    headers = {**claim_headers(c, signer.address, sign_upload(signer, c)), **claim.pop("headers", {}),
               "content-type": "application/octet-stream"}
    return httpx.post(f"{api.base}/v1/artifacts", params={"kind": kind}, content=data, headers=headers)


def test_upload_then_fetch_checked_by_digest(served, tmp_path):
    w, engine, api = served
    buyer = w.signers[6]
    doc = upload(api, buyer, WC_C, Kind.WASM, chain_id=w.dep.chain_id, market=w.market.address)
    digest = "sha256:" + hashlib.sha256(WC_C).hexdigest()
    assert doc["digest"] == digest and doc["kinds"] == ["wasm"] and doc["owners"] == [buyer.address]
    assert "wasi_snapshot_preview1.fd_write" in doc["facts"]["wasm"]["imports"]
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 250_000)  # streamed from the file
    big = upload(api, buyer, src, "data", chain_id=w.dep.chain_id, market=w.market.address)
    assert big["size"] == 250_000 and engine.artifact_store.usage(buyer.address) == len(WC_C) + 250_000
    got = fetch(api, digest, tmp_path / "out" / "m.wasm")
    assert got.read_bytes() == WC_C
    assert api.artifact_info(digest)["size"] == len(WC_C)
    with pytest.raises(NotFound):
        fetch(api, "sha256:" + "0" * 64, tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    # bytes that are not the digest named are never kept: a lying mirror
    lying = ApiClient(api.base)
    lying.download = lambda path, out, chunk=0: out.write(b"not the module")  # type: ignore[method-assign]
    with pytest.raises(DigestMismatch):
        fetch(lying, digest, tmp_path / "lie.wasm")
    assert not (tmp_path / "lie.wasm").exists() and not list(tmp_path.glob(".lie*"))
    r = httpx.get(f"{api.base}/v1/artifacts/{digest}")
    assert r.content == WC_C and r.headers["etag"] == f'"{digest}"' and r.headers["x-cona-kinds"] == "wasm"


@pytest.mark.parametrize("case, status, field", [
    ("other bytes than signed", 422, "body"),
    ("more bytes than signed", 422, "body"),
    ("announced over the kind's limit", 413, "X-Cona-Size"),
    ("streamed over the kind's limit", 413, "body"),
    ("not a module", 422, "body"),
    ("corrupt archive", 422, "body"),
    ("signed by another key", 422, "X-Cona-Signature"),
    ("expired", 422, "X-Cona-Expires"),
    ("unknown kind", 422, "kind"),
    ("no signature", 422, "X-Cona-Signature"),
])
def test_every_bad_upload_is_one_problem_and_nothing_is_kept(served, tmp_path, case, status, field):
    w, engine, api = served
    s = w.signers[6]
    if case == "other bytes than signed":
        r = _post(api, w, s, b"what arrives", sha=hashlib.sha256(b"what was signed").hexdigest(), size=12)
    elif case == "more bytes than signed":
        r = _post(api, w, s, b"abcdef", size=3)
    elif case == "announced over the kind's limit":
        r = _post(api, w, s, b"x", kind="wasm", size=200_001)
    elif case == "streamed over the kind's limit":
        data = b"y" * 300_001
        c = UploadClaim(w.dep.chain_id, w.market.address, "data", hashlib.sha256(data).hexdigest(), 300_000,
                        int(time.time()) + 60)  # it claims less than it sends
        r = httpx.post(f"{api.base}/v1/artifacts", params={"kind": "data"}, content=data,
                       headers=claim_headers(c, s.address, sign_upload(s, c)))
        assert r.status_code == 422  # stopped at the signed size, before the kind's limit
        status = 422
    elif case == "not a module":
        r = _post(api, w, s, b"\x00asm garbage", kind="wasm")
    elif case == "corrupt archive":
        make_archive(tmp_path / "bad.tar", tamper="layer")
        r = _post(api, w, s, (tmp_path / "bad.tar").read_bytes(), kind="oci")
    elif case == "signed by another key":
        r = _post(api, w, s, b"data", headers={"X-Cona-Uploader": w.signers[7].address})
    elif case == "expired":
        r = _post(api, w, s, b"data", expires=int(time.time()) - 5)
    elif case == "unknown kind":
        r = _post(api, w, s, b"data", kind="exe", claim_kind="data")
    else:
        r = httpx.post(f"{api.base}/v1/artifacts", params={"kind": "data"}, content=b"data",
                       headers={"X-Cona-Uploader": s.address, "X-Cona-Sha256": hashlib.sha256(b"data").hexdigest(),
                                "X-Cona-Size": "4", "X-Cona-Expires": str(int(time.time()) + 60),
                                "X-Cona-Signature": "0x00"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if case != "streamed over the kind's limit":
        assert r.json()["field"] == field, r.json()
    assert len(engine.artifact_store) == 0 and not list(engine.artifact_store.tmp.iterdir())


def test_quota_per_uploader_and_the_limits_in_the_api_document(served):
    w, engine, api = served
    a, b = w.signers[6], w.signers[7]
    for i in range(3):
        assert _post(api, w, a, bytes([i]) * 190_000).status_code == 201
    r = _post(api, w, a, b"z" * 100_000)
    assert r.status_code == 413 and r.json()["limit"] == "quota_bytes" and r.json()["field"] == "X-Cona-Uploader"
    assert _post(api, w, b, b"z" * 100_000).status_code == 201  # another account has its own quota
    doc = httpx.get(f"{api.base}/openapi.json").json()
    op = doc["paths"]["/v1/artifacts"]["post"]
    assert op["x-max-body-bytes"] == {"wasm": 64 << 20, "oci": 2048 << 20, "data": 1024 << 20}
    assert op["x-max-body-bytes"]["data"] > 2 * 1024 * 1024  # far above the order document's limit
    assert "/v1/artifacts/{digest}" in doc["paths"] and "/v1/artifacts/{digest}/info" in doc["paths"]


def test_bad_digests_in_paths(served):
    _, _, api = served
    for bad in ("sha256:xyz", "nothex", "sha256:" + "0" * 64):
        r = httpx.get(f"{api.base}/v1/artifacts/{bad}/info")
        assert r.status_code == 404 and r.json()["field"] == "digest"
    with pytest.raises(InputError):
        ApiClient(api.base).put_artifact(b"x", "data", {})
