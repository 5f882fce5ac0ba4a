"""The agent's lease journal: an append-only, fsynced record of every step of every lease.

A provider's earnings hang on a few facts it must never forget: which orders it was
assigned, whether it accepted them, what a run produced (the result bytes and the
metered usage), whether it completed, uploaded and settled. The journal is a JSON-lines
file under the state directory; every line is one step, written and fsynced before the
step's effect is relied upon. Result bytes are stored content-addressed
(``results/<keccak hex>``) and fsynced *before* the ``ran`` line that names them.

Invariants:
- append-only: a line, once fsynced, is never rewritten; the state of a lease is the
  fold of its lines in file order (later data for a step does not replace earlier data);
- a torn last line (a crash mid-write, whose fsync never returned) is cut off on load with
  a warning, so a crash can cost at most the step being written and the file stays whole;
- ``ran`` is journaled only after its result file is durable, so a lease that reached
  ``ran`` can always be completed with exactly the bytes it committed to;
- ``meta`` lines hold agent-wide values (the log cursor, the LSA sequence): the last one wins.

The journal says what *we did or meant to do*; the chain says what happened. The daemon
reconciles the two on every restart (``daemon.Agent.reconcile``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from marketplace.errors import AgentError

log = logging.getLogger(__name__)

#: the steps of a lease, in the order they happen; ``lost`` and ``failed`` end a lease early
STEPS = ("seen", "spec", "accepted", "ran", "completed", "uploaded", "settled")
TERMINAL = ("settled", "lost")
ALL_STEPS = STEPS + ("lost",)


class JournalError(AgentError):
    code = "agent-journal"


@dataclass
class Lease:
    """What the journal knows of one order: each step's data, first record wins."""

    order: int
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def has(self, step: str) -> bool:
        return step in self.steps

    def data(self, step: str) -> dict[str, Any]:
        return self.steps.get(step, {})

    @property
    def last(self) -> str | None:
        done = [s for s in ALL_STEPS if s in self.steps]
        return done[-1] if done else None

    @property
    def finished(self) -> bool:
        return any(s in self.steps for s in TERMINAL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """``<state>/journal.jsonl`` and ``<state>/results/``. Thread-safe; one writer process."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "journal.jsonl"
        self.results = self.dir / "results"
        self.results.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._meta: dict[str, Any] = {}
        self._load()
        self._fh = self.path.open("a", encoding="utf-8")

    # -- loading -------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good = 0  # bytes of the file up to the end of the last whole, parsed line
        lines = raw.split(b"\n")
        for n, line in enumerate(lines, 1):
            end = good + len(line) + 1
            if not line.strip():
                good = min(end, len(raw))
                continue
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError, TypeError):
                # only the last line can be torn by a crash; anything else is damage worth shouting about
                if n == len(lines) or (n == len(lines) - 1 and not lines[-1]):
                    log.warning("journal %s: cutting a torn last line (%d bytes)", self.path, len(line))
                    break
                raise JournalError(f"journal {self.path} line {n} is corrupt",
                                   hint="restore it from a backup; do not delete it: it records unsettled leases")
            good = min(end, len(raw))
        if good < len(raw) or (raw and not raw.endswith(b"\n")):
            # a torn tail was never a committed step (its fsync never returned): cut it, so that
            # what follows starts on a line of its own and the file stays parseable
            with self.path.open("r+b") as fh:
                fh.truncate(good)
                if good and not raw[:good].endswith(b"\n"):
                    fh.seek(good)
                    fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())

    def _apply(self, entry: dict[str, Any]) -> None:
        if "meta" in entry:
            self._meta[str(entry["meta"])] = entry["value"]
            return
        order = int(entry["order"])
        step = str(entry["step"])
        if step not in ALL_STEPS:
            raise ValueError(step)
        lease = self._leases.setdefault(order, Lease(order))
        lease.steps.setdefault(step, dict(entry.get("data") or {}))

    # -- writing -------------------------------------------------------------------

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._apply(entry)

    def record(self, order: int, step: str, **data: Any) -> Lease:
        """Journal ``step`` for ``order`` (a no-op when that step is already recorded)."""
        if step not in ALL_STEPS:
            raise JournalError(f"unknown lease step {step!r}", hint=f"one of {', '.join(ALL_STEPS)}")
        lease = self._leases.get(order)
        if lease is not None and lease.has(step):
            return lease
        self._append({"order": int(order), "step": step, "data": data})
        log.info("lease %d: %s %s", order, step, {k: v for k, v in data.items() if k != "spec"})
        return self._leases[order]

    def set_meta(self, name: str, value: Any) -> None:
        if self._meta.get(name) == value:
            return
        self._append({"meta": name, "value": value})

    def meta(self, name: str, default: Any = None) -> Any:
        return self._meta.get(name, default)

    # -- results (content-addressed) -------------------------------------------------

    def put_result(self, data: bytes) -> str:
        """Store result bytes durably; returns their keccak-256 as 0x hex (the name of the file)."""
        digest = "0x" + keccak(data).hex()
        path = self.results / digest[2:]
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.results)
        return digest

    def result(self, digest: str) -> bytes:
        path = self.results / digest.removeprefix("0x")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise JournalError(f"result {digest} is missing from {self.results}") from None
        if "0x" + keccak(data).hex() != digest:
            raise JournalError(f"result file {path} does not hash to its name", hint="the disk corrupted it")
        return data

    # -- reading -------------------------------------------------------------------

    def lease(self, order: int) -> Lease | None:
        return self._leases.get(order)

    def leases(self) -> list[Lease]:
        return [self._leases[k] for k in sorted(self._leases)]

    def open_leases(self) -> list[Lease]:
        return [lease for lease in self.leases() if not lease.finished]

    def close(self) -> None:
        with self._lock:
            self._fh.close()
