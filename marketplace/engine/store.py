"""The engine's files under ``state_dir``, each written whole or not at all.

    specs/0x<digest>.json         the order document (canonical JSON) of an order on chain, named by its digest
    specs/staged.jsonl            the documents of orders being placed ({intent digest, spec}), appended a
                                  group at a time before its transaction; removed when no group is in
                                  flight (at a start, each one whose intent is on chain is kept first)
    batches/0x<inputsHash>.json   a matching round's inputs and decisions (``batch.canonical``)
    results/<order>.bin           a lease's result bytes (their keccak is the on-chain result hash)
    lsdb/<provider>.json          the provider's newest installed LSA, raw hex, with its arrival time
    idempotency.jsonl             (buyer, Idempotency-Key) -> request digest, order id: one line each, appended
    index.sqlite                  the event index (``EventIndexer``; not written here)
    artifacts/                    the artifact store (``marketplace.artifacts.ArtifactStore``; not written here)

Invariant: every file here is written by ``atomic_write`` (a temporary file in the same
directory, then a rename over the target), so a reader or a restarted engine finds the old
content or the new one, never part of either; ``idempotency.jsonl`` and ``specs/staged.jsonl``
are appended whole lines, and a line cut by a crash is skipped when read. Nothing here knows what the files mean beyond
their names; the engine's parts decide what to keep.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from marketplace.engine.spec import Spec
from marketplace.errors import ConaError

log = logging.getLogger(__name__)

SUBDIRS = ("specs", "batches", "results", "lsdb")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one step (write a sibling temporary file, then rename it)."""
    tmp = path.with_suffix(".tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.replace(path)


def batch_path(state_dir: Path, inputs_hash: bytes) -> Path:
    """Where a round's inputs are kept: content-addressed by their hash."""
    return Path(state_dir) / "batches" / f"0x{inputs_hash.hex()}.json"


class EngineStore:
    """The files of one engine (see the module docstring); creates its folders on open."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir)
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.idempotency_path = self.root / "idempotency.jsonl"
        self.staged_path = self.root / "specs" / "staged.jsonl"

    # -- specs

    def spec_path(self, digest: bytes) -> Path:
        return self.root / "specs" / f"0x{digest.hex()}.json"

    def put_spec(self, spec: Spec) -> bytes:
        """Keep ``spec`` under its digest (once: the same digest is the same document)."""
        d = spec.digest()
        path = self.spec_path(d)
        if not path.exists():
            atomic_write(path, spec.canonical_bytes())
        return d

    def stage_specs(self, entries: Sequence[tuple[bytes, Spec]]) -> None:
        """Keep the specs of orders about to be placed aside, by intent digest: one append for a group."""
        lines = "".join(json.dumps({"intent": "0x" + d.hex(), "spec": spec.canonical_bytes().decode()},
                                   separators=(",", ":")) + "\n" for d, spec in entries)
        with self.staged_path.open("a") as fh:
            fh.write(lines)

    def staged_specs(self) -> Iterator[tuple[bytes, Spec | None]]:
        """(intent digest, spec) of every staged entry (None: a spec that no longer parses); a line cut by
        a crash is skipped (its group was never sent: the append precedes the transaction)."""
        if not self.staged_path.exists():
            return
        for line in self.staged_path.read_text().splitlines():
            try:
                entry = json.loads(line)
                digest = bytes.fromhex(entry["intent"][2:])
            except (ValueError, KeyError, TypeError):
                log.warning("%s: skipping a torn line", self.staged_path)
                continue
            try:
                yield digest, Spec.from_dict(json.loads(entry["spec"]))
            except (ValueError, ConaError) as exc:
                log.warning("%s: the staged spec of intent 0x%s does not parse: %s", self.staged_path,
                            digest.hex(), exc)
                yield digest, None

    def clear_staged(self) -> None:
        self.staged_path.unlink(missing_ok=True)

    def load_spec(self, digest: bytes) -> Spec | None:
        """The stored spec of ``digest``, or None when none is stored or it does not hash to it."""
        path = self.spec_path(digest)
        if not path.exists():
            return None
        s = Spec.from_dict(json.loads(path.read_text()))
        return s if s.digest() == digest else None

    # -- batches

    def put_batch(self, inputs_hash: bytes, canonical: bytes) -> None:
        """Keep a round's record, in its canonical JSON, under the hash of its inputs."""
        atomic_write(batch_path(self.root, inputs_hash), canonical)

    # -- results

    def result_path(self, order_id: int) -> Path:
        return self.root / "results" / f"{order_id}.bin"

    def put_result(self, order_id: int, data: bytes) -> None:
        atomic_write(self.result_path(order_id), data)

    def result(self, order_id: int) -> bytes | None:
        path = self.result_path(order_id)
        return path.read_bytes() if path.exists() else None

    # -- the LSDB copy

    def lsa_path(self, provider: str) -> Path:
        return self.root / "lsdb" / f"{provider}.json"

    def put_lsa(self, provider: str, raw: bytes, arrived: float) -> None:
        atomic_write(self.lsa_path(provider), json.dumps({"raw": raw.hex(), "arrived": arrived}))

    def drop_lsa(self, provider: str) -> None:
        self.lsa_path(provider).unlink(missing_ok=True)

    def stored_lsas(self) -> Iterator[Path]:
        """The kept LSA files, by provider address."""
        return iter(sorted((self.root / "lsdb").glob("*.json")))

    # -- the Idempotency-Key table

    def load_idempotency(self) -> Iterator[dict[str, Any]]:
        """The recorded keys, oldest first (a line cut by a crash is skipped: its order is found again
        by its intent's digest when the client retries)."""
        path = self.idempotency_path
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("%s: skipping a torn line", path)
                continue
            if isinstance(entry, dict) and {"buyer", "key", "request", "order"} <= entry.keys():
                yield entry

    def add_idempotency(self, entry: dict[str, Any]) -> None:
        """Append one key (``buyer``, ``key``, ``request`` digest, ``order``): one write, whole lines only."""
        with self.idempotency_path.open("a") as fh:
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
