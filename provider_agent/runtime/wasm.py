"""The WebAssembly workload runtime: sandboxed, metered, and reproducible when asked to be.

A workload is a WASI preview 1 command (a ``_start`` export): the shipped modules of
``provider_agent.workloads`` or a buyer's own module. It sees stdin (the buyer's bytes),
stdout (kept up to ``max_output_bytes``), stderr (a 4 KiB tail kept for the detail), its
arguments (``argv[0]`` is ``main``), an empty environment and, when it imports file calls,
two preopened directories: ``/input`` with the buyer's input files, read-only, and ``/work``,
a size-capped scratch (``provider_agent.runtime.scratch``) whose ``/work/out`` is collected as
the run's output files. Nothing else of the host is reachable: no other path, no socket, no
process. Fuel, wasmtime's count of executed instructions, is the metered usage.

Determinism. A ``deterministic`` run (the default) refuses, before it runs, a module that
imports a clock (``clock_time_get``, ``clock_res_get``, ``poll_oneoff``) or randomness
(``random_get``): the same module with the same stdin, arguments and input files then prints
the same bytes, writes the same files and burns the same fuel on any machine, so anyone can
re-run the lease to check its result and its bill. A non-deterministic run may import them
and cannot be checked by re-execution. Both refuse sockets, ``proc_raise`` and every import
outside ``wasi_snapshot_preview1``. (File timestamps and inode numbers that ``fd_filestat_get``
reports are the host's: a module that reads them is not reproducible; docs/agent.md says so.)

Limits and statuses: fuel (``out_of_fuel``), wall-clock time (``timeout``, by epoch
interruption: one ticker per engine advances the epoch every ``TICK`` seconds and each run's
deadline counts ticks, so concurrent runs never interrupt each other), linear memory (past the
limit ``memory.grow`` fails; a run that then traps or fails while its memory is within a page
of the limit is ``memory-limit``), stdout (``output``: over the bound nothing is kept and the
module's further writes fail), output files (``output``, see ``scratch.Workspace.collect``),
the scratch (``disk-limit``: the tmpfs filled up and the run failed). Every run ends in a
``RunResult``; only a module that cannot be used raises ``WorkloadRejected``, before it runs.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import wasmtime

from marketplace.errors import AgentError, InputError
from provider_agent.runtime.scratch import MIB, InputData, OutputBlob, OutputCaps, RunOutcome, Workspace

log = logging.getLogger(__name__)

WASI = "wasi_snapshot_preview1"
#: calls whose answer depends on when or where the module runs: refused in a deterministic run
NONDETERMINISTIC = frozenset({"clock_time_get", "clock_res_get", "poll_oneoff", "random_get"})
#: never offered: there is no socket to use, and raising signals is not WASI's to do
NEVER = frozenset({"sock_accept", "sock_recv", "sock_send", "sock_shutdown", "proc_raise"})
#: what a module must import to reach a file: without them no workspace is prepared
FILE_CALLS = frozenset({"path_open", "fd_prestat_get"})
#: the guest's view of the workspace
INPUT_DIR, WORK_DIR, OUTPUT_DIR = "/input", "/work", "/work/out"
ARGV0 = "main"
STDERR_TAIL = 4096
#: the epoch ticker's period: the wall-clock limit's resolution
TICK = 0.01


class WorkloadRejected(InputError):
    """The module is not an acceptable workload (malformed, or it imports a forbidden host call)."""

    code = "workload-rejected"


@dataclass(frozen=True)
class Limits:
    fuel: int = 10_000_000_000
    memory_bytes: int = 256 * MIB
    wall_seconds: float = 60.0
    max_output_bytes: int = 16 * MIB
    scratch_bytes: int = 64 * MIB
    outputs: OutputCaps = field(default_factory=OutputCaps)

    def __post_init__(self) -> None:
        if self.fuel <= 0:
            raise InputError("fuel must be positive", field="fuel")
        if self.memory_bytes < 65536:
            raise InputError("memory limit must be at least one 64 KiB page", field="memory_bytes")
        if self.wall_seconds <= 0:
            raise InputError("wall-clock limit must be positive", field="wall_seconds")
        if self.max_output_bytes < 0:
            raise InputError("the output bound must not be negative", field="max_output_bytes")


@dataclass(frozen=True)
class RunResult(RunOutcome):
    """The outcome of one run. ``fuel_used`` is the metered usage; ``result_hash`` goes on chain."""

    status: str  # ok | exit | out_of_fuel | timeout | trap | memory-limit | disk-limit | output
    exit_code: int
    output: bytes
    fuel_used: int
    wall_ms: float
    detail: str = ""
    files: tuple[OutputBlob, ...] = ()
    stderr: bytes = b""
    memory_bytes: int = 0  # the linear memory's size when the run ended


def module_digest(module: bytes) -> str:
    return hashlib.sha256(module).hexdigest()


def check_imports(imports: Sequence[tuple[str, str]], deterministic: bool) -> None:
    """Refuse a module importing anything this run may not offer (names every offending import)."""
    foreign = sorted(f"{m}.{n}" for m, n in imports if m != WASI)
    if foreign:
        raise WorkloadRejected(f"the module imports {', '.join(foreign)}, which this runtime does not provide",
                               hint=f"a workload may import only {WASI} (WASI preview 1)", field="module")
    never = sorted(f"{m}.{n}" for m, n in imports if n in NEVER)
    if never:
        raise WorkloadRejected(f"the module imports {', '.join(never)}, which no workload may use",
                               hint="workloads have no sockets and no signals", field="module")
    clocks = sorted(f"{m}.{n}" for m, n in imports if n in NONDETERMINISTIC)
    if clocks and deterministic:
        raise WorkloadRejected(
            f"the module imports {', '.join(clocks)}, which a deterministic workload may not use",
            hint="remove clock and random calls, or run it as non-deterministic (it then cannot be verified "
                 "by re-execution)", field="module")


def compile_command(engine: wasmtime.Engine, module: bytes) -> wasmtime.Module:
    """``module`` compiled, when it validates and is a WASI command (exports ``_start``); else
    ``WorkloadRejected`` with the validator's reason."""
    try:
        wasmtime.Module.validate(engine, module)
        compiled = wasmtime.Module(engine, module)
    except wasmtime.WasmtimeError as exc:
        reason = " ".join(str(exc).split())  # wasmtime spreads one reason over lines (e.g. the magic bytes)
        raise WorkloadRejected(f"not a valid WebAssembly module: {reason[:300]}", field="module") from None
    if "_start" not in {e.name for e in compiled.exports}:
        raise WorkloadRejected("the module has no _start export (a WASI command)", field="module")
    return compiled


def module_imports(module: bytes, engine: wasmtime.Engine | None = None) -> tuple[tuple[str, str], ...]:
    """What a module imports, once it is known to be a usable workload in some run: it validates, is a
    command, and imports nothing a run never offers (a deterministic run may still refuse its clock
    or random imports: ``check_imports(imports, True)``). The market checks an uploaded module so."""
    compiled = compile_command(engine or wasmtime.Engine(), module)
    imports = tuple(sorted((i.module, i.name) for i in compiled.imports))
    check_imports(imports, deterministic=False)
    return imports


class EpochTicker:
    """Advances an engine's epoch every ``TICK`` seconds while at least one run is active."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self._active = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def deadline(self, seconds: float) -> int:
        return max(1, int(seconds / TICK) + 1)

    def __enter__(self) -> EpochTicker:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, name="wasm-epoch", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self._active -= 1

    def _tick(self) -> None:
        while True:
            with self._cond:
                if self._active == 0:
                    self._thread = None
                    return
            time.sleep(TICK)
            self.engine.increment_epoch()


class _Stream:
    """A WASI stdout/stderr sink: keeps ``cap`` bytes (or the last ``cap`` for a tail), then refuses."""

    def __init__(self, cap: int, tail: bool = False) -> None:
        self.cap, self.tail = cap, tail
        self.data = bytearray()
        self.overflow = False

    def __call__(self, chunk: bytes) -> int:
        if self.tail:
            self.data = (self.data + chunk)[-self.cap:]
            return len(chunk)
        if self.overflow or len(self.data) + len(chunk) > self.cap:
            self.overflow = True
            return -errno.EFBIG
        self.data += chunk
        return len(chunk)


class WasmRuntime:
    """Runs workloads under ``Limits``. One engine per runtime; modules are compiled once and cached.

    ``root`` holds the runs' workspaces (a private temporary directory when not given)."""

    def __init__(self, root: Path | None = None) -> None:
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        cfg.cranelift_nan_canonicalization = True  # NaN bit patterns identical on every CPU
        self.engine = wasmtime.Engine(cfg)
        self.ticker = EpochTicker(self.engine)
        self._root = Path(root) if root is not None else None
        self._modules: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="cona-wasm-"))
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root

    def compile(self, module: bytes) -> wasmtime.Module:
        """The compiled module (cached by sha256); refuses bytes that do not validate or are no command."""
        digest = module_digest(module)
        with self._lock:
            cached = self._modules.get(digest)
        if cached is not None:
            return cached
        compiled = compile_command(self.engine, module)
        with self._lock:
            self._modules[digest] = compiled
        return compiled

    def load(self, module: bytes, deterministic: bool = True) -> wasmtime.Module:
        """``compile``, then refuse imports the run may not offer."""
        compiled = self.compile(module)
        check_imports([(i.module, i.name) for i in compiled.imports], deterministic)
        return compiled

    def run(self, module: bytes, stdin: bytes = b"", limits: Limits = Limits(), *, args: Sequence[str] = (),
            inputs: Mapping[str, InputData] | None = None, deterministic: bool = True) -> RunResult:
        compiled = self.load(module, deterministic)
        needs_files = any(i.name in FILE_CALLS for i in compiled.imports)
        if inputs and not needs_files:
            log.info("run %s: the module opens no files; its %d input file(s) are not mapped",
                     module_digest(module)[:12], len(inputs))
        space = Workspace(self.root, limits.scratch_bytes, inputs) if needs_files else None
        try:
            result = self._execute(compiled, stdin, limits, [ARGV0, *args], space)
        finally:
            if space is not None:
                space.close()
        log.debug("run %s: %s code %d fuel %d in %.1f ms", module_digest(module)[:12], result.status,
                  result.exit_code, result.fuel_used, result.wall_ms)
        return result

    def _store(self, limits: Limits, stdin: bytes, argv: list[str], space: Workspace | None
               ) -> tuple[wasmtime.Store, _Stream, _Stream]:
        store = wasmtime.Store(self.engine)
        store.set_fuel(limits.fuel)
        store.set_limits(memory_size=limits.memory_bytes, instances=1, tables=4, memories=1)
        store.set_epoch_deadline(self.ticker.deadline(limits.wall_seconds))
        wasi = wasmtime.WasiConfig()
        wasi.argv = argv
        with tempfile.NamedTemporaryFile(dir=self.root, prefix="stdin-") as f:
            f.write(stdin)
            f.flush()
            wasi.stdin_file = f.name  # opened here: the name can go at once
        out, err = _Stream(limits.max_output_bytes), _Stream(STDERR_TAIL, tail=True)
        wasi.stdout_custom = out
        wasi.stderr_custom = err
        if space is not None:
            wasi.preopen_dir(str(space.input), INPUT_DIR, False)
            wasi.preopen_dir(str(space.work), WORK_DIR, True)
        store.set_wasi(wasi)
        return store, out, err

    def _execute(self, compiled: wasmtime.Module, stdin: bytes, limits: Limits, argv: list[str],
                 space: Workspace | None) -> RunResult:
        store, out, err = self._store(limits, stdin, argv, space)
        try:
            return self._call(store, out, err, compiled, limits, space)
        finally:
            # free the store (and the WASI context holding our Python stdout/stderr sinks) now, in a
            # live interpreter: a context freed during interpreter shutdown panics in wasmtime's runtime
            store.close()

    def _call(self, store: wasmtime.Store, out: _Stream, err: _Stream, compiled: wasmtime.Module, limits: Limits,
              space: Workspace | None) -> RunResult:
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        status, code, detail = "ok", 0, ""
        instance = None
        with self.ticker:
            started = time.perf_counter()
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
            wall_ms = (time.perf_counter() - started) * 1000
        fuel_used = limits.fuel - store.get_fuel()
        memory = _memory_size(instance, store)
        status, detail = _limit_status(status, detail, memory, limits, space)
        output, files = bytes(out.data), ()
        if out.overflow:
            status, detail, output = "output", f"stdout over {limits.max_output_bytes} bytes", b""
        elif space is not None:
            collected = space.collect(limits.outputs)
            files = collected.files
            if collected.over_cap:
                status, detail = "output", collected.over_cap
            elif collected.skipped:
                detail = f"{detail}; {collected.skipped}" if detail else collected.skipped
        return RunResult(status, code, output, fuel_used, wall_ms, detail, files, bytes(err.data), memory)


def _memory_size(instance: wasmtime.Instance | None, store: wasmtime.Store) -> int:
    if instance is None:
        return 0
    mem = instance.exports(store).get("memory")
    return mem.data_len(store) if isinstance(mem, wasmtime.Memory) else 0


def _limit_status(status: str, detail: str, memory: int, limits: Limits, space: Workspace | None
                  ) -> tuple[str, str]:
    """A failed run that was at a limit is reported as that limit (the module saw only a failed call)."""
    if status not in ("trap", "exit"):
        return status, detail
    if memory + 65536 > limits.memory_bytes:
        why = f"linear memory at its limit of {limits.memory_bytes} bytes"
        return "memory-limit", f"{why}: {detail}" if detail else why
    if space is not None and space.full():
        why = f"the scratch is full ({limits.scratch_bytes} bytes)"
        return "disk-limit", f"{why}: {detail}" if detail else why
    return status, detail


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
