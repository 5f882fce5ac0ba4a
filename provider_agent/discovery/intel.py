"""Intel GPU discovery from ``xpu-smi discovery`` and ``sycl-ls``.

- ``xpu-smi discovery`` (and ``discovery -d N``) prints a box table, one ``Device ID`` cell per GPU
  followed by ``Key: Value`` lines: ``Device Name``, ``Memory Physical Size: 32768.00 MiB``,
  ``Core Clock Rate: 1400 MHz``, ``PCIe Generation``, ``Number of EUs``... The plain ``discovery``
  table has no memory line; ``-d`` has.
- ``sycl-ls`` prints one line per (backend, device). oneAPI 2025: ``[level_zero:gpu][level_zero:0]
  Intel(R) oneAPI Unified Runtime over Level-Zero, Intel(R) Arc(TM) A770 Graphics 12.55.8 [1.3.29735+27]``;
  oneAPI 2023: ``[ext_oneapi_level_zero:gpu:0] Intel(R) Level-Zero, Intel(R) Iris(R) Xe Graphics 1.3
  [1.3.28044]``. The same GPU appears again under OpenCL; Level Zero lines are counted, OpenCL
  lines only when there is no Level Zero line. It prints no memory size.

Invariants: names are kept as the tools print them (``Intel(R) Graphics [0x020a]`` when the driver
knows only the PCI id); memory that the text does not give stays unknown, with a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings, integer, number, truncation


@dataclass(frozen=True, slots=True)
class IntelFacts:
    devices: tuple[DeviceCapability, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()


def _devices(found: list[tuple[str, int | None, float | None, str | None]], w: Warnings) -> tuple[DeviceCapability, ...]:
    groups: dict[tuple[str, int | None, float | None, str | None], int] = {}
    for key in found:
        groups[key] = groups.get(key, 0) + 1
    out = []
    for (name, mib, clock, link), n in groups.items():
        spec = catalog.lookup(name)
        if spec is None:
            w.add(catalog.explain(name))
        out.append(DeviceCapability(
            DeviceClass.GPU, name, "Intel", count=n, memory_mib=mib,
            compute_units=spec.compute_units if spec else None,
            clock_mhz=clock if clock is not None else (spec.boost_clock_mhz if spec else None),
            flops=spec.flops if spec else (), memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None,
            interconnect="; ".join(x for x in (link, f"datasheet: {spec.interconnect}" if spec and spec.interconnect
                                               else None) if x) or None))
    return tuple(out)


def parse_xpu_smi(text: str, source: str = "xpu-smi.txt") -> IntelFacts:
    w = Warnings(source)
    truncation(text, w)
    devices: dict[int, dict[str, str]] = {}
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\|\s*(\d*)\s*\|\s*(.*?)\s*\|\s*$", line)
        if not m:
            continue
        if m.group(1):
            current = int(m.group(1))
            devices.setdefault(current, {})
        if current is None or not m.group(2):
            continue
        key, sep, value = m.group(2).partition(": ")
        if sep:
            devices[current][key.strip()] = value.strip()
        elif m.group(2) != "Device Information":
            w.add(f"line {lineno} not understood: {line[:60]!r}")
    if not devices:
        w.add("no 'Device ID' rows: not xpu-smi discovery output?")
    found = []
    for index, fields in sorted(devices.items()):
        name = fields.get("Device Name")
        if name is None:
            w.add(f"device {index} has no 'Device Name': skipped")
            continue
        size = number((fields.get("Memory Physical Size") or "").replace("MiB", "").strip() or None)
        if size is None:
            w.add(f"device {index} ({name}): no 'Memory Physical Size' (run xpu-smi discovery -d {index}): memory unknown")
        gen, width = integer(fields.get("PCIe Generation")), integer(fields.get("PCIe Max Link Width"))
        link = f"PCIe Gen{gen}" + (f" x{width}" if width else "") if gen else None
        found.append((name, int(size) if size is not None else None,
                      number((fields.get("Core Clock Rate") or "").replace("MHz", "").strip() or None), link))
    return IntelFacts(_devices(found, w), w.freeze())


_SYCL = re.compile(r"^\[(?P<backend>(?:ext_oneapi_)?level_zero|opencl):(?P<type>\w+)(?::\d+)?\](?:\[[^\]]*\])?\s+"
                   r"(?P<platform>[^,]+),\s+(?P<rest>.*)$")


def _sycl_name(rest: str, backend: str) -> str:
    rest = re.sub(r"\s*\[[^\]]*\]\s*$", "", rest)  # the driver version
    if backend == "opencl":
        return re.sub(r"\s+OpenCL \d.*$", "", rest).strip()
    return re.sub(r"\s+\d+(?:[.,]\d+)+$", "", rest).strip()  # the device version (1.3, 12.55.8)


def parse_sycl_ls(text: str, source: str = "sycl-ls.txt") -> IntelFacts:
    w = Warnings(source)
    truncation(text, w)
    level_zero: list[str] = []
    opencl: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _SYCL.match(line.strip())
        if not m:
            w.add(f"line {lineno} not understood: {line[:60]!r}")
            continue
        if m.group("type") != "gpu":
            continue
        name = _sycl_name(m.group("rest"), "opencl" if m.group("backend") == "opencl" else "level_zero")
        (opencl if m.group("backend") == "opencl" else level_zero).append(name)
    names = level_zero or opencl
    if not level_zero and opencl:
        w.add("no Level Zero GPU line: counting the OpenCL GPU lines")
    if not names:
        w.add("no GPU line in sycl-ls output")
    for name in sorted(set(names)):
        w.add(f"{name}: sycl-ls prints no memory size (add xpu-smi discovery -d): memory unknown")
    return IntelFacts(_devices([(n, None, None, None) for n in names], w), w.freeze())
