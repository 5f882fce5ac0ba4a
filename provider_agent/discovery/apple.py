"""Mac discovery from ``system_profiler SPHardwareDataType SPDisplaysDataType``.

The text is indented ``Key: Value`` lines under ``Hardware:`` / ``Hardware Overview:`` and under
``Graphics/Displays:`` / ``<GPU name>:``. Fields read:

- Hardware: ``Chip: Apple M2 Pro`` (Apple silicon) or ``Processor Name`` and ``Number of
  Processors`` (Intel Macs); ``Total Number of Cores: 12 (8 performance and 4 efficiency)``;
  ``Memory: 16 GB`` (the unified memory; GB as Apple prints it are GiB);
- each GPU: ``Chipset Model``, ``Type: GPU``, ``Total Number of Cores`` (Apple GPUs), ``VRAM
  (Total)`` (discrete GPUs), ``Vendor``. The ``Displays:`` sub-block is skipped.

Invariants: performance and efficiency cores are separate CPU groups (like big.LITTLE clusters);
an Apple GPU shares the unified memory, so its ``memory_mib`` stays ``None`` and the node's memory
is the ``Memory`` line; a catalog figure is given only when the discovered GPU core count is the
configuration the figure was published for. The text is localised on non-English systems: then
no known section is found and a warning says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings, integer, truncation


@dataclass(frozen=True, slots=True)
class MacFacts:
    devices: tuple[DeviceCapability, ...]
    memory_mib: int | None
    warnings: tuple[DiscoveryWarning, ...] = ()


def _sections(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    hardware: dict[str, str] = {}
    gpus: list[dict[str, str]] = []
    top = None
    skip_indent = None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        if indent == 0:
            top, skip_indent = key, None
            continue
        if skip_indent is not None and indent > skip_indent:
            continue
        skip_indent = None
        if key == "Displays" and not value.strip():
            skip_indent = indent
        elif top == "Graphics/Displays" and indent == 4 and not value.strip():
            gpus.append({"_name": key})
        elif top == "Hardware" and value.strip():
            hardware[key] = value.strip()
        elif top == "Graphics/Displays" and gpus and value.strip():
            gpus[-1][key] = value.strip()
    return hardware, gpus


def _gib(text: str | None) -> int | None:
    m = re.fullmatch(r"(\d+)\s*(GB|MB)", (text or "").strip())
    if not m:
        return None
    return int(m.group(1)) * (1024 if m.group(2) == "GB" else 1)


def _cpus(hw: dict[str, str], w: Warnings) -> list[DeviceCapability]:
    chip = hw.get("Chip") or hw.get("Processor Name")
    cores = hw.get("Total Number of Cores")
    if chip is None or cores is None:
        w.add("no 'Chip'/'Processor Name' or 'Total Number of Cores' in SPHardwareDataType")
        return []
    vendor = "Apple" if chip.startswith("Apple") else ("Intel" if "Intel" in chip else None)
    tiers = re.findall(r"(\d+)\s+([a-z]+)", cores.partition("(")[2])
    if tiers:  # "12 (8 performance and 4 efficiency)": one group per core type
        return [DeviceCapability(DeviceClass.CPU, f"{chip} {label} cores", vendor, count=1, compute_units=int(n))
                for n, label in tiers]
    sockets = integer(hw.get("Number of Processors")) or 1
    total = integer(cores.split()[0]) if cores.split() else None
    return [DeviceCapability(DeviceClass.CPU, chip, vendor, count=sockets,
                             compute_units=total // sockets if total else None)]


def _gpu(g: dict[str, str], w: Warnings) -> DeviceCapability | None:
    name = g.get("Chipset Model") or g.get("_name")
    if g.get("Type", "GPU") != "GPU":
        return None
    cores = integer(g.get("Total Number of Cores"))
    vram = _gib(g.get("VRAM (Total)") or g.get("VRAM (Dynamic, Max)"))
    vendor = (g.get("Vendor") or "").split(" (")[0] or None
    spec = catalog.lookup(name)
    if spec is None:
        w.add(catalog.explain(name))
    elif spec.compute_units and cores and cores != spec.compute_units:
        w.add(f"{name} with {cores} GPU cores: the published figures are for {spec.compute_units} cores: "
              "peak figures left unknown")
        spec = None
    features = {"unified-memory"} if name.startswith("Apple") else set()
    return DeviceCapability(DeviceClass.GPU, name, vendor, count=1, compute_units=cores,
                            flops=spec.flops if spec else (), memory_mib=vram,
                            memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
                            features=frozenset(features))


def parse_system_profiler(text: str, source: str = "system_profiler.txt") -> MacFacts:
    w = Warnings(source)
    truncation(text, w)
    hardware, gpus = _sections(text)
    if not hardware and not gpus:
        w.add("neither 'Hardware:' nor 'Graphics/Displays:' found (localised output? run it with LANG=C)")
    devices = _cpus(hardware, w) if hardware else []
    if not gpus:
        w.add("no Graphics/Displays section: GPU unknown (add SPDisplaysDataType)")
    devices += [d for d in (_gpu(g, w) for g in gpus) if d is not None]
    memory = _gib(hardware.get("Memory"))
    if hardware and memory is None:
        w.add("no readable 'Memory' line: unified memory unknown")
    return MacFacts(tuple(devices), memory, w.freeze())
