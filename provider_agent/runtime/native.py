"""The native process runtime (opt-in): a provider's own installed programs under rlimits.

Security model. A buyer never sends a program. The provider names an allowlist of programs
installed on its machine (``cona-agent run --native-program sha256sum=/usr/bin/sha256sum``,
``NAME=PATH [FIXED ARGS]``); a buyer's spec names one of them and supplies only the stdin
bytes and the CPU seconds it pays for. So the threat is hostile *input* to a trusted program,
and the limits below bound what that input can make the program do:

- a fresh private working directory (``mkdtemp``: mode 0700) under the agent's state
  directory, the child's cwd, HOME and TMPDIR; removed afterwards, whatever the outcome;
- ``setrlimit`` in the child before ``exec``: RLIMIT_CPU (soft = the CPU seconds, hard one
  more: SIGXCPU, then SIGKILL), RLIMIT_AS (address space), RLIMIT_NOFILE, RLIMIT_FSIZE (the
  largest file it may write), RLIMIT_CORE 0, and RLIMIT_NPROC only when asked for
  (``procs=N``): the kernel counts *every* process of the agent's uid against it, so it is
  only meaningful when the agent runs as a dedicated user;
- a new session (``setsid``): the program and everything it forks form one process group,
  and the parent SIGKILLs the whole group on a wall-clock timeout, on an output overflow
  and after the program exits (nothing of a lease outlives it). A descendant that calls
  ``setsid`` itself escapes the group; only cgroups or a PID namespace would stop that, and
  this runtime uses neither (the programs are the provider's own);
- a minimal environment (``PATH``, ``HOME``, ``TMPDIR``, ``LANG``): nothing of the agent's
  environment - keystore passphrases, RPC tokens - is inherited; all other fds are closed;
- stdin is the buyer's input (an unlinked temporary file); stdout is captured up to a bound
  (past it the group is killed and the status is ``output``, the prefix kept); stderr is
  kept as a short tail for the ``detail`` only.

Result. ``NativeResult`` has the wasm runtime's shape (status, exit code, output, wall time,
detail) and the same ``result_hash`` over the same canonical bytes (status, 0x00, exit code
int32 big-endian, stdout). Statuses: ``ok``, ``exit`` (non-zero exit), ``signal``,
``cpu-limit``, ``memory-limit``, ``files-limit``, ``fsize-limit``, ``wall-timeout``,
``output``, ``exec-error``. A signal gives exit code ``-signum``. RLIMIT_AS and RLIMIT_NOFILE
are not signalled by the kernel - the program sees a failing ``mmap``/``open`` and decides
what to do - so ``memory-limit``/``files-limit`` are recognised from a failed program's
stderr (``MemoryError``, ``Cannot allocate memory``, ``Too many open files``...): best effort.

Usage is the CPU time (user + system) of the program and the descendants it waited for, from
``os.wait4``'s rusage. Unlike WebAssembly fuel it is NOT reproducible: the same program on
other hardware, or the same machine under other load, takes other CPU time and may print
other bytes; no one can re-run a native lease to check its result or its bill. That is why a
buyer opts in too, by asking for ``"runtime": "native"``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import resource
import selectors
import shlex
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from marketplace.errors import InputError
from marketplace.results import ResultRecord
from provider_agent.runtime.scratch import remove_tree as _remove

log = logging.getLogger(__name__)

MIB = 1024 * 1024
#: the only environment a native program sees (HOME and TMPDIR are added: its working directory)
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
STDERR_TAIL = 4096
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: how long the parent waits for the pipes to close after it killed the group
DRAIN_SECONDS = 1.0
#: stderr lines by which a failed program says an rlimit stopped it (the kernel does not signal these)
MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory", "Out of memory", "bad_alloc",
                  "memory exhausted", "failed to allocate")
FILES_MARKERS = ("Too many open files",)
FSIZE_MARKERS = ("File too large",)


class NativeConfigError(InputError):
    """A ``--native-program`` or ``--native-limits`` value that cannot be used (names the field)."""

    code = "native-config"


@dataclass(frozen=True, slots=True)
class NativeLimits:
    """Per-run limits. ``cpu_seconds`` is lowered to the buyer's ``cpu_s`` for each lease."""

    cpu_seconds: int = 60
    memory_mib: int = 1024
    open_files: int = 64
    wall_seconds: float = 120.0
    file_size_mib: int = 64
    processes: int | None = None
    max_output_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        checks = (("cpu", self.cpu_seconds >= 1), ("mem", self.memory_mib >= 16), ("files", self.open_files >= 4),
                  ("wall", self.wall_seconds > 0), ("fsize", self.file_size_mib >= 0),
                  ("procs", self.processes is None or self.processes >= 1), ("output", self.max_output_bytes >= 1))
        for name, good in checks:
            if not good:
                raise NativeConfigError(f"native limit {name} is out of range", field=f"native_limits.{name}",
                                        hint="cpu>=1 s, mem>=16 MiB, files>=4, wall>0 s, fsize>=0 MiB, procs>=1")


@dataclass(frozen=True, slots=True)
class NativeProgram:
    """An allowlisted program: the name buyers use, and the argv it runs (argv[0] absolute)."""

    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NativeResult:
    """One run's outcome; ``cpu_seconds`` is the metered usage, ``result_hash`` goes on chain."""

    status: str
    exit_code: int
    output: bytes
    cpu_seconds: float
    wall_ms: float
    detail: str = ""
    output_truncated: bool = False
    max_rss_kib: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def result_hash(self) -> bytes:
        """What a provider commits on chain (``marketplace.results``)."""
        return ResultRecord(self.status, self.exit_code, self.output).digest


# -- pure parsing ---------------------------------------------------------------------------

_LIMIT_KEYS = {"cpu": "cpu_seconds", "mem": "memory_mib", "files": "open_files", "wall": "wall_seconds",
               "fsize": "file_size_mib", "procs": "processes", "output": "max_output_bytes"}


def parse_limits(text: str, base: NativeLimits = NativeLimits()) -> NativeLimits:
    """``cpu=S,mem=MiB,files=N,wall=S[,fsize=MiB][,procs=N][,output=MiB]`` over ``base``'s defaults."""
    values: dict[str, object] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in _LIMIT_KEYS:
            raise NativeConfigError(f"bad native limit {part!r}", field="native_limits",
                                    hint=f"KEY=VALUE with KEY one of {', '.join(_LIMIT_KEYS)}")
        try:
            num = float(val) if key == "wall" else int(val)
        except ValueError:
            raise NativeConfigError(f"native limit {key}={val!r} is not a number", field=f"native_limits.{key}") \
                from None
        values[_LIMIT_KEYS[key]] = num * MIB if key == "output" else num
    return replace(base, **values)


def parse_program(text: str) -> NativeProgram:
    """``NAME=/abs/path [fixed args]`` (shell-quoted); the file itself is checked by ``check_program``."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise NativeConfigError(f"bad native program {text!r}", field="native_program",
                                hint="NAME=/absolute/path, NAME of lower-case letters, digits, '.', '_', '-'")
    try:
        argv = tuple(shlex.split(rest))
    except ValueError as exc:
        raise NativeConfigError(f"native program {name}: {exc}", field="native_program") from None
    if not argv or not os.path.isabs(argv[0]):
        raise NativeConfigError(f"native program {name}: the path must be absolute", field="native_program",
                                hint="the agent's children run with a fixed PATH; name the file itself")
    return NativeProgram(name, argv)


def check_program(program: NativeProgram) -> NativeProgram:
    """The program's file exists, is a regular file and executable by us (its symlinks resolved)."""
    path = Path(program.argv[0])
    try:
        st = path.stat()
    except OSError as exc:
        raise NativeConfigError(f"native program {program.name}: {path}: {exc.strerror}",
                                field="native_program") from None
    if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
        raise NativeConfigError(f"native program {program.name}: {path} is not an executable file",
                                field="native_program")
    return program


def allowlist(programs: Iterable[NativeProgram]) -> dict[str, NativeProgram]:
    out: dict[str, NativeProgram] = {}
    for p in programs:
        if p.name in out:
            raise NativeConfigError(f"native program {p.name} is named twice", field="native_program")
        out[p.name] = p
    return out


def usage_for_cpu(cpu_seconds: float, units: int, remaining_seconds: int) -> int:
    """Unit-seconds billed for a native run: ceil(CPU seconds), at least 1, at most
    ``units x remaining_seconds`` (the contract's bound), as ``daemon.usage_for`` bounds fuel."""
    used = max(1, math.ceil(cpu_seconds))
    return min(used, units * remaining_seconds)


def child_environment(workdir: str) -> dict[str, str]:
    return {"PATH": SAFE_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}


def classify(*, returncode: int, cpu_seconds: float, limits: NativeLimits, killed_for: str | None,
             stderr_tail: bytes) -> tuple[str, str]:
    """(status, detail) of a finished run. ``returncode`` is ``-signum`` for a signal;
    ``killed_for`` is what made the parent kill the group (``wall-timeout``, ``output``)."""
    err = stderr_tail.decode("utf-8", "replace")
    last = next((line.strip() for line in reversed(err.splitlines()) if line.strip()), "")
    if killed_for == "wall-timeout":
        return "wall-timeout", f"wall-clock limit of {limits.wall_seconds:g} s reached"
    if killed_for == "output":
        return "output", f"output over {limits.max_output_bytes} bytes"
    if returncode == -signal.SIGXCPU or (returncode == -signal.SIGKILL and cpu_seconds >= limits.cpu_seconds):
        return "cpu-limit", f"CPU limit of {limits.cpu_seconds} s reached ({cpu_seconds:.2f} s used)"
    if returncode == -signal.SIGXFSZ:
        return "fsize-limit", f"file size limit of {limits.file_size_mib} MiB reached"
    if returncode == 0:
        return "ok", ""
    for markers, status, what in ((MEMORY_MARKERS, "memory-limit", f"memory limit of {limits.memory_mib} MiB"),
                                  (FILES_MARKERS, "files-limit", f"open-files limit of {limits.open_files}"),
                                  (FSIZE_MARKERS, "fsize-limit", f"file size limit of {limits.file_size_mib} MiB")):
        if any(m in err for m in markers):
            return status, f"{what} reached: {last[:200]}"
    if returncode < 0:
        return "signal", f"killed by {signal.Signals(-returncode).name}" if -returncode in signal.valid_signals() \
            else f"killed by signal {-returncode}"
    return "exit", last[:200]


# -- the adapter (processes) ------------------------------------------------------------------

def _set_limits(limits: NativeLimits):
    """The child's ``preexec_fn``: only ``setrlimit`` and ``umask`` (no allocation-heavy work
    between fork and exec in a threaded parent)."""
    cpu = limits.cpu_seconds
    mem = limits.memory_mib * MIB
    files = limits.open_files
    fsize = limits.file_size_mib * MIB
    procs = limits.processes

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if procs is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (procs, procs))
        os.umask(0o077)

    return apply


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # the group is gone and its id reused by someone else's: nothing of ours left
        pass


class NativeRuntime:
    """Runs allowlisted programs under ``NativeLimits`` in private directories under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def run(self, program: NativeProgram | Sequence[str], stdin: bytes, limits: NativeLimits) -> NativeResult:
        argv = list(program.argv if isinstance(program, NativeProgram) else program)
        name = program.name if isinstance(program, NativeProgram) else os.path.basename(argv[0])
        workdir = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))  # mode 0700
        try:
            return self._run(name, argv, stdin, limits, workdir)
        finally:
            _remove(workdir)

    def _run(self, name: str, argv: list[str], data: bytes, limits: NativeLimits, workdir: Path) -> NativeResult:
        started = time.perf_counter()
        try:
            proc = self._spawn(argv, data, limits, workdir)
        except (OSError, subprocess.SubprocessError) as exc:
            wall_ms = (time.perf_counter() - started) * 1000
            log.warning("native %s: cannot execute %s: %s", name, argv[0], exc)
            return NativeResult("exec-error", 127, b"", 0.0, wall_ms, f"cannot execute {argv[0]}: {exc}")
        output, killed_for, code, usage = _supervise(proc, limits)
        wall_ms = (time.perf_counter() - started) * 1000
        cpu = usage.ru_utime + usage.ru_stime
        out = output.out
        truncated = len(out) > limits.max_output_bytes
        if truncated:
            if killed_for is None:  # the last chunks came after the exit: still over the bound
                killed_for = "output"
            del out[limits.max_output_bytes:]
        status_name, detail = classify(returncode=code, cpu_seconds=cpu, limits=limits, killed_for=killed_for,
                                       stderr_tail=bytes(output.err))
        log.info("native %s: %s (exit %d) cpu %.3f s wall %.1f ms output %d bytes%s", name, status_name, code, cpu,
                 wall_ms, len(out), " (truncated)" if truncated else "")
        return NativeResult(status_name, code, bytes(out), cpu, wall_ms, detail, truncated, usage.ru_maxrss)

    def _spawn(self, argv: list[str], data: bytes, limits: NativeLimits, workdir: Path) -> subprocess.Popen:
        """Start the program in its own session, under ``limits``, with ``data`` as its stdin."""
        with tempfile.TemporaryFile(dir=self.root) as stdin:  # unlinked: the program sees only the fd
            stdin.write(data)
            stdin.flush()
            stdin.seek(0)
            return subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=workdir, env=child_environment(str(workdir)), close_fds=True,
                                    start_new_session=True, preexec_fn=_set_limits(limits))


class _Output:
    """What a running program has written: its stdout, and the last ``STDERR_TAIL`` bytes of stderr."""

    __slots__ = ("out", "err")

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()

    def read(self, sel: selectors.BaseSelector, key: selectors.SelectorKey, keep_out: bool = True) -> None:
        """Read what is ready on ``key``'s pipe (stdout is dropped unless ``keep_out``); at EOF
        stop watching it."""
        chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
        if not chunk:
            sel.unregister(key.fileobj)
        elif key.data == "out":
            if keep_out:
                self.out += chunk
        else:
            self.err = (self.err + chunk)[-STDERR_TAIL:]


def _supervise(proc: subprocess.Popen, limits: NativeLimits) -> tuple[_Output, str | None, int, resource.struct_rusage]:
    """Watch the program to its end, kill its process group, drain its pipes and reap it:
    what it wrote, why it was killed (None if it exited by itself), its exit code, its rusage."""
    pid = proc.pid
    output = _Output()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")  # type: ignore[arg-type]
    sel.register(proc.stderr, selectors.EVENT_READ, "err")  # type: ignore[arg-type]
    try:
        pidfd = os.pidfd_open(pid)  # readable once the program exits: no polling latency
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    except OSError:
        pidfd = -1
    try:
        killed_for = _watch(pid, sel, pidfd, limits, output)
        _kill_group(pid)  # the timeout, an overflow, or what the program left running
        if pidfd >= 0:
            sel.unregister(pidfd)  # always readable from now on
        drain_until = time.monotonic() + DRAIN_SECONDS
        while sel.get_map() and time.monotonic() < drain_until:
            for key, _ in sel.select(timeout=0.05):
                output.read(sel, key, keep_out=len(output.out) <= limits.max_output_bytes)
        _, status, usage = os.wait4(pid, 0)
    finally:
        sel.close()
        if pidfd >= 0:
            os.close(pidfd)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by us: Popen must not wait for it again
    return output, killed_for, code, usage


def _watch(pid: int, sel: selectors.BaseSelector, pidfd: int, limits: NativeLimits, output: _Output) -> str | None:
    """Read the program's output until it exits (None), its wall time is up ("wall-timeout")
    or its stdout passes the bound ("output")."""
    deadline = time.monotonic() + limits.wall_seconds
    while True:
        # WNOWAIT: learn that it exited without reaping it, so its pid (= our group id)
        # cannot be reused before the group is killed
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            return "wall-timeout"
        for key, _ in sel.select(timeout=min(left, 0.05 if pidfd < 0 else left)):
            if key.data != "exit":
                output.read(sel, key)
        if len(output.out) > limits.max_output_bytes:
            return "output"
