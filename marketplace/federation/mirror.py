"""Artifacts across domains: an engine fetches, from another domain's engine, an artifact it lacks.

Each engine keeps its own artifact store, and a provider fetches its work's artifacts from its own
domain's engine. So when an order crosses domains its artifacts must follow it, and an output file
a provider in another domain uploaded must reach the buyer's engine. Two occasions:

- a handover (``EngineLink.receive_handover``, once the sender's signature and domain are checked):
  each artifact the order's spec names that this engine's store lacks is fetched from the sending
  engine before the order is taken, so this domain's providers find it here;
- a miss on ``GET /v1/artifacts/{digest}`` (``Engine.artifact``): e.g. an output file of an order
  another domain served, asked for at the buyer's engine; fetched from the other engines in turn.

Artifacts are content-addressed, so no trust in the engine they come from is needed: the bytes go
through the store's own upload path (``ArtifactStore.commit`` with the digest as the signed
sha256), which hashes them again and runs the kind's checks (a module validated, an archive checked
completely) and the limits before keeping anything. The kind is the one the spec requires, else
the first the source lists; the owner kept is the first the source lists (quotas are per account).

Invariants: nothing is kept that does not hash to the digest asked for and pass its kind's checks;
a fetch that fails (unreachable, not there, bytes that do not hash, a check or a limit refused) is
counted under its reason (``counters``, in ``/v1/domains``) and logged, and keeps nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable

import httpx

from marketplace.artifacts import ArtifactInfo, ArtifactStore, Kind, digest_hex
from marketplace.errors import ConaError
from marketplace.federation.config import Federation

log = logging.getLogger(__name__)

#: one artifact's download, connect and read (an image archive may be hundreds of MiB)
FETCH_TIMEOUT_S = 60.0
CHUNK = 1 << 20


class ArtifactMirror:
    """See the module docstring. ``domain``: this engine's; ``store``: its artifact store."""

    def __init__(self, store: ArtifactStore, fed: Federation, domain: int, *,
                 http: httpx.Client | None = None) -> None:
        self.store, self.fed, self.domain = store, fed, domain
        # the header tells the other engine to answer from its store alone (no asking in a circle)
        self.http = http or httpx.Client(timeout=FETCH_TIMEOUT_S, headers={"X-Cona-From-Domain": str(domain)})
        self.counters: Counter[str] = Counter()

    def close(self) -> None:
        self.http.close()

    def for_refs(self, refs: Iterable[tuple[str, str | None]], from_domain: int) -> None:
        """Fetch from ``from_domain``'s engine each ``(digest, kind)`` this store lacks (best effort:
        what cannot be fetched is refused later by the spec's own check, naming its field)."""
        for digest, kind in refs:
            if self.store.get(digest) is None:
                self.fetch(digest, kind, (from_domain,))

    def fetch(self, digest: str, kind: str | None, domains: Iterable[int]) -> ArtifactInfo | None:
        """The first of ``domains``' engines that has ``digest`` gives it (checked and kept here); None
        when none did."""
        digest = "sha256:" + digest_hex(digest)
        for d in domains:
            entry = self.fed.domains.get(d)
            if entry is None or d == self.domain:
                continue
            try:
                info = self._from(entry.api, digest, kind)
            except (httpx.HTTPError, ConaError, OSError) as exc:
                reason = getattr(exc, "code", None) or type(exc).__name__
                self.counters[f"failed:{reason}"] += 1
                log.warning("domain %d: artifact %s not fetched from domain %d: %s", self.domain, digest[:19], d, exc)
                continue
            if info is not None:
                self.counters["fetched"] += 1
                log.info("domain %d: artifact %s (%d bytes) fetched from domain %d", self.domain, digest[:19],
                         info.size, d)
                return info
            self.counters["not-there"] += 1
        return None

    def _from(self, api: str, digest: str, kind: str | None) -> ArtifactInfo | None:
        resp = self.http.get(f"{api}/v1/artifacts/{digest}/info")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        doc = resp.json()
        doc = doc if isinstance(doc, dict) else {}
        kinds = [k for k in doc.get("kinds") or () if k in {m.value for m in Kind}]
        owners = [o for o in doc.get("owners") or () if isinstance(o, str) and o]
        chosen = Kind(kind) if kind is not None else Kind(kinds[0]) if kinds else Kind.DATA
        up = self.store.begin(chosen)
        try:
            with self.http.stream("GET", f"{api}/v1/artifacts/{digest}") as body:
                if body.status_code == 404:
                    up.abort()
                    return None
                body.raise_for_status()
                for chunk in body.iter_bytes(CHUNK):
                    up.write(chunk)
        except BaseException:
            up.abort()
            raise
        return self.store.commit(up, owners[0] if owners else f"domain-{self.domain}", sha256=digest_hex(digest))
