"""The WebAssembly workload runtime: sandboxed, metered, reproducible.

A workload is a WASI module with a ``_start`` export. It reads its input on stdin and
writes its result on stdout; nothing else of the host is reachable (no files, no
network, no environment, no arguments). Fuel, wasmtime's count of executed
instructions, is the metered usage: the same module with the same input consumes the
same fuel and prints the same bytes on any machine, so anyone can re-run a lease to
check its result and its bill.

Determinism is enforced, not hoped for: a module that imports anything beyond
``fd_read``, ``fd_write``, ``proc_exit`` (and a few inert WASI calls) — a clock, a
random source, the file system — is refused before it runs.

Limits: fuel (a ``RunResult`` with status ``out_of_fuel``), wall-clock time (``timeout``,
through epoch interruption), output size (``output``), and linear memory: past the limit
``memory.grow`` fails, which a module sees as out-of-memory and ends in a ``trap`` (an
AssemblyScript allocator executes ``unreachable``); wasmtime's Python API offers no hook
to tell that trap from others, so it is reported as ``trap`` with the engine's message.
Every run ends in a ``RunResult``; only a module that cannot be loaded raises.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from marketplace.errors import AgentError, InputError
from marketplace.results import ResultRecord

log = logging.getLogger(__name__)

WASI = "wasi_snapshot_preview1"
#: WASI calls a workload may import: I/O on stdin/stdout and exiting. Everything else
#: (clock_time_get, random_get, path_open, sock_*, environ_get...) would make results
#: machine-dependent or reach outside the sandbox.
ALLOWED_IMPORTS = frozenset({
    (WASI, "fd_read"), (WASI, "fd_write"), (WASI, "proc_exit"), (WASI, "fd_close"),
    (WASI, "fd_fdstat_get"), (WASI, "fd_seek"),
})


class WorkloadRejected(InputError):
    """The module is not an acceptable workload (malformed, or it imports a forbidden host call)."""

    code = "workload-rejected"


@dataclass(frozen=True)
class Limits:
    fuel: int = 10_000_000_000
    memory_bytes: int = 256 * 1024 * 1024
    wall_seconds: float = 60.0
    max_output_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.fuel <= 0:
            raise InputError("fuel must be positive", field="fuel")
        if self.memory_bytes < 65536:
            raise InputError("memory limit must be at least one 64 KiB page", field="memory_bytes")
        if self.wall_seconds <= 0:
            raise InputError("wall-clock limit must be positive", field="wall_seconds")


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run. ``fuel_used`` is the metered usage; ``result_hash`` goes on chain."""

    status: str  # ok | exit | out_of_fuel | timeout | trap | output
    exit_code: int
    output: bytes
    fuel_used: int
    wall_ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def result_hash(self) -> bytes:
        """What a provider commits on chain (``marketplace.results``)."""
        return ResultRecord(self.status, self.exit_code, self.output).digest


def module_digest(module: bytes) -> str:
    return hashlib.sha256(module).hexdigest()


class WasmRuntime:
    """Runs workloads under ``Limits``. One engine per runtime; modules are compiled once and cached."""

    def __init__(self) -> None:
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        cfg.cranelift_nan_canonicalization = True  # NaN bit patterns identical on every CPU
        self.engine = wasmtime.Engine(cfg)
        self._modules: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()

    def load(self, module: bytes) -> wasmtime.Module:
        digest = module_digest(module)
        with self._lock:
            cached = self._modules.get(digest)
        if cached is not None:
            return cached
        try:
            compiled = wasmtime.Module(self.engine, module)
        except wasmtime.WasmtimeError as exc:
            raise WorkloadRejected(f"not a valid WebAssembly module: {str(exc).splitlines()[0]}",
                                   field="module") from None
        imports = [(i.module, i.name) for i in compiled.imports]
        forbidden = sorted(f"{m}.{n}" for m, n in imports if (m, n) not in ALLOWED_IMPORTS)
        if forbidden:
            raise WorkloadRejected(
                f"the module imports {', '.join(forbidden)}, which a deterministic workload may not use",
                hint="workloads may only read stdin, write stdout and exit", field="module")
        if "_start" not in {e.name for e in compiled.exports}:
            raise WorkloadRejected("the module has no _start export (a WASI command)", field="module")
        with self._lock:
            self._modules[digest] = compiled
        return compiled

    def run(self, module: bytes, stdin: bytes, limits: Limits = Limits()) -> RunResult:
        compiled = self.load(module)
        store = wasmtime.Store(self.engine)
        store.set_fuel(limits.fuel)
        store.set_limits(memory_size=limits.memory_bytes, instances=1, tables=4, memories=1)
        store.set_epoch_deadline(1)
        with tempfile.TemporaryDirectory(prefix="cona-run-") as tmp:
            in_path = Path(tmp) / "stdin"
            out_path = Path(tmp) / "stdout"
            in_path.write_bytes(stdin)
            out_path.touch()
            wasi = wasmtime.WasiConfig()
            wasi.stdin_file = str(in_path)
            wasi.stdout_file = str(out_path)
            store.set_wasi(wasi)
            linker = wasmtime.Linker(self.engine)
            linker.define_wasi()
            timer = threading.Timer(limits.wall_seconds, self.engine.increment_epoch)
            timer.daemon = True
            started = time.perf_counter()
            status, code, detail = "ok", 0, ""
            timer.start()
            try:
                instance = linker.instantiate(store, compiled)
                instance.exports(store)["_start"](store)
            except wasmtime.ExitTrap as exc:
                code = exc.code
                status = "ok" if code == 0 else "exit"
            except wasmtime.Trap as exc:
                status, detail = _classify_trap(exc, store)
                code = -1
            except wasmtime.WasmtimeError as exc:
                status, code, detail = "trap", -1, str(exc).splitlines()[0]
            finally:
                timer.cancel()
            wall_ms = (time.perf_counter() - started) * 1000
            fuel_used = limits.fuel - store.get_fuel()
            size = os.path.getsize(out_path)
            if size > limits.max_output_bytes:
                output = b""
                status, detail = "output", f"output of {size} bytes exceeds {limits.max_output_bytes}"
            else:
                output = out_path.read_bytes()
        log.debug("run %s: %s code %d fuel %d in %.1f ms", module_digest(module)[:12], status, code, fuel_used,
                  wall_ms)
        return RunResult(status, code, output, fuel_used, wall_ms, detail)


def _classify_trap(exc: wasmtime.Trap, store: wasmtime.Store) -> tuple[str, str]:
    text = str(exc)
    low = text.lower()
    if "all fuel consumed" in low or "fuel" in low and store.get_fuel() == 0:
        return "out_of_fuel", "all fuel consumed"
    if "interrupt" in low or "epoch" in low:
        return "timeout", "wall-clock limit reached"
    cause = [line.strip() for line in text.splitlines() if line.strip().startswith("wasm trap:")]
    return "trap", cause[0] if cause else text.splitlines()[0]


def require_ok(result: RunResult) -> RunResult:
    if not result.ok:
        raise AgentError(f"workload stopped: {result.status} (exit {result.exit_code}) {result.detail}".strip())
    return result
