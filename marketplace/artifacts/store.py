"""The market's content-addressed artifact store: buyers' modules, images and data, providers' outputs.

Layout under the store's root (``<engine state>/artifacts``)::

    blobs/<sha256 hex>        the bytes, read-only (0444), named by their digest
    meta/<sha256 hex>.json    kinds, size, owners, when created and last used, what the kind check found
    tmp/                      uploads in progress

An upload (``begin`` -> ``Upload.write``... -> ``commit``) streams into ``tmp/``, hashing as it
goes and stopping at the kind's size limit. ``commit`` fsyncs it, checks the digest the uploader
signed against what arrived, checks the bytes as their kind (``kinds.inspect``), the uploader's
quota and the store's total, then renames the blob into ``blobs/`` and writes its meta (fsynced,
renamed): an artifact exists once its meta does, and a crash at any point leaves either no
artifact or a whole one (``recover`` removes temporaries and blobs without meta on open). The
same bytes uploaded twice are kept once; each uploader is charged for them once.

Quotas: an owner's usage is the sum of the sizes of the artifacts it uploaded; above
``quota_bytes`` an upload is refused (413), as is one that would take the store past
``total_bytes`` (the bound on what many accounts together can store). Expiry: ``sweep(pinned)``
removes every artifact that no live order names (the engine passes the digests its live orders
and their results name: ``pinned``) and that nobody used for ``ttl_s``; a pinned artifact's
clock restarts while it is pinned.

Invariants: every artifact in the index has its blob and meta on disk and its blob hashes to its
name; the index's usage per owner is the sum over its artifacts; nothing half-written is ever
served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from marketplace.artifacts.kinds import DIGEST, MAX_BYTES, ArtifactRejected, Kind, inspect
from marketplace.errors import LimitExceeded, NotFound

log = logging.getLogger(__name__)

GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Per-kind upload limits (bytes), the quota per owner, the store's total, and the expiry."""

    max_bytes: dict[Kind, int] = field(default_factory=lambda: dict(MAX_BYTES))
    quota_bytes: int = 4 * GIB
    total_bytes: int = 64 * GIB
    ttl_s: float = 86_400.0


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """One stored artifact: its digest (``sha256:HEX``), the kinds it was checked as, its size, its
    owners (the accounts that uploaded it), times, and what its kind checks found."""

    digest: str
    kinds: tuple[str, ...]
    size: int
    owners: tuple[str, ...]
    created: float
    last_used: float
    facts: dict[str, Any]

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "kinds": list(self.kinds), "size": self.size, "owners": list(self.owners),
                "created": self.created, "last_used": self.last_used, "facts": self.facts}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ArtifactInfo:
        return cls(doc["digest"], tuple(doc["kinds"]), int(doc["size"]), tuple(doc["owners"]),
                   float(doc["created"]), float(doc["last_used"]), dict(doc.get("facts") or {}))


def digest_hex(digest: str, field_name: str = "digest") -> str:
    """The 64 hex digits of ``sha256:HEX`` (or of bare hex), checked."""
    text = digest if digest.startswith("sha256:") else "sha256:" + digest
    if not DIGEST.match(text):
        raise NotFound(f"{digest[:80]!r} is not an artifact digest sha256:<64 lower-case hex>", field=field_name)
    return text[7:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Upload:
    """Bytes arriving for one artifact: written to a private temporary file and hashed, never past
    the kind's limit. ``commit`` it through the store, or ``abort`` it."""

    def __init__(self, path: Path, kind: Kind, limit: int) -> None:
        self.path, self.kind, self.limit = path, kind, limit
        self.size = 0
        self._sha = hashlib.sha256()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def write(self, chunk: bytes) -> None:
        if self._fd is None:
            raise ValueError("the upload is closed")
        self.size += len(chunk)
        if self.size > self.limit:
            self.abort()
            raise LimitExceeded(f"a {self.kind} artifact is at most {self.limit} bytes", limit=f"max_{self.kind}_bytes",
                                maximum=self.limit, field="body")
        self._sha.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view):]

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def finish(self) -> None:
        """Flush the bytes to disk (before they are named)."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


class ArtifactStore:
    """See the module docstring. Thread-safe; ``clock`` gives seconds (wall clock by default)."""

    def __init__(self, root: Path, limits: StoreLimits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.limits = limits or StoreLimits()
        self.clock = clock
        self.blobs, self.meta, self.tmp = self.root / "blobs", self.root / "meta", self.root / "tmp"
        for d in (self.blobs, self.meta, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._index: dict[str, ArtifactInfo] = {}
        self.recover()

    # -- opening

    def recover(self) -> None:
        """Drop what a crash left half done: temporaries, blobs without meta, meta without a blob."""
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
        dropped = 0
        for p in self.meta.glob("*.json"):
            try:
                info = ArtifactInfo.from_dict(json.loads(p.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("artifact meta %s unreadable (%s); dropped", p.name, exc)
                p.unlink(missing_ok=True)
                dropped += 1
                continue
            if not (self.blobs / info.hex).exists():
                p.unlink(missing_ok=True)
                dropped += 1
                continue
            self._index[info.hex] = info
        for p in self.blobs.iterdir():
            if p.name not in self._index:
                p.unlink(missing_ok=True)
                dropped += 1
        if self._index or dropped:
            log.info("artifact store %s: %d artifacts, %d bytes; %d half-written entries dropped", self.root,
                     len(self._index), self.total(), dropped)

    # -- reads

    def get(self, digest: str) -> ArtifactInfo | None:
        with self._lock:
            return self._index.get(digest_hex(digest))

    def info(self, digest: str, field_name: str = "digest") -> ArtifactInfo:
        info = self.get(digest) if DIGEST.match(digest if digest.startswith("sha256:") else "sha256:" + digest) \
            else None
        if info is None:
            raise NotFound(f"no artifact {digest[:80]} in this market", field=field_name,
                           hint="upload it first: `cona artifact put FILE` (POST /v1/artifacts)")
        return info

    def path(self, digest: str) -> Path:
        return self.blobs / self.info(digest).hex

    def usage(self, owner: str) -> int:
        with self._lock:
            return sum(i.size for i in self._index.values() if owner in i.owners)

    def total(self) -> int:
        return sum(i.size for i in self._index.values())

    def __len__(self) -> int:
        return len(self._index)

    # -- writes

    def begin(self, kind: Kind) -> Upload:
        return Upload(self.tmp / f"up-{secrets.token_hex(8)}", kind, self.limits.max_bytes[kind])

    def commit(self, up: Upload, owner: str, *, sha256: str | None = None, size: int | None = None) -> ArtifactInfo:
        """Keep what ``up`` received as an artifact of ``owner`` (see the module docstring for the checks,
        in order). ``sha256``/``size``: what the uploader signed; other bytes are refused."""
        try:
            up.finish()
            got = up.sha256
            if sha256 is not None and got != sha256:
                raise ArtifactRejected(f"the bytes hash to sha256:{got}, not the signed sha256:{sha256}", field="body",
                                       hint="upload exactly the bytes you signed")
            if size is not None and up.size != size:
                raise ArtifactRejected(f"{up.size} bytes arrived, {size} were signed", field="body")
            with self._lock:
                known = self._index.get(got)
            if known is not None and up.kind.value in known.kinds:
                facts = known.facts
            else:
                facts = inspect(up.kind, up.path)  # outside the lock: a module compile, an archive's hashes
            return self._keep(up, owner, got, facts)
        finally:
            up.abort()  # removes the temporary unless it was renamed into blobs/

    def _keep(self, up: Upload, owner: str, hex_: str, facts: dict[str, Any]) -> ArtifactInfo:
        now = self.clock()
        with self._lock:
            known = self._index.get(hex_)
            if known is None or owner not in known.owners:
                used = sum(i.size for i in self._index.values() if owner in i.owners)
                if used + up.size > self.limits.quota_bytes:
                    raise LimitExceeded(f"{owner} stores {used} bytes of artifacts; {up.size} more would pass its "
                                        f"quota of {self.limits.quota_bytes}", limit="quota_bytes",
                                        maximum=self.limits.quota_bytes, field="X-Cona-Uploader",
                                        hint="artifacts no live order names expire; wait, or use another account")
            if known is None and self.total() + up.size > self.limits.total_bytes:
                raise LimitExceeded(f"the artifact store is full ({self.limits.total_bytes} bytes)",
                                    limit="total_bytes", maximum=self.limits.total_bytes, field="body")
            if known is None:
                blob = self.blobs / hex_
                os.chmod(up.path, 0o444)
                os.replace(up.path, blob)
                _fsync_dir(self.blobs)
                info = ArtifactInfo("sha256:" + hex_, (up.kind.value,), up.size, (owner,), now, now,
                                    {up.kind.value: facts} if facts else {})
            else:
                kinds = known.kinds if up.kind.value in known.kinds else tuple(sorted((*known.kinds, up.kind.value)))
                merged = dict(known.facts)
                if facts:
                    merged[up.kind.value] = facts
                owners = known.owners if owner in known.owners else tuple(sorted((*known.owners, owner)))
                info = replace(known, kinds=kinds, owners=owners, last_used=now, facts=merged)
            self._write_meta(info)
            self._index[hex_] = info
        log.info("artifact %s (%s, %d bytes) kept for %s", info.digest[:19], up.kind, info.size, owner)
        return info

    def put(self, data: bytes, kind: Kind, owner: str) -> ArtifactInfo:
        """Keep ``data`` (tests, and the engine's own uploads) through the same path as an upload."""
        up = self.begin(kind)
        try:
            up.write(data)
        except BaseException:
            up.abort()
            raise
        return self.commit(up, owner)

    def _write_meta(self, info: ArtifactInfo) -> None:
        path = self.meta / f"{info.hex}.json"
        tmp = self.tmp / f"meta-{secrets.token_hex(8)}"
        with open(tmp, "w") as f:
            json.dump(info.to_dict(), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.meta)

    # -- expiry

    def sweep(self, pinned: Iterable[str]) -> list[str]:
        """Remove the artifacts no live order names (``pinned``: digests) and nobody used for ``ttl_s``;
        a pinned artifact's clock restarts. Returns the digests removed."""
        now = self.clock()
        keep = {digest_hex(d) for d in pinned if DIGEST.match(d)}
        removed = []
        with self._lock:
            for hex_, info in list(self._index.items()):
                if hex_ in keep:
                    if now - info.last_used > self.limits.ttl_s / 2:  # persisted now and then, not every sweep
                        fresh = replace(info, last_used=now)
                        self._write_meta(fresh)
                        self._index[hex_] = fresh
                    continue
                if now - info.last_used <= self.limits.ttl_s:
                    continue
                (self.meta / f"{hex_}.json").unlink(missing_ok=True)  # gone once its meta is
                (self.blobs / hex_).unlink(missing_ok=True)
                del self._index[hex_]
                removed.append(info.digest)
        if removed:
            log.info("artifact store: %d artifacts expired (no live order names them)", len(removed))
        return removed
