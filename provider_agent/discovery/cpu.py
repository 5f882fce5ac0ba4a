"""CPU, memory and disk discovery: lscpu and /proc/cpuinfo into CPU device groups; meminfo, df, sysfs lists.

A node's CPUs become one ``DeviceCapability`` per CPU type: a socket is a device (``count`` =
sockets, ``compute_units`` = physical cores per socket). Heterogeneous SoCs (ARM big.LITTLE) give
one group per core type, as lscpu prints one block per type and cpuinfo one ``CPU part`` per core.
Parsing lives in ``lscpu`` and ``cpuinfo`` (every Linux architecture); this module assembles.

Invariants:
- lscpu is preferred for topology (it reads sysfs), /proc/cpuinfo names what lscpu cannot
  (``Model name: -``) and is cross-checked against it; a disagreement is a warning, never
  silently resolved; localised lscpu output is not read, cpuinfo is used instead;
- an s390 partition is one device of its online CPUs: its book/drawer topology is the machine's;
- ISA features are copied from the kernel's flags, filtered to those that matter for compute
  (AVX-512, AMX, SVE, RVV...); nothing is inferred from a model name;
- CPU peak FLOPS come only from ``catalog.derive_cpu_flops`` (a stated formula over discovered
  facts) and carry the feature ``flops-derived``;
- text that ends without a newline is reported as possibly truncated.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from marketplace.resources.catalog import derive_cpu_flops
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings, cpu_list, integer, truncation
from provider_agent.discovery.cpuinfo import CoreGroup, CpuInfo, core_groups, parse_cpuinfo
from provider_agent.discovery.lscpu import Lscpu, LscpuBlock, parse_lscpu

__all__ = ["COMPUTE_FLAGS", "CpuFacts", "CpuInfo", "Lscpu", "Scalar", "cpu_devices", "parse_cpu_list",
           "parse_cpuinfo", "parse_df", "parse_lscpu", "parse_meminfo"]

log = logging.getLogger(__name__)

#: flags (x86 "flags", ARM/LoongArch "Features", s390 "features") that say what a core computes fast
COMPUTE_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "sme", "bf16", "i8mm", "neon", "vfpv4",
    "lsx", "lasx", "vx", "rvv",
})

#: lscpu "Vendor ID" -> vendor
VENDORS = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel", "HygonGenuine": "Hygon", "ARM": "ARM",
           "HiSilicon": "HiSilicon", "IBM/S390": "IBM", "0x489": "SiFive", "0x5b7": "T-Head"}


# --- meminfo, df, sysfs lists ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalar:
    """A single parsed value with the warnings its parse raised."""

    value: float | int | frozenset[int] | None
    warnings: tuple[DiscoveryWarning, ...] = ()


def parse_meminfo(text: str, source: str = "meminfo") -> Scalar:
    """``MemTotal`` in MiB (meminfo counts in kB, i.e. KiB)."""
    w = Warnings(source)
    truncation(text, w)
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            m = re.fullmatch(r"MemTotal:\s+(\d+) kB", line.strip())
            if m:
                return Scalar(int(m.group(1)) // 1024, w.freeze())
            w.add(f"MemTotal line does not parse: {line[:60]!r}")
            return Scalar(None, w.freeze())
    w.add("no MemTotal line")
    return Scalar(None, w.freeze())


def parse_df(text: str, source: str = "df.txt") -> Scalar:
    """Available space in GiB from ``df -Pk PATH`` (POSIX format, 1024-byte blocks)."""
    w = Warnings(source)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0].split()[:2] == ["Filesystem", "1024-blocks"]:
        w.add("not 'df -Pk' output (expected a 'Filesystem 1024-blocks ...' header and one row)")
        return Scalar(None, w.freeze())
    cols = lines[1].split()
    if len(cols) < 6 or not cols[3].isdigit():
        w.add(f"df row does not parse: {lines[1][:60]!r}")
        return Scalar(None, w.freeze())
    return Scalar(round(int(cols[3]) / (1024 * 1024), 3), w.freeze())


def parse_cpu_list(text: str, source: str) -> Scalar:
    w = Warnings(source)
    value = cpu_list(text)
    if value is None:
        w.add(f"not a cpu list: {text.strip()[:60]!r}")
    return Scalar(value, w.freeze())


# --- assembling CPU devices -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuFacts:
    devices: tuple[DeviceCapability, ...]
    numa_nodes: int | None
    arch: str | None
    logical_cpus: int | None
    warnings: tuple[DiscoveryWarning, ...] = field(default=())


def _features(flags: frozenset[str], threads: int | None, derived: bool) -> frozenset[str]:
    out = set(flags & COMPUTE_FLAGS)
    if "avx512f" in flags:
        out.add("avx512")
    if "amx_tile" in flags:
        out.add("amx")
    if threads and threads > 1:
        out.add(f"smt{threads}")
    if derived:
        out.add("flops-derived")
    return frozenset(out)


def _group_device(g: CoreGroup, vendor_id: str | None) -> DeviceCapability:
    flops = derive_cpu_flops(vendor_id, g.family, g.model, g.cores_per_socket, g.clock_mhz)
    return DeviceCapability(DeviceClass.CPU, g.name, g.vendor, count=g.sockets or 1,
                            compute_units=g.cores_per_socket, clock_mhz=g.clock_mhz, flops=flops,
                            features=_features(g.flags, g.threads_per_core, bool(flops)))


def _block_name(i: int, block: LscpuBlock, blocks: int, groups: tuple[CoreGroup, ...],
                vendor_id: str | None, w: Warnings) -> str:
    if block.model_name is not None:
        return block.model_name
    if len(groups) == blocks:  # cpuinfo names the core type lscpu prints as "-"
        return groups[i].name
    w.add(f"CPU block {i}: neither lscpu nor cpuinfo names the model (Vendor ID {vendor_id})")
    return f"unknown CPU (Vendor ID {vendor_id})"


def _block_device(i: int, block: LscpuBlock, ls: Lscpu, groups: tuple[CoreGroup, ...],
                  online: frozenset[int] | None, w: Warnings) -> DeviceCapability | None:
    vendor_id = ls.get("Vendor ID")
    name = _block_name(i, block, len(ls.blocks), groups, vendor_id, w)
    threads = block.threads_per_core
    sockets, cores = block.sockets, block.cores_per_socket
    if block.s390_books:
        live = len(online) if online is not None else (len(ls.online) if ls.online is not None else ls.cpus)
        sockets, cores = 1, (live // threads if live is not None and threads else live)
        w.add(f"s390: books/drawers describe the machine, not this partition: offering its {live} "
              "online CPUs as one device")
    if sockets is None:
        return None  # parse_lscpu warned
    flags = block.flags or (groups[0].flags if groups else frozenset())
    family = integer(block.get("CPU family"))
    flops = derive_cpu_flops(vendor_id, family, integer(block.get("Model")), cores, block.max_mhz)
    vendor = VENDORS.get(vendor_id or "", vendor_id) or (groups[0].vendor if groups else None)
    clock = block.max_mhz
    if clock is None and len(groups) == len(ls.blocks):
        clock = groups[i].clock_mhz  # LoongArch, POWER: cpuinfo's fixed clock, lscpu prints none
    return DeviceCapability(DeviceClass.CPU, name, vendor, count=sockets, compute_units=cores,
                            clock_mhz=clock, flops=flops,
                            features=_features(flags, threads, bool(flops)))


def _arch(ls: Lscpu | None, info: CpuInfo | None) -> str | None:
    if ls is not None and ls.get("Architecture"):
        return ls.get("Architecture")
    if info is None:
        return None
    flags = info.flags()
    isa = info.first("isa") or ""
    guess = {
        "x86": "x86_64" if "lm" in flags else None,  # "lm" (long mode) is what makes x86 x86_64
        "arm": "aarch64" if info.first("CPU architecture") == "8" else (
            f"armv{info.first('CPU architecture')}l" if info.first("CPU architecture") else None),
        "loongarch": "loongarch64" if "loongarch64" in (info.first("ISA") or "") else None,
        "riscv": "riscv64" if isa.startswith("rv64") else ("riscv32" if isa.startswith("rv32") else None),
        "s390": "s390x" if "zarch" in flags else None,
        "power": None,  # ppc64 or ppc64le: cpuinfo does not say the byte order
    }
    return guess.get(info.arch or "")


def cpu_devices(cpuinfo: CpuInfo | None, lscpu: Lscpu | None,
                online: frozenset[int] | None = None) -> CpuFacts:
    """CPU device groups from whichever of cpuinfo and lscpu is present (both is best)."""
    w = Warnings("cpu")
    groups, group_warnings = core_groups(cpuinfo) if cpuinfo is not None else ((), ())
    devices: list[DeviceCapability] = []
    if lscpu is not None and lscpu.blocks:
        for i, block in enumerate(lscpu.blocks):
            dev = _block_device(i, block, lscpu, groups, online, w)
            if dev is not None:
                devices.append(dev)
        _cross_check(cpuinfo, lscpu, w)
    else:
        vendor_id = cpuinfo.first("vendor_id") if cpuinfo else None
        devices.extend(_group_device(g, vendor_id) for g in groups)
        if lscpu is not None and cpuinfo is not None and groups:
            w.add("lscpu gave no CPU block: CPUs taken from cpuinfo")
    logical = lscpu.cpus if lscpu and lscpu.cpus is not None else (cpuinfo.logical if cpuinfo else None)
    if online is not None and logical is not None and len(online) < logical:
        w.add(f"only {len(online)} of {logical} CPUs are online")
    if online is not None and cpuinfo is not None and cpuinfo.logical != len(online):
        # cpuinfo lists online CPUs only; fewer means the text was cut (at a block boundary)
        w.add(f"cpuinfo lists {cpuinfo.logical} processors but {len(online)} CPUs are online: truncated?")
    warnings = list(lscpu.warnings if lscpu else ()) + list(cpuinfo.warnings if cpuinfo else ())
    if not (lscpu is not None and lscpu.blocks):
        warnings += list(group_warnings)  # cpuinfo's limits matter only when its groups are the devices
    warnings += list(w.freeze())
    return CpuFacts(tuple(devices), lscpu.numa_nodes if lscpu else None, _arch(lscpu, cpuinfo), logical,
                    tuple(warnings))


def _cross_check(cpuinfo: CpuInfo | None, lscpu: Lscpu, w: Warnings) -> None:
    if cpuinfo is None or not cpuinfo.processors:
        return
    info_name = cpuinfo.first("model name")
    names = {b.model_name for b in lscpu.blocks}
    if info_name and info_name not in names:
        w.add(f"cpuinfo model name {info_name!r} differs from lscpu {sorted(n or '' for n in names)}")
    online = lscpu.online
    live = len(online) if online is not None else lscpu.cpus
    if live is not None and cpuinfo.logical != live:
        w.add(f"cpuinfo lists {cpuinfo.logical} processors but lscpu says {live} CPUs are online")
