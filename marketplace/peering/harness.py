"""A mesh of real peer processes on loopback, for the end-to-end tests and the flooding benchmark.

``PeerMesh`` starts ``python -m marketplace.peering.node`` processes under a
``Supervisor`` (each child gets a parent-death signal, so nothing outlives the test
process, even a SIGKILLed one), wires them in a line or a ring, talks to each over its
control socket, and can SIGKILL and restart any of them on the same port.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from marketplace.peering.originate import Origination, dump_file
from marketplace.supervisor import Child, Supervisor

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(path: str, request: dict, timeout: float = 5.0) -> dict:
    """One request on a peer's control socket, one JSON reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError(f"control socket {path} closed before replying")
            buf += chunk
    return json.loads(buf)


@dataclass
class PeerSpec:
    node_id: int
    port: int
    control: str
    neighbors: list[int]
    originate_from: Path | None = None
    child: Child | None = None


@dataclass
class PeerMesh:
    """``n`` peers in a ``line`` (i dials i-1) or a ``ring`` (and the last dials the first).

    With ``mutual``, both ends of every link dial each other (the peers must then drop the
    duplicate circuit themselves).
    """

    n: int
    topology: str = "line"
    mutual: bool = False
    timers: dict[str, float] = field(default_factory=dict)
    log_level: str = "INFO"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cona-mesh-")))
    peers: dict[int, PeerSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.topology not in ("line", "ring"):
            raise ValueError(f"topology must be line or ring, got {self.topology!r}")
        self.supervisor = Supervisor(self.workdir / "logs", grace=3.0)
        for i in range(1, self.n + 1):
            neighbors = [i - 1] if i > 1 else []
            if self.topology == "ring" and i == self.n and self.n > 2:
                neighbors.append(1)
            if self.mutual:
                neighbors += [i + 1] if i < self.n else []
                if self.topology == "ring" and i == 1 and self.n > 2:
                    neighbors.append(self.n)
            self.peers[i] = PeerSpec(i, free_port(), str(self.workdir / f"p{i}.sock"), neighbors)

    def originate_file(self, node_id: int, originations: list[Origination]) -> Path:
        path = self.workdir / f"originate-{node_id}-{time.monotonic_ns()}.json"
        dump_file(path, originations)
        return path

    def argv(self, spec: PeerSpec) -> list[str]:
        argv = [sys.executable, "-m", "marketplace.peering.node", "--id", str(spec.node_id), "--listen",
                str(spec.port), "--control", spec.control, "--log-level", self.log_level]
        for nb in spec.neighbors:
            argv += ["--neighbor", f"127.0.0.1:{self.peers[nb].port}"]
        if spec.originate_from is not None:
            argv += ["--originate-from", str(spec.originate_from)]
        for name, value in self.timers.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        return argv

    def start(self, node_id: int) -> Child:
        spec = self.peers[node_id]

        def ready() -> bool:
            return "digest" in control(spec.control, {"cmd": "status"}, timeout=1.0)

        spec.child = self.supervisor.start(f"peer{node_id}", self.argv(spec), ready=ready, timeout=30.0)
        return spec.child

    def start_all(self) -> None:
        for i in self.peers:
            self.start(i)

    def kill(self, node_id: int) -> None:
        """SIGKILL: no goodbye, no purge; the others must notice by the hold timer and ageing."""
        spec = self.peers[node_id]
        assert spec.child is not None
        self.supervisor.kill(spec.child)

    def status(self, node_id: int) -> dict:
        return control(self.peers[node_id].control, {"cmd": "status"})

    def statuses(self, ids: list[int] | None = None) -> dict[int, dict]:
        return {i: self.status(i) for i in (ids or list(self.peers))}

    def originate(self, node_id: int, path: Path) -> dict:
        return control(self.peers[node_id].control, {"cmd": "originate", "file": str(path)}, timeout=60.0)

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> float:
        """Poll ``predicate`` until true; return the seconds it took, or raise naming ``what``."""
        start = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{what}: not reached within {timeout:.1f}s; last statuses: "
                                   f"{self._summary()}")
            time.sleep(poll)

    def _summary(self) -> str:
        out = {}
        for i, spec in self.peers.items():
            if spec.child is None or not spec.child.alive():
                out[i] = "dead"
                continue
            try:
                s = self.status(i)
                out[i] = {k: s[k] for k in ("size", "digest", "neighbours_up", "pending")}
            except (OSError, ValueError) as exc:
                out[i] = f"unreachable: {exc}"
        return json.dumps(out)

    def converged(self, ids: list[int], size: int | None = None) -> bool:
        st = self.statuses(ids)
        digests = {s["digest"] for s in st.values()}
        return len(digests) == 1 and (size is None or all(s["size"] == size for s in st.values()))

    def tails(self, lines: int = 15) -> str:
        """The end of every peer's log, for a failing test's report."""
        return "\n".join(f"--- peer{i} ---\n{spec.child.tail(lines)}" for i, spec in self.peers.items()
                         if spec.child is not None)

    def close(self) -> None:
        self.supervisor.stop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "PeerMesh":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
