"""A run's workspace: the buyer's input files read-only, a size-capped scratch, outputs collected under caps.

Layout, the same for every runtime (the guest sees ``/input``, ``/work`` and ``/work/out``)::

    ROOT/run-XXXX/          mode 0700, removed after the run whatever happened
        input/              the buyer's input files (mode 0444 in a 0555 tree), mapped read-only
        work/               the scratch: a tmpfs of ``scratch_bytes`` (and ``SCRATCH_INODES``
                            inodes) when the agent may mount one, mapped read-write
            out/            what the run leaves here is its output files

Invariants:
- the scratch is the only place a workload writes: when it is a tmpfs the kernel stops it at its
  size (ENOSPC) and at its inode count, so a disk-filling or file-spraying workload cannot touch
  the agent's disk; without the right to mount (an agent that is not root) it is a plain
  directory whose size is checked after the run (``over_quota``), which bounds what is kept, not
  what was written: docs/agent.md says so;
- collected output files are regular files only, opened with ``O_NOFOLLOW`` and checked with
  ``fstat``: a symlink planted in ``out/`` (to the agent's key, say) is never followed, a FIFO
  never opened for reading; their count, each size and their total are capped and a run over
  any cap keeps no file at all (``Collected.problem`` says which cap);
- input names are plain relative paths (``marketplace.results.OutputFile``'s rule), never ``..``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

from marketplace.errors import InputError
from marketplace.results import OutputFile, ResultRecord

log = logging.getLogger(__name__)

MIB = 1024 * 1024
INPUT, WORK, OUT = "input", "work", "out"
#: files and directories a scratch may hold: enough for real work, few enough to walk quickly
SCRATCH_INODES = 16384
#: a file the collector will not descend past (a deep tree is a denial of service, not output)
MAX_DEPTH = 8
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2

InputData = Union[bytes, Path]


@dataclass(frozen=True, slots=True)
class OutputCaps:
    """What a run may leave in ``out/``: file count, bytes per file, bytes in all."""

    max_files: int = 64
    max_file_bytes: int = 64 * MIB
    max_total_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        if self.max_files < 0 or self.max_file_bytes < 0 or self.max_total_bytes < 0:
            raise InputError("output caps must not be negative", field="output_caps")


@dataclass(frozen=True, slots=True)
class OutputBlob:
    """One collected output file and its bytes."""

    name: str
    data: bytes

    @property
    def info(self) -> OutputFile:
        return OutputFile(self.name, len(self.data), hashlib.sha256(self.data).digest())


class RunOutcome:
    """What every runtime's result shares (mixed into the wasm, container and workbench results, whose
    dataclass fields ``status``, ``exit_code``, ``output`` and ``files`` it reads): whether the run
    ended well, and the record a provider commits on chain (``marketplace.results``)."""

    status: str
    exit_code: int
    output: bytes
    files: tuple[OutputBlob, ...]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def record(self) -> ResultRecord:
        return ResultRecord(self.status, self.exit_code, self.output, tuple(f.info for f in self.files))

    @property
    def result_hash(self) -> bytes:
        """What a provider commits on chain."""
        return self.record.digest


@dataclass(frozen=True, slots=True)
class Collected:
    """The output files of a run; ``over_cap`` names the cap a run exceeded (then there are none)."""

    files: tuple[OutputBlob, ...]
    over_cap: str = ""
    skipped: str = ""  # entries that are not regular files (symlinks, FIFOs...): never collected


def check_name(name: str, what: str = "input") -> str:
    """``name`` if it is a plain relative path (no ``..``, no absolute path, no empty part)."""
    try:
        OutputFile(name, 0, bytes(32))
    except InputError:
        raise InputError(f"{what} file name {name!r} is not a plain relative path", field=f"{what}s") from None
    return name


_libc = None


def _mount_tmpfs(path: Path, size: int, uid: int, gid: int) -> bool:
    """Mount a tmpfs of ``size`` bytes on ``path``; False when this process may not mount."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    opts = f"size={size},nr_inodes={SCRATCH_INODES},mode=0700,uid={uid},gid={gid}".encode()
    if _libc.mount(b"cona-scratch", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) == 0:
        return True
    err = ctypes.get_errno()
    if err not in (errno.EPERM, errno.EACCES):
        log.warning("cannot mount a tmpfs on %s: %s", path, os.strerror(err))
    return False


def _umount(path: Path) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        log.warning("cannot unmount %s: %s", path, os.strerror(ctypes.get_errno()))


def unmount_tree(path: Path) -> int:
    """Unmount everything mounted at or under ``path`` (deepest first); returns how many."""
    base = str(Path(path).resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return 0
    # mount points are octal-escaped in /proc/self/mounts (a space is \040)
    points = [ln.split()[1].encode().decode("unicode_escape") for ln in lines if len(ln.split()) > 1]
    inside = sorted({p for p in points if p == base or p.startswith(base + "/")}, key=len, reverse=True)
    for point in inside:
        _umount(Path(point))
    return len(inside)


class Workspace:
    """One run's directories; ``close`` removes them (and unmounts the scratch)."""

    def __init__(self, parent: Path, scratch_bytes: int, inputs: Mapping[str, InputData] | None = None,
                 owner: tuple[int, int] = (0, 0), mount: bool = True) -> None:
        if scratch_bytes < 64 * 1024:
            raise InputError("the scratch must be at least 64 KiB", field="scratch_bytes")
        self.scratch_bytes = scratch_bytes
        self.root = Path(tempfile.mkdtemp(prefix="run-", dir=parent))  # mode 0700
        self.input = self.root / INPUT
        self.work = self.root / WORK
        self.out = self.work / OUT
        self.mounted = False
        try:
            self.work.mkdir()
            self.mounted = mount and _mount_tmpfs(self.work, scratch_bytes, *owner)
            self.out.mkdir()
            if not self.mounted:
                os.chmod(self.work, 0o700)
            if owner != (0, 0):
                os.chown(self.work, *owner)
                os.chown(self.out, *owner)
            self._place_inputs(inputs or {})
        except BaseException:
            self.close()
            raise

    def _place_inputs(self, inputs: Mapping[str, InputData]) -> None:
        self.input.mkdir()
        for name, data in sorted(inputs.items()):
            target = self.input / check_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                shutil.copyfile(data, target)
            else:
                target.write_bytes(data)
            os.chmod(target, 0o444)
        for dirpath, dirnames, _ in os.walk(self.input):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o555)
        os.chmod(self.input, 0o555)
        os.chmod(self.root, 0o711)  # a container's non-root user must traverse to input/ and work/

    def used_bytes(self) -> int:
        """Bytes the scratch holds now (the tmpfs's own count when mounted)."""
        if self.mounted:
            st = os.statvfs(self.work)
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        total = 0
        for dirpath, _, files in os.walk(self.work):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
        return total

    def full(self) -> bool:
        """The scratch reached its size (a tmpfs full to the last page, or a directory over quota)."""
        if self.mounted:
            st = os.statvfs(self.work)
            return st.f_bavail * st.f_frsize < 64 * 1024 or st.f_favail == 0
        return self.used_bytes() > self.scratch_bytes

    def collect(self, caps: OutputCaps) -> Collected:
        """The regular files under ``out/``, within ``caps``; none at all when a cap is exceeded."""
        found: list[OutputBlob] = []
        skipped: list[str] = []
        total = 0
        stack: list[tuple[Path, str, int]] = [(self.out, "", 0)]
        while stack:
            directory, prefix, depth = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as exc:
                skipped.append(f"{prefix or './'}: {exc.strerror}")
                continue
            for entry in entries:
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if depth + 1 >= MAX_DEPTH:
                        return Collected((), f"output directory {name}/ is nested deeper than {MAX_DEPTH}")
                    stack.append((Path(entry.path), name + "/", depth + 1))
                    continue
                if len(found) >= caps.max_files:
                    return Collected((), f"more than {caps.max_files} output files")
                data, why = _read_regular(entry.path, caps.max_file_bytes)
                if data is None:
                    skipped.append(f"{name}: {why}")
                    continue
                if len(data) > caps.max_file_bytes:
                    return Collected((), f"output file {name} is over {caps.max_file_bytes} bytes")
                total += len(data)
                if total > caps.max_total_bytes:
                    return Collected((), f"output files over {caps.max_total_bytes} bytes in all")
                try:
                    found.append(OutputBlob(check_name(name, "output"), data))
                except InputError:
                    skipped.append(f"{name!r}: not a plain name")
        return Collected(tuple(found), "", "not collected: " + "; ".join(skipped[:8]) if skipped else "")

    def close(self) -> None:
        if self.mounted:
            _umount(self.work)
            self.mounted = False
        remove_tree(self.root)


def _read_regular(path: str, cap: int) -> tuple[bytes | None, str]:
    """The bytes of a regular file (at most ``cap + 1`` of them), never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return None, "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        chunks, left = [], cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), ""
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """``rmtree`` that also removes what a run made read-only."""

    def retry(func, p, _exc):  # a directory the run made read-only (or our own 0555 input tree)
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
