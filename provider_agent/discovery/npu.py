"""Huawei Ascend NPU discovery from ``npu-smi info`` (the box-drawn table).

The first table has two rows per NPU:

    | 12    910B2C              | OK            | 91.3        53                0    / 0             |
    | 0                         | 0000:D9:00.0  | 0           0    / 0          52675/ 65536         |

(NPU id and name / health / power, temperature, hugepages) then (chip / bus id / AICore %,
memory used/total, HBM used/total in MB). The second table (processes) is ignored.

Invariants: an NPU whose second row is missing or unreadable is still counted, with its
memory unknown and a warning; npu-smi's "MB" are mebibytes (65536 MB = 64 GiB HBM), so the
HBM total is taken as MiB.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings

log = logging.getLogger(__name__)

_FIRST = re.compile(r"^\|\s*(\d+)\s+(\S+)\s*\|\s*(\S+)\s*\|(.*)\|$")
_SECOND = re.compile(r"^\|\s*(\d+)\s*\|\s*([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s*\|(.*)\|$")
_HBM = re.compile(r"(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class NpuFacts:
    devices: tuple[DeviceCapability, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()
    version: str | None = None


def parse_npu_smi(text: str, source: str = "npu-smi.txt") -> NpuFacts:
    w = Warnings(source)
    if text and not text.endswith("\n"):
        w.add("text does not end with a newline: the output may be truncated")
    version = None
    m = re.search(r"npu-smi (\S+)", text)
    if m:
        version = m.group(1)
    else:
        w.add("no 'npu-smi VERSION' banner: not npu-smi info output?")
    npus: list[dict[str, object]] = []
    in_process_table = False
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if "Process id" in line:
            in_process_table = True
        if in_process_table or not line.startswith("|") or "npu-smi" in line:
            continue
        if re.match(r"^\|\s*(NPU|Chip)\s", line):
            continue  # column headings
        first = _FIRST.match(line)
        second = _SECOND.match(line)
        if second and npus and npus[-1].get("bus") is None:
            hbm = _HBM.search(second.group(3))
            npus[-1]["bus"] = second.group(2)
            if hbm:
                npus[-1]["hbm"] = int(hbm.group(2))
            else:
                w.add(f"line {lineno}: HBM usage of NPU {npus[-1]['id']} not readable")
        elif first:
            npus.append({"id": int(first.group(1)), "name": first.group(2), "health": first.group(3)})
        else:
            w.add(f"line {lineno} not understood: {line[:60]!r}")
    groups: dict[tuple[str, int | None], int] = {}
    for npu in npus:
        if npu.get("bus") is None:
            w.add(f"NPU {npu['id']} has no second row (bus id, HBM): memory unknown")
        if npu["health"] != "OK":
            w.add(f"NPU {npu['id']} health is {npu['health']!r}")
        key = (f"Ascend {npu['name']}", npu.get("hbm"))  # type: ignore[arg-type]
        groups[key] = groups.get(key, 0) + 1  # type: ignore[index]
    if not npus:
        w.add("no NPU rows")
    devices = []
    for (name, hbm), n in groups.items():
        spec = catalog.lookup(name)
        if spec is None:
            w.add(catalog.explain(name))
        devices.append(DeviceCapability(
            DeviceClass.NPU, name, "Huawei", count=n, memory_mib=hbm,
            compute_units=spec.compute_units if spec else None,
            flops=spec.flops if spec else (),
            memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
            interconnect=spec.interconnect if spec else None))
    return NpuFacts(tuple(devices), w.freeze(), version)
