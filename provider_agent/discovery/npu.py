"""Huawei Ascend NPU discovery from ``npu-smi info`` (the box-drawn table).

Every chip is two rows, whatever the driver; what the second row holds changes:

    | 12    910B2C              | OK            | 91.3        53                0    / 0             |
    | 0                         | 0000:D9:00.0  | 0           0    / 0          52675/ 65536         |

- 23.0.x / 24.1 (one chip per NPU, Atlas 800T A2 class): ``Chip`` | bus id | AICore, DDR
  ``used / total``, HBM ``used / total`` (MB);
- 21.x and 310/310P/310B cards (``Chip Device``): ``chip device`` | bus id (``NA`` on 310B
  boards) | AICore, memory ``used / total``, no HBM column; a card with 4 chips is 4 row pairs
  under the same NPU id;
- 24.1+ Atlas A3 (``Chip Phy-ID``): two chips per NPU id, each its own row pair.

A chip is the device one lease gets (its own memory and bus id), so the device count is the
number of chip rows, grouped by name and memory. The second table (processes) is ignored.

Invariants: a chip whose second row is missing or unreadable is still counted, with its memory
unknown and a warning; npu-smi's "MB" are mebibytes (65536 MB = 64 GiB HBM); the memory read is
the HBM total where the header has an HBM column, else the memory column's total.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings, truncation

log = logging.getLogger(__name__)

_BUS = re.compile(r"^([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d|NA)$")
_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")


@dataclass(frozen=True, slots=True)
class NpuFacts:
    devices: tuple[DeviceCapability, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()
    version: str | None = None


@dataclass(slots=True)
class _Chip:
    npu: int
    name: str
    health: str
    line: int
    chip: str | None = None
    memory_mib: int | None = None


def _cells(line: str) -> list[str] | None:
    parts = line.rstrip().split("|")
    if len(parts) < 5 or parts[0] != "" or parts[-1] != "":
        return None
    return [p.strip() for p in parts[1:-1]]


def _chip_row(chip: _Chip, cells: list[str], hbm_column: bool | None, lineno: int, w: Warnings) -> None:
    chip.chip = cells[0].split()[0] if cells[0].split() else None
    pairs = [int(m.group(2)) for m in _PAIR.finditer(cells[2])]
    if not pairs:
        w.add(f"line {lineno}: memory of NPU {chip.npu} chip {chip.chip} not readable")
        return
    if hbm_column is None and len(pairs) > 1:
        hbm_column = True
    chip.memory_mib = pairs[-1] if hbm_column else pairs[0]
    if hbm_column and len(pairs) < 2:
        w.add(f"line {lineno}: NPU {chip.npu} chip {chip.chip} has no HBM 'used / total': memory unknown")
        chip.memory_mib = None


def _rows(text: str, w: Warnings) -> list[_Chip]:
    chips: list[_Chip] = []
    hbm_column: bool | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if "Process id" in line:
            break
        cells = _cells(line)
        if cells is None or "npu-smi" in line or len(cells) != 3:
            if line.startswith("|") and not set(line) <= set("|+-= ") and "npu-smi" not in line:
                w.add(f"line {lineno} not understood: {line[:60]!r}")
            continue
        if re.match(r"^(NPU|Chip)\b", cells[0]):
            if cells[0].startswith("Chip"):
                hbm_column = "HBM-Usage" in cells[2]
            continue  # column headings
        first = cells[0].split()
        if _BUS.match(cells[1]):
            if chips and chips[-1].chip is None:
                _chip_row(chips[-1], cells, hbm_column, lineno, w)
            else:
                w.add(f"line {lineno}: chip row without its NPU row: skipped")
        elif len(first) == 2 and first[0].isdigit() and re.fullmatch(r"[A-Za-z]+", cells[1]):
            chips.append(_Chip(int(first[0]), first[1], cells[1], lineno))
        else:
            w.add(f"line {lineno} not understood: {line[:60]!r}")
    return chips


def model_name(npu_smi_name: str) -> str:
    """``910B2C`` -> ``Ascend 910B2C``; ``Ascend910`` (Atlas A3) -> ``Ascend 910``."""
    return "Ascend " + re.sub(r"^Ascend\s*", "", npu_smi_name)


def parse_npu_smi(text: str, source: str = "npu-smi.txt") -> NpuFacts:
    w = Warnings(source)
    truncation(text, w)
    m = re.search(r"npu-smi (\S+)", text)
    version = m.group(1) if m else None
    if version is None:
        w.add("no 'npu-smi VERSION' banner: not npu-smi info output?")
    chips = _rows(text, w)
    if not chips:
        w.add("no NPU rows")
    groups: dict[tuple[str, int | None], int] = {}
    for c in chips:
        if c.chip is None:
            w.add(f"NPU {c.npu} ({c.name}, line {c.line}) has no second row (bus id, memory): memory unknown")
        if c.health != "OK":
            w.add(f"NPU {c.npu} chip {c.chip} health is {c.health!r}")
        key = (model_name(c.name), c.memory_mib)
        groups[key] = groups.get(key, 0) + 1
    devices = []
    for (name, mib), n in groups.items():
        spec = catalog.lookup(name)
        if spec is None:
            w.add(catalog.explain(name))
        devices.append(DeviceCapability(
            DeviceClass.NPU, name, "Huawei", count=n, memory_mib=mib,
            compute_units=spec.compute_units if spec else None, flops=spec.flops if spec else (),
            memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
            interconnect=spec.interconnect if spec else None))
    return NpuFacts(tuple(devices), w.freeze(), version)
