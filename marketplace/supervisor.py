"""Process supervision for ``cona up`` and the end-to-end tests: real processes, no orphans.

``Supervisor`` starts child processes with their output in log files, waits until each
is ready (a callable that polls, e.g. an HTTP health check), and stops them all in
reverse order: SIGTERM, then SIGKILL after a grace period. Every child gets a Linux
parent-death signal, so even a SIGKILLed supervisor leaves nothing running.

A child started with ``restart=True`` (``cona up``'s demo agents) is started again when it
exits by itself, a kill -9 included: after ``RESTART_FIRST_S``, doubling up to
``RESTART_MAX_S`` while it keeps dying within ``RESTART_STABLE_S`` of its start. A watcher
thread does it; it lives as long as the supervisor runs children (the parent-death signal
is bound to the thread that started a process), and ``stop``/``stop_all`` end the restarts
before they stop the children.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from marketplace.errors import ConaError

log = logging.getLogger(__name__)

RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
#: a child that ran this long before it died is restarted after RESTART_FIRST_S again
RESTART_STABLE_S = 60.0
WATCH_PERIOD_S = 0.2


class ProcessFailed(ConaError):
    code = "process"


def _child_setup() -> None:  # pragma: no cover - runs between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()  # Ctrl-C in the terminal goes to the supervisor, which stops children in order


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path
    #: how to start it again (``restart=True``), else None
    spec: "_Spec | None" = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class _Spec:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path | None


class Supervisor:
    def __init__(self, log_dir: Path, grace: float = 5.0) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              ready: Callable[[], bool] | None = None, timeout: float = 30.0, cwd: Path | None = None,
              restart: bool = False) -> Child:
        merged = dict(os.environ)
        if env:
            merged.update(env)
        spec = _Spec(tuple(argv), merged, cwd)
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, self._spawn(spec, log_path), log_path, spec if restart else None)
        with self._lock:
            self.children.append(child)
        log.info("started %s (pid %d), log %s", name, child.pid, log_path)
        if restart:
            self._watch()
        if ready is not None:
            deadline = time.monotonic() + timeout
            while True:
                if not child.alive():
                    raise ProcessFailed(f"{name} exited with status {child.process.returncode} while starting",
                                        hint=f"its log ends with:\n{child.tail()}")
                try:
                    if ready():
                        break
                except Exception as exc:  # a readiness probe that cannot connect yet
                    log.debug("%s not ready yet: %s", name, exc)
                if time.monotonic() > deadline:
                    self.stop(child)
                    raise ProcessFailed(f"{name} was not ready after {timeout:.0f}s",
                                        hint=f"its log ends with:\n{child.tail()}")
                time.sleep(0.05)
        return child

    def _spawn(self, spec: _Spec, log_path: Path) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as fh:
            return subprocess.Popen(list(spec.argv), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    env=spec.env, cwd=spec.cwd, preexec_fn=_child_setup)

    def _watch(self) -> None:
        """Start the restart watcher once (it stays until ``stop_all``)."""
        with self._lock:
            if self._watcher is None or not self._watcher.is_alive():
                self._stopping.clear()
                self._watcher = threading.Thread(target=self._restarts, name="cona-supervisor", daemon=True)
                self._watcher.start()

    def _restarts(self) -> None:
        """Start again every restartable child that exited, each after its back-off."""
        due: dict[int, float] = {}  # id(child) -> when to start it again
        while not self._stopping.wait(WATCH_PERIOD_S):
            now = time.monotonic()
            with self._lock:
                dead = [c for c in self.children if c.spec is not None and not c.alive()]
            for child in dead:
                if id(child) not in due:
                    ran = now - child.started_at
                    child.restarts = 0 if ran >= RESTART_STABLE_S else child.restarts
                    delay = min(RESTART_FIRST_S * 2 ** child.restarts, RESTART_MAX_S)
                    due[id(child)] = now + delay
                    log.warning("%s (pid %d) exited with status %s after %.1f s; starting it again in %.1f s",
                                child.name, child.pid, child.process.returncode, ran, delay)
                elif now >= due[id(child)]:
                    self._respawn(child)
                    del due[id(child)]

    def _respawn(self, child: Child) -> None:
        with self._lock:
            if self._stopping.is_set() or child.spec is None:
                return
            child.process = self._spawn(child.spec, child.log_path)
            child.restarts += 1
            child.started_at = time.monotonic()
        log.info("started %s again (pid %d, restart %d)", child.name, child.pid, child.restarts)

    def stop(self, child: Child, sig: int = signal.SIGTERM) -> int | None:
        """Stop ``child`` (SIGTERM, then SIGKILL after the grace period); it is not started again."""
        with self._lock:
            child.spec = None
        if child.alive():
            child.process.send_signal(sig)
            try:
                child.process.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0fs; killing it", child.name, self.grace)
                child.process.kill()
                child.process.wait(timeout=self.grace)
        return child.process.returncode

    def kill(self, child: Child) -> None:
        """SIGKILL, for fault-injection tests (a restartable child is started again)."""
        if child.alive():
            child.process.kill()
            child.process.wait(timeout=self.grace)

    def stop_all(self) -> None:
        """End the restarts, then stop every child in reverse order of start."""
        self._stopping.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=self.grace)
        with self._lock:
            children = list(self.children)
        for child in reversed(children):
            self.stop(child)

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
