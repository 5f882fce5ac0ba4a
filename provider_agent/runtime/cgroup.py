"""A container run's own cgroup: where the runtime, not the workload, measures what a run used.

Each run is started with ``--cgroup-parent /cona/<run>``: podman (cgroupfs manager) creates
``/cona/<run>/libpod-<id>`` for the container and ``/cona/<run>/conmon`` for its monitor. The
container's cgroup disappears when it exits, its parent stays until we remove it, and the
parent's counters are hierarchical, so after the run:

- CPU seconds = the parent's CPU time less conmon's (cgroup v1 ``cpuacct.usage``, v2
  ``cpu.stat`` ``usage_usec``): exactly the container's processes;
- peak memory = the parent's high-water mark (v1 ``memory.max_usage_in_bytes``, v2
  ``memory.peak``): an upper bound of the container's own peak, by the monitor's share (conmon,
  and runc while it starts the container: a few MiB). Subtracting conmon's own high-water mark
  would under-count (runc's start-up peak and the workload's peak are not simultaneous);
- OOM kills: v2's ``memory.events`` is hierarchical; v1 counts them only in the container's
  own cgroup, which is gone, so there it is None and the caller reads an OOM kill from a SIGKILL
  it did not send with the parent's peak at the container's limit (the container's usage
  reached its limit, so its parent's, which adds conmon's, did too).

``kill`` SIGKILLs every process of the container's cgroup (v2: ``cgroup.kill``): immediate,
where ``podman kill`` takes seconds while the container floods its output.
``remove`` deletes the run's directories in every hierarchy (conmon's first); ``sweep`` removes
what a crashed agent left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PARENT = "cona"
CONMON = "conmon"


@dataclass(frozen=True, slots=True)
class CgroupUsage:
    cpu_seconds: float
    peak_memory_bytes: int
    oom_kills: int | None  # None: this cgroup version does not tell


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _int(path: Path, key: str | None = None) -> int:
    text = _read(path)
    if key is None:
        return int(text.split()[0]) if text.split() else 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


class RunCgroup:
    """The cgroup parent of one run: ``/cona/<name>`` in every hierarchy."""

    def __init__(self, name: str, root: Path = ROOT) -> None:
        self.name = name
        self.root = root
        self.v2 = (root / "cgroup.controllers").exists()

    @property
    def parent(self) -> str:
        """The ``--cgroup-parent`` argument."""
        return f"/{PARENT}/{self.name}"

    def _dir(self, controller: str) -> Path:
        return self.root / PARENT / self.name if self.v2 else self.root / controller / PARENT / self.name

    def usage(self) -> CgroupUsage:
        if self.v2:
            d = self._dir("")
            cpu_us = _int(d / "cpu.stat", "usage_usec") - _int(d / CONMON / "cpu.stat", "usage_usec")
            return CgroupUsage(max(0, cpu_us) / 1e6, _int(d / "memory.peak"), _int(d / "memory.events", "oom_kill"))
        cpu, mem = self._dir("cpuacct"), self._dir("memory")
        cpu_ns = _int(cpu / "cpuacct.usage") - _int(cpu / CONMON / "cpuacct.usage")
        return CgroupUsage(max(0, cpu_ns) / 1e9, _int(mem / "memory.max_usage_in_bytes"), None)

    def kill(self, rounds: int = 50) -> bool:
        """SIGKILL every process in the container's cgroup until none is left (a fork bomb races the
        first rounds; its pids limit bounds them). False when the container's cgroup was not found."""
        found = False
        for _ in range(rounds):
            containers = [c for c in self._dir("pids").glob("libpod-*") if c.is_dir()] if not self.v2 else \
                [c for c in self._dir("").glob("libpod-*") if c.is_dir()]
            if self.v2:
                for c in containers:
                    try:
                        (c / "cgroup.kill").write_text("1")
                    except OSError:
                        pass
                return bool(containers)
            pids = [int(p) for c in containers for p in _read(c / "cgroup.procs").split()]
            if not pids:
                return found
            found = True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        return found

    def _dirs(self) -> list[Path]:
        if self.v2:
            return [self._dir("")]
        return [h / PARENT / self.name for h in self.root.iterdir() if (h / PARENT / self.name).is_dir()]

    def remove(self, attempts: int = 20) -> bool:
        """Remove the run's cgroups; conmon may still be exiting, so retry briefly. False if some remain."""
        pending = self._dirs()
        for _ in range(attempts):
            pending = [d for d in pending if not _rmdir_tree(d)]
            if not pending:
                return True
            time.sleep(0.02)
        log.warning("run cgroup %s: %d director(ies) still busy; the next sweep removes them", self.name, len(pending))
        return False


def _rmdir_tree(d: Path) -> bool:
    """rmdir a cgroup directory and its (empty) children; True when it is gone."""
    if not d.exists():
        return True
    for child in sorted((c for c in d.iterdir() if c.is_dir()), reverse=True):
        _rmdir_tree(child)
    try:
        os.rmdir(d)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def sweep(prefix: str, root: Path = ROOT) -> int:
    """Remove left-over run cgroups whose name starts with ``prefix`` (their processes are gone)."""
    removed = 0
    hierarchies = [root] if (root / "cgroup.controllers").exists() else [h for h in root.iterdir() if h.is_dir()]
    for h in hierarchies:
        base = h / PARENT
        if not base.is_dir():
            continue
        for d in base.iterdir():
            if d.is_dir() and d.name.startswith(prefix) and _rmdir_tree(d):
                removed += 1
    return removed
