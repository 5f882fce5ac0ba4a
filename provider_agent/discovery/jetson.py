"""NVIDIA Jetson discovery from ``tegrastats`` and ``/proc/device-tree/model``.

Jetson boards have no nvidia-smi GPU list: the integrated GPU shows in ``tegrastats`` as
``GR3D_FREQ`` (``0%@76``; Orin with JetPack 6 ``0%@[0,0]``, one clock per GPC) beside
``RAM used/totalMB`` (memory shared by CPU and GPU) and ``CPU [load%@MHz,...]``. The board is named
by the device tree (``NVIDIA Jetson Nano Developer Kit``, NUL-terminated).

Invariants: the GPU is one device with its memory ``None`` (it is the node's shared RAM); a
developer-kit name that fits several modules (AGX Orin 32 GB / 64 GB) is resolved by the RAM total
only when exactly one module fits; without a device-tree model the GPU is reported as
``NVIDIA Jetson (model unknown)`` with a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings

#: developer-kit and carrier names -> the modules they may carry (NVIDIA Jetson datasheets)
FAMILIES = {
    "jetson agx orin": ("NVIDIA Jetson AGX Orin 64GB", "NVIDIA Jetson AGX Orin 32GB"),
    "jetson orin nx": ("NVIDIA Jetson Orin NX 16GB", "NVIDIA Jetson Orin NX 8GB"),
    "jetson orin nano": ("NVIDIA Jetson Orin Nano 8GB", "NVIDIA Jetson Orin Nano 4GB"),
}


@dataclass(frozen=True, slots=True)
class JetsonFacts:
    devices: tuple[DeviceCapability, ...]
    ram_mib: int | None
    cpus: int | None
    warnings: tuple[DiscoveryWarning, ...] = ()


def _spec(model: str, ram_mib: int | None, w: Warnings) -> catalog.DeviceSpec | None:
    spec = catalog.lookup(model)
    if spec is not None:
        return spec
    key = catalog.normalize_model(model)
    family = next((v for k, v in FAMILIES.items() if key.startswith(k)), None)
    if family is None:
        w.add(catalog.explain(model))
        return None
    rows = [catalog.lookup(m) for m in family]
    fits = [r for r in rows if r is not None and r.memory_gib and ram_mib is not None
            and abs(ram_mib / 1024 - r.memory_gib) <= 0.1 * r.memory_gib]
    if len(fits) == 1:
        return fits[0]
    w.add(f"{model!r} may carry any of {', '.join(family)} and the RAM total "
          f"({ram_mib} MiB) does not tell which: peak figures left unknown")
    return None


def parse_jetson(tegrastats: str | None, model: str | None, source: str = "tegrastats.txt") -> JetsonFacts:
    w = Warnings(source)
    line = next((ln for ln in (tegrastats or "").splitlines() if "RAM " in ln), None)
    ram = cpus = None
    gpu = False
    if tegrastats is not None and line is None:
        w.add("no tegrastats line with 'RAM used/totalMB'")
    if line is not None:
        m = re.search(r"RAM (\d+)/(\d+)MB", line)
        ram = int(m.group(2)) if m else None
        c = re.search(r"CPU \[([^\]]*)\]", line)
        cpus = len(c.group(1).split(",")) if c else None
        gpu = re.search(r"GR3D_FREQ \d+%", line) is not None
        if ram is None:
            w.add("tegrastats RAM total unreadable")
        if not gpu:
            w.add("tegrastats shows no 'GR3D_FREQ n%': GPU not seen")
    name = (model or "").replace("\x00", "").strip() or None
    if name is None:
        w.add("no /proc/device-tree/model: Jetson module unknown")
    if not gpu and tegrastats is not None:
        return JetsonFacts((), ram, cpus, w.freeze())
    spec = _spec(name, ram, w) if name else None
    device = DeviceCapability(
        DeviceClass.GPU, spec.model if spec else (name or "NVIDIA Jetson (model unknown)"), "NVIDIA", count=1,
        compute_units=spec.compute_units if spec else None, flops=spec.flops if spec else (),
        memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
        features=frozenset({"integrated", "unified-memory"}))
    return JetsonFacts((device,), ram, cpus, w.freeze())
