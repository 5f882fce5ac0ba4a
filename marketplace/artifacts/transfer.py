"""Artifacts to and from a market, from the outside: signed uploads and downloads checked against their digest.

``upload(api, signer, source, kind, ...)`` hashes the bytes (a file is read twice: once to hash,
once streamed to the market, never held in memory), signs the upload authorization
(``auth.UploadClaim``) with the uploader's key and posts it; it returns the stored artifact.
``fetch(api, digest, dest)`` streams an artifact into ``dest`` and keeps it only when its bytes hash
to the digest: what a provider's agent runs and what a buyer's command line verifies never depends
on trusting the market (or a mirror) that served it. Both speak through ``marketplace.client``.

Invariant: ``fetch`` never leaves a file at ``dest`` whose sha256 is not ``digest`` (the bytes go to
a temporary sibling, renamed only once checked).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from marketplace.artifacts.auth import UploadClaim, sign_upload
from marketplace.artifacts.kinds import DIGEST, ArtifactRejected, Kind
from marketplace.client import ApiClient
from marketplace.errors import ChainError, InputError

#: how long a signed upload authorization stays valid
VALID_FOR_S = 600


class DigestMismatch(ChainError):
    """A market (or mirror) served bytes that are not the artifact named: never used."""

    code = "artifact-digest-mismatch"


def sha256_of(source: bytes | Path) -> tuple[str, int]:
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest(), len(source)
    h, n = hashlib.sha256(), 0
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def claim_headers(claim: UploadClaim, uploader: str, signature: bytes) -> dict[str, str]:
    return {"X-Cona-Uploader": uploader, "X-Cona-Signature": "0x" + signature.hex(), "X-Cona-Sha256": claim.sha256,
            "X-Cona-Size": str(claim.size), "X-Cona-Expires": str(claim.expires)}


def upload(api: ApiClient, signer: Any, source: bytes | Path, kind: Kind | str, *, chain_id: int, market: str,
           valid_for: int = VALID_FOR_S) -> dict[str, Any]:
    """Upload ``source`` as an artifact of ``kind``, signed by ``signer``; the stored artifact's document."""
    if isinstance(source, Path) and not source.is_file():
        raise InputError(f"{source} is not a file", field="file")
    sha, size = sha256_of(source)
    claim = UploadClaim(chain_id, market, Kind(kind).value, sha, size, int(time.time()) + valid_for)
    headers = claim_headers(claim, signer.address, sign_upload(signer, claim))
    if isinstance(source, Path):
        with open(source, "rb") as f:
            return api.put_artifact(f, claim.kind, headers)
    return api.put_artifact(bytes(source), claim.kind, headers)


def fetch(api: ApiClient, digest: str, dest: Path) -> Path:
    """The artifact ``digest`` at ``dest``, its bytes checked (``DigestMismatch`` otherwise)."""
    if not DIGEST.match(digest):
        raise ArtifactRejected(f"{digest[:80]!r} is not an artifact digest sha256:<64 hex>", field="digest")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            api.download(f"/v1/artifacts/{digest}", f)
            f.flush()
            os.fsync(f.fileno())
        got, _ = sha256_of(tmp)
        if "sha256:" + got != digest:
            raise DigestMismatch(f"{api.base} served bytes hashing to sha256:{got} for {digest}",
                                 hint="the market or a mirror is faulty; the bytes were not used")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
