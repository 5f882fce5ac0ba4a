"""Health: whether the market this process runs is doing its work (``/healthz``).

Not just "the process answers": a market whose chain stopped mining or answering, or whose
engine loop stopped turning, still answers HTTP and does nothing. ``HealthMonitor.report``
checks, from what the process already knows plus one cheap chain read:

- ``chain``: the chain answered a read of its head within ``probe_timeout`` (the embedded
  chain's own ``failure``, its block log that cannot be written, fails it outright); no
  transaction this process sent has waited longer than ``mine_stall`` for its receipt
  (``TransactionWriter.oldest_wait``: the chain takes transactions but does not mine them);
  and, off a local development chain (which mines only on demand, so an idle one has an old
  head), the newest block is younger than ``head_stale``;
- ``engine`` (when this process runs one): its loop thread is alive, completed a turn within
  ``turn_stall`` (``LoopBeat``, which the loop updates), and fewer than ``fail_limit`` turns in
  a row failed.

Invariants: ``report`` never waits longer than ``probe_timeout`` (at most one probe is in
flight, in a thread of its own, shared by concurrent callers) and a report is kept
``cache_s``, so a burst of health checks costs the chain one read; a failing check says why.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from marketplace.errors import ConaError
from marketplace.settings import DEV_CHAIN_IDS

if TYPE_CHECKING:
    from marketplace.chain.backends import ChainBackend
    from marketplace.chain.writer import TransactionWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthConfig:
    """The thresholds of the checks, in seconds (``fail_limit`` in turns)."""

    probe_timeout: float = 2.0
    mine_stall: float = 30.0
    head_stale: float = 120.0
    turn_stall: float = 30.0
    fail_limit: int = 20
    cache_s: float = 0.5


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class HealthReport:
    checks: dict[str, Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    @property
    def problems(self) -> str:
        """The failing checks, one sentence each: ``chain: ...; engine: ...``."""
        return "; ".join(f"{name}: {c.detail}" for name, c in self.checks.items() if not c.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing",
                "checks": {name: c.to_dict() for name, c in self.checks.items()}}


class LoopBeat:
    """The engine loop's pulse: when its last turn ended and how the recent turns went. One writer
    (the loop); readers see each attribute whole (single assignments), which is all a report needs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.last_turn: float | None = None
        self.failed_in_row = 0
        self.last_error: str | None = None

    def turned(self, error: BaseException | None = None) -> None:
        """Record one finished turn, ``error`` if it raised."""
        if error is None:
            self.failed_in_row = 0
        else:
            self.failed_in_row += 1
            self.last_error = f"{type(error).__name__}: {error}"
        self.last_turn = self.clock()


class HealthMonitor:
    """The checks of the module docstring over one chain, its writer and, optionally, an engine loop."""

    def __init__(self, backend: "ChainBackend", writer: "TransactionWriter | None" = None, *,
                 beat: LoopBeat | None = None, loop_alive: Callable[[], bool] | None = None,
                 config: HealthConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.writer = writer
        self.beat = beat
        self.loop_alive = loop_alive
        self.config = config or HealthConfig()
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._probe: Future[dict[str, Any]] | None = None
        self._kept: tuple[float, HealthReport] | None = None
        #: why the last probe that ended failed (a slow probe is reported with it), None after a good one
        self._last_error: str | None = None

    def kept(self) -> HealthReport | None:
        """The last report while it is fresh (younger than ``cache_s``), else None."""
        kept = self._kept
        return kept[1] if kept is not None and self.clock() - kept[0] < self.config.cache_s else None

    def report(self) -> HealthReport:
        """The checks' report: the kept one while fresh, else a new one (may read the chain)."""
        kept = self.kept()
        if kept is not None:
            return kept
        checks = {"chain": self._chain()}
        if self.beat is not None:
            checks["engine"] = self._engine()
        report = HealthReport(checks)
        if not report.ok:
            log.warning("unhealthy: %s", report.problems)
        self._kept = (self.clock(), report)
        return report

    # -- the chain

    def _chain(self) -> Check:
        failure = getattr(self.backend, "failure", None)
        if failure:
            return Check(False, failure)
        try:
            head = self._head()
        except FutureTimeout:
            before = f" (the last probe: {self._last_error})" if self._last_error else ""
            return Check(False, f"the chain did not answer within {self.config.probe_timeout:g} s{before}")
        except ConaError as exc:
            self._last_error = f"the chain does not answer: {exc.message}"
            return Check(False, self._last_error)
        self._last_error = None
        number, stamp = int(head["number"], 16), int(head["timestamp"], 16)
        wait = self.writer.oldest_wait() if self.writer is not None else None
        if wait is not None and wait > self.config.mine_stall:
            return Check(False, f"the chain does not mine: a transaction has waited {wait:.0f} s for its receipt "
                                f"(head block {number})")
        age = self.wall() - stamp
        if self.backend.chain_id not in DEV_CHAIN_IDS and age > self.config.head_stale:
            return Check(False, f"the chain does not mine: its head, block {number}, is {age:.0f} s old")
        return Check(True, f"head block {number}, {max(age, 0):.0f} s old")

    def _head(self) -> dict[str, Any]:
        """The latest block, read by one probe thread at a time; waits at most ``probe_timeout``."""
        with self._lock:
            probe = self._probe
            if probe is None or probe.done():
                probe = self._probe = Future()
                threading.Thread(target=self._read_head, args=(probe,), name="cona-health-probe",
                                 daemon=True).start()
        return probe.result(timeout=self.config.probe_timeout)

    def _read_head(self, probe: Future[dict[str, Any]]) -> None:
        try:
            probe.set_result(self.backend.latest_block())
        except BaseException as exc:  # handed to every waiter: reported, not raised in this thread
            probe.set_exception(exc if isinstance(exc, ConaError) else ConaError(f"{type(exc).__name__}: {exc}"))

    # -- the engine loop

    def _engine(self) -> Check:
        beat = self.beat
        assert beat is not None
        if self.loop_alive is not None and not self.loop_alive():
            return Check(False, "the engine loop is not running (its thread ended)")
        now = self.clock()
        if beat.failed_in_row >= self.config.fail_limit:
            return Check(False, f"the last {beat.failed_in_row} engine turns failed: {beat.last_error}")
        since = now - (beat.last_turn if beat.last_turn is not None else beat.started)
        if since > self.config.turn_stall:
            if beat.last_turn is None:
                return Check(False, f"the engine loop has not completed a turn in the {since:.0f} s since it started")
            return Check(False, f"the engine loop has not turned for {since:.0f} s")
        return Check(True, f"last turn {since:.2f} s ago")
