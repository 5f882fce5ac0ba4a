"""Process supervision for ``cona up`` and the end-to-end tests: real processes, no orphans.

``Supervisor`` starts child processes with their output in log files, waits until each
is ready (a callable that polls, e.g. an HTTP health check), and stops them all in
reverse order: SIGTERM, then SIGKILL after a grace period. Every child gets a Linux
parent-death signal, so even a SIGKILLed supervisor leaves nothing running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from marketplace.errors import ConaError

log = logging.getLogger(__name__)


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


class Supervisor:
    def __init__(self, log_dir: Path, grace: float = 5.0) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              ready: Callable[[], bool] | None = None, timeout: float = 30.0, cwd: Path | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        fh = log_path.open("ab")
        merged = dict(os.environ)
        if env:
            merged.update(env)
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                env=merged, cwd=cwd, preexec_fn=_child_setup)
        fh.close()
        child = Child(name, proc, log_path)
        self.children.append(child)
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        if ready is not None:
            deadline = time.monotonic() + timeout
            while True:
                if not child.alive():
                    raise ProcessFailed(f"{name} exited with status {proc.returncode} while starting",
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

    def stop(self, child: Child, sig: int = signal.SIGTERM) -> int | None:
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
        """SIGKILL, for fault-injection tests."""
        if child.alive():
            child.process.kill()
            child.process.wait(timeout=self.grace)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
