"""The text forms of nvidia-smi: its default table (``nvidia-smi``) and its list (``nvidia-smi -L``).

Contributors paste these more than any other form, and they are what shows MIG instances when
``-q -x`` is not at hand:

- the default table has three rows per GPU (index, name, persistence | bus id | ECC; fan, temp,
  power | ``used / total`` memory | utilisation; an empty row | MIG mode) and, in MIG mode, a
  ``MIG devices:`` table with one two-row entry per instance: ``GPU GI CI MIG | used / total MiB |
  SM count ...``. Drivers up to 5xx head it ``Driver Version``, 610 ``KMD Version``; the fields
  read do not move;
- ``-L`` prints ``GPU i: NAME (UUID: ...)`` and, under a GPU in MIG mode, one
  ``MIG <profile> Device j: (UUID: ...)`` line per instance; the profile (``3g.40gb``) says the
  instance's compute slices and nominal memory, never its exact MiB.

Invariants: rows are matched to their GPU by index; a name the table cut short (``...``) is kept
with a warning; whatever cannot be read is a warning with its line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provider_agent.discovery.common import Warnings

_GPU_ROW = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(On|Off)\s+\|\s+([0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s+\S+\s+\|")
_MEM_ROW = re.compile(r"^\|.*\|\s*(\d+)MiB\s*/\s*(\d+)MiB\s*\|")
_MODE_ROW = re.compile(r"^\|\s*\|\s*\|\s*(Enabled|Disabled|N/A)\s*\|$")
_MIG_ROW = re.compile(r"^\|\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\|\s+(\d+)MiB\s*/\s*(\d+)MiB\s+\|\s+(\d+)\s")
_LIST_GPU = re.compile(r"^GPU (\d+): (.+?) \(UUID: [^)]*\)\s*$")
_LIST_MIG = re.compile(r"^\s+MIG (\d+g\.\d+gb(?:\+\w+)?)\s+Device\s+(\d+): \(UUID: [^)]*\)\s*$")


@dataclass(frozen=True, slots=True)
class TableGpu:
    index: int
    name: str
    memory_mib: int | None
    mig: bool


@dataclass(frozen=True, slots=True)
class MigRow:
    """One MIG instance of the default table (``GPU GI CI MIG | memory | SM``)."""

    gpu: int
    gi: int
    ci: int
    device: int
    memory_mib: int
    sms: int


@dataclass(frozen=True, slots=True)
class SmiTable:
    gpus: tuple[TableGpu, ...]
    mig: tuple[MigRow, ...]
    driver: str | None


@dataclass(frozen=True, slots=True)
class SmiList:
    """``nvidia-smi -L``: GPU index -> (name, {MIG device index: profile})."""

    gpus: dict[int, tuple[str, dict[int, str]]]


def parse_table(text: str, w: Warnings) -> SmiTable:
    gpus: list[TableGpu] = []
    rows: list[MigRow] = []
    pending: dict[str, object] | None = None
    in_mig = in_processes = started = False
    m = re.search(r"(?:Driver|KMD) Version:\s*(\S+)", text)
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if "MIG devices:" in line:
            in_mig, in_processes = True, False
        elif "Processes:" in line:
            in_mig, in_processes = False, True
        if started and line and not line.startswith(("|", "+")):
            w.add(f"line {lineno} is not part of the nvidia-smi table: {line[:60]!r}")
            continue
        started = started or line.startswith("+")
        if in_processes or not line.startswith("|") or set(line) <= set("|+-= "):
            continue
        gpu = _GPU_ROW.match(line)
        mig = _MIG_ROW.match(line) if in_mig else None
        if gpu and not in_mig:
            pending = _flush(pending, gpus, w)
            pending = {"index": int(gpu.group(1)), "name": gpu.group(2).strip(), "line": lineno}
        elif mig:
            g = [int(x) for x in mig.groups()]
            rows.append(MigRow(g[0], g[1], g[2], g[3], g[5], g[6]))
        elif pending is not None and "memory" not in pending and (mem := _MEM_ROW.match(line)):
            pending["memory"] = int(mem.group(2))
        elif pending is not None and (mode := _MODE_ROW.match(line)):
            pending["mig"] = mode.group(1) == "Enabled"
        elif in_mig and re.match(r"^\|\s+\d+\s+\d+", line):
            w.add(f"line {lineno}: MIG device row not understood: {line[:70]!r}")
    _flush(pending, gpus, w)
    return SmiTable(tuple(gpus), tuple(rows), m.group(1) if m else None)


def _flush(pending: dict[str, object] | None, gpus: list[TableGpu], w: Warnings) -> None:
    if pending is None:
        return None
    name = str(pending["name"])
    if name.endswith("..."):
        w.add(f"GPU {pending['index']}: the table cut its name short ({name!r}): run nvidia-smi -L for the full name")
    memory = pending.get("memory")
    if memory is None:
        w.add(f"GPU {pending['index']} ({name}): no 'used / total MiB' row: memory unknown")
    gpus.append(TableGpu(int(pending["index"]), name, memory if isinstance(memory, int) else None,  # type: ignore[arg-type]
                         bool(pending.get("mig", False))))
    return None


def parse_list(text: str, w: Warnings) -> SmiList:
    gpus: dict[int, tuple[str, dict[int, str]]] = {}
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        gpu = _LIST_GPU.match(line)
        mig = _LIST_MIG.match(line)
        if gpu:
            current = int(gpu.group(1))
            gpus[current] = (gpu.group(2).strip(), {})
        elif mig and current is not None:
            gpus[current][1][int(mig.group(2))] = mig.group(1)
        else:
            w.add(f"nvidia-smi -L line {lineno} not understood: {line.strip()[:70]!r}")
    return SmiList(gpus)


def profile_slices(profile: str) -> int | None:
    """Compute slices of a MIG profile: ``3g.40gb`` -> 3."""
    m = re.match(r"^(\d+)g\.", profile)
    return int(m.group(1)) if m else None
