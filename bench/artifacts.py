"""``artifact_put_mib_per_s``: uploading artifacts through the market's API.

A real API (uvicorn on the loopback, the engine on an embedded chain with the market deployed)
takes signed uploads of fresh random files (``data`` artifacts of ``size_mib`` each: no two the
same, so nothing is deduplicated): each is streamed from disk by the client, hashed as it
arrives, written, fsynced and named by its digest, then checked against the digest the uploader
signed. The figure is the bytes over the time of the ``POST`` alone (the client's hashing of the
file before it signs is its own cost, ``artifact_sign_ms_p50`` per file); ``artifact_get_mib_per_s``
is the download of the same files back, checked against their digests (``transfer.fetch``).
``quick`` uploads two small files: a smoke test, not a measurement.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from bench.stats import p50, rnd
from marketplace.api.app import ApiState, create_app
from marketplace.artifacts import Kind, UploadClaim, sign_upload
from marketplace.artifacts.transfer import claim_headers, fetch, sha256_of
from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import deploy_market
from marketplace.client import ApiClient
from marketplace.engine.service import Engine
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

MIB = 1 << 20


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(quick: bool = False) -> dict[str, float]:
    files, size_mib = (2, 4) if quick else (6, 64)
    root = Path(tempfile.mkdtemp(prefix="cona-bench-artifacts-"))
    chain = Chain(EmbeddedBackend(ProjectConfig.load(PACKAGE_ROOT).mnemonic, 10), ProjectConfig.load(PACKAGE_ROOT))
    try:
        dep = deploy_market(chain)
        engine = Engine(chain, dep, topology=None, state_dir=root / "engine")
        port = _port()
        server = uvicorn.Server(uvicorn.Config(create_app(ApiState(chain=chain, deployment=dep.to_dict(),
                                                                   engine=engine)),
                                               host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            return _measure(ApiClient(f"http://127.0.0.1:{port}", timeout=120), chain, dep, root, files, size_mib)
        finally:
            server.should_exit = True
            thread.join(30)
            engine.close()
    finally:
        chain.close()
        shutil.rmtree(root, ignore_errors=True)


def _measure(api: ApiClient, chain: Chain, dep, root: Path, files: int, size_mib: int) -> dict[str, float]:
    signer = chain.signers[6]
    paths = []
    for i in range(files):
        p = root / f"blob-{i}"
        p.write_bytes(os.urandom(size_mib * MIB))
        paths.append(p)
    put_s, sign_ms, get_s = [], [], []
    for p in paths:
        t0 = time.perf_counter()
        sha, size = sha256_of(p)
        claim = UploadClaim(dep.chain_id, dep.contracts["ComputeMarket"], Kind.DATA.value, sha, size,
                            int(time.time()) + 600)
        headers = claim_headers(claim, signer.address, sign_upload(signer, claim))
        sign_ms.append((time.perf_counter() - t0) * 1000)
        with open(p, "rb") as f:
            t0 = time.perf_counter()
            doc = api.put_artifact(f, "data", headers)
            put_s.append(time.perf_counter() - t0)
        if doc["digest"] != "sha256:" + sha:
            raise RuntimeError(f"the market named {p.name} {doc['digest']}, not sha256:{sha}")
        t0 = time.perf_counter()
        got = fetch(api, doc["digest"], root / "back" / p.name)
        get_s.append(time.perf_counter() - t0)
        if got.stat().st_size != size:
            raise RuntimeError("the artifact came back with another size")
    api.close()
    total = files * size_mib
    return {"artifact_put_mib_per_s": rnd(total / sum(put_s)), "artifact_get_mib_per_s": rnd(total / sum(get_s)),
            "artifact_sign_ms_p50": rnd(p50(sign_ms)), "artifact_mib_per_file": size_mib}
