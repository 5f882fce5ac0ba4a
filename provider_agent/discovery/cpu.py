"""CPU, memory and disk discovery from /proc/cpuinfo, lscpu, sysfs cpu lists, /proc/meminfo and df.

A node's CPUs become one ``DeviceCapability`` per CPU type: a socket is a device
(``count`` = sockets, ``compute_units`` = physical cores per socket). Heterogeneous
SoCs (ARM big.LITTLE) give one group per core type, as lscpu prints one block per type.

Invariants:
- lscpu is preferred for topology (it reads sysfs), /proc/cpuinfo fills what lscpu lacks
  and is cross-checked against it; a disagreement is a warning, never silently resolved;
- ISA features are copied from the kernel's flags, filtered to those that matter for
  compute (AVX-512, AMX, SVE...); nothing is inferred from a model name;
- CPU peak FLOPS come only from ``catalog.derive_cpu_flops`` (a stated formula over
  discovered facts) and carry the feature ``flops-derived``;
- text that ends without a newline is reported as possibly truncated.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from marketplace.resources.catalog import derive_cpu_flops
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings, cpu_list, integer, number

log = logging.getLogger(__name__)

#: flags (x86 /proc/cpuinfo "flags", ARM "Features") that say what a core can compute fast
COMPUTE_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "sme", "bf16", "i8mm",
})

# ARM "CPU part" numbers (MIDR_EL1.PartNum, implementer 0x41) from each core's Technical
# Reference Manual; used only when lscpu is absent and cpuinfo prints no model name.
ARM_PARTS = {0xD46: "Cortex-A510", 0xD47: "Cortex-A710", 0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3",
             0xD0C: "Neoverse-N1", 0xD40: "Neoverse-V1", 0xD49: "Neoverse-N2", 0xD4F: "Neoverse-V2"}

VENDORS = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel", "ARM": "ARM", "HygonGenuine": "Hygon"}


def _truncation(text: str, w: Warnings) -> None:
    if text and not text.endswith("\n"):
        w.add("text does not end with a newline: the output may be truncated")


# --- /proc/cpuinfo ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Processor:
    """One ``processor`` block of /proc/cpuinfo (one logical CPU)."""

    index: int
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        for k, v in self.fields:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class CpuInfo:
    processors: tuple[Processor, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()

    @property
    def logical(self) -> int:
        return len(self.processors)

    def first(self, key: str) -> str | None:
        for p in self.processors:
            value = p.get(key)
            if value is not None:
                return value
        return None

    def flags(self) -> frozenset[str]:
        text = self.first("flags") or self.first("Features") or ""
        return frozenset(text.split())

    def sockets(self) -> int | None:
        ids = {p.get("physical id") for p in self.processors}
        if None in ids or not ids:
            return None
        return len(ids)

    def cores(self) -> int | None:
        """Physical cores over all sockets, from distinct (physical id, core id)."""
        pairs = {(p.get("physical id"), p.get("core id")) for p in self.processors}
        if any(a is None or b is None for a, b in pairs) or not pairs:
            return None
        return len(pairs)


def parse_cpuinfo(text: str, source: str = "cpuinfo") -> CpuInfo:
    w = Warnings(source)
    _truncation(text, w)
    blocks: list[list[tuple[str, str]]] = [[]]
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        if ":" not in line:
            w.add(f"line {lineno} is not 'key : value': {line[:60]!r}")
            continue
        key, _, value = line.partition(":")
        blocks[-1].append((key.strip(), value.strip()))
    processors: list[Processor] = []
    for block in blocks:
        if not block:
            continue
        keys = dict(block)
        if "processor" not in keys:
            # ARM kernels end cpuinfo with a machine block (Hardware, Revision, Serial)
            if not set(keys) <= {"Hardware", "Revision", "Serial", "Model"}:
                w.add(f"block without a 'processor' line: {sorted(keys)[:4]}")
            continue
        index = integer(keys["processor"])
        if index is None:
            w.add(f"processor number {keys['processor']!r} is not an integer")
            continue
        processors.append(Processor(index, tuple(block)))
    if processors:
        shape = {k for k, _ in processors[0].fields}
        for p in processors[1:]:
            missing = shape - {k for k, _ in p.fields}
            if missing:
                w.add(f"processor {p.index} lacks {sorted(missing)[:4]} that processor "
                      f"{processors[0].index} has: the text may be truncated")
        indices = [p.index for p in processors]
        if indices != list(range(len(indices))):
            w.add(f"processor numbers are not 0..{len(indices) - 1}")
    else:
        w.add("no processor blocks found")
    return CpuInfo(tuple(processors), w.freeze())


# --- lscpu ----------------------------------------------------------------------------------

_BLOCK_KEYS = frozenset({
    "Model name", "Model", "CPU family", "Thread(s) per core", "Core(s) per socket",
    "Core(s) per cluster", "Socket(s)", "Cluster(s)", "Stepping", "CPU max MHz", "CPU min MHz",
    "BogoMIPS", "Flags", "CPU(s) scaling MHz", "Frequency boost", "CPU MHz",
})

_PARSABLE_ROW = re.compile(r"^\d+(,[0-9A-Za-z:.-]*)+$")


@dataclass(frozen=True, slots=True)
class LscpuBlock:
    """One CPU type as lscpu prints it (x86 servers have one, big.LITTLE SoCs several)."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return dict(self.fields).get(key)

    @property
    def model_name(self) -> str | None:
        return self.get("Model name")

    @property
    def sockets(self) -> int | None:
        return integer(self.get("Socket(s)") or self.get("Cluster(s)"))

    @property
    def cores_per_socket(self) -> int | None:
        return integer(self.get("Core(s) per socket") or self.get("Core(s) per cluster"))

    @property
    def threads_per_core(self) -> int | None:
        return integer(self.get("Thread(s) per core"))

    @property
    def max_mhz(self) -> float | None:
        return number(self.get("CPU max MHz"))

    @property
    def flags(self) -> frozenset[str]:
        return frozenset((self.get("Flags") or "").split())


@dataclass(frozen=True, slots=True)
class Lscpu:
    globals: tuple[tuple[str, str], ...]
    blocks: tuple[LscpuBlock, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()

    def get(self, key: str) -> str | None:
        return dict(self.globals).get(key)

    @property
    def cpus(self) -> int | None:
        return integer(self.get("CPU(s)"))

    @property
    def numa_nodes(self) -> int | None:
        count = integer(self.get("NUMA node(s)"))
        if count is not None:
            return count
        listed = [k for k, _ in self.globals if re.fullmatch(r"NUMA node\d+ CPU\(s\)", k)]
        return len(listed) or None


def parse_lscpu(text: str, source: str = "lscpu") -> Lscpu:
    """Plain ``lscpu`` output; an appended ``lscpu -p`` section is checked for completeness."""
    w = Warnings(source)
    _truncation(text, w)
    globals_: list[tuple[str, str]] = []
    blocks: list[list[tuple[str, str]]] = [[]]
    sections: list[int] = []  # rows per `lscpu -p` section
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if stripped.startswith("# CPU,"):
                sections.append(0)
            continue
        if _PARSABLE_ROW.match(stripped) and sections:
            sections[-1] += 1
            continue
        m = re.match(r"^([^:]+):\s*(.*)$", line)
        if not m:
            w.add(f"line {lineno} is not 'Key: value': {line[:60]!r}")
            continue
        key, value = m.group(1).strip(), m.group(2).strip()
        if key in _BLOCK_KEYS:
            if key == "Model name" and any(k == "Model name" for k, _ in blocks[-1]):
                blocks.append([])
            blocks[-1].append((key, value))
        else:
            globals_.append((key, value))
    out = Lscpu(tuple(globals_), tuple(LscpuBlock(tuple(b)) for b in blocks if b), ())
    if out.cpus is None:
        w.add("no usable 'CPU(s)' line")
    if not out.blocks:
        w.add("no CPU model block")
    for i, block in enumerate(out.blocks):
        for what, value in (("Model name", block.model_name), ("Socket(s)", block.sockets),
                            ("Core(s) per socket", block.cores_per_socket),
                            ("Thread(s) per core", block.threads_per_core)):
            if value is None:
                w.add(f"CPU block {i} ({block.model_name or '?'}) has no usable {what!r}")
    if out.cpus is not None:
        counted = sum((b.sockets or 0) * (b.cores_per_socket or 0) * (b.threads_per_core or 0)
                      for b in out.blocks)
        if out.blocks and all(b.sockets and b.cores_per_socket and b.threads_per_core for b in out.blocks) \
                and counted != out.cpus:
            w.add(f"sockets x cores x threads = {counted} but CPU(s) says {out.cpus}")
        for n, rows in enumerate(sections):
            if rows != out.cpus:
                w.add(f"parsable section {n} has {rows} rows but CPU(s) says {out.cpus}: truncated?")
    return Lscpu(out.globals, out.blocks, w.freeze())


# --- meminfo, df, sysfs lists ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalar:
    """A single parsed value with the warnings its parse raised."""

    value: float | int | frozenset[int] | None
    warnings: tuple[DiscoveryWarning, ...] = ()


def parse_meminfo(text: str, source: str = "meminfo") -> Scalar:
    """``MemTotal`` in MiB (meminfo counts in kB, i.e. KiB)."""
    w = Warnings(source)
    _truncation(text, w)
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


def cpu_devices(cpuinfo: CpuInfo | None, lscpu: Lscpu | None,
                online: frozenset[int] | None = None) -> CpuFacts:
    """CPU device groups from whichever of cpuinfo and lscpu is present (both is best)."""
    w = Warnings("cpu")
    vendor_id = (lscpu.get("Vendor ID") if lscpu else None) or (cpuinfo.first("vendor_id") if cpuinfo else None)
    devices: list[DeviceCapability] = []
    if lscpu and lscpu.blocks:
        for block in lscpu.blocks:
            name = block.model_name
            sockets, cores = block.sockets, block.cores_per_socket
            if name is None or sockets is None:
                continue  # already warned by parse_lscpu
            flags = block.flags or (cpuinfo.flags() if cpuinfo else frozenset())
            family = integer(block.get("CPU family")) if block.get("CPU family") else None
            model_no = integer(block.get("Model"))
            flops = derive_cpu_flops(vendor_id, family, model_no, cores, block.max_mhz)
            devices.append(DeviceCapability(
                DeviceClass.CPU, name, VENDORS.get(vendor_id or "", vendor_id), count=sockets,
                compute_units=cores, clock_mhz=block.max_mhz, flops=flops,
                features=_features(flags, block.threads_per_core, bool(flops))))
        if cpuinfo and cpuinfo.processors:
            info_name = cpuinfo.first("model name")
            names = {b.model_name for b in lscpu.blocks}
            if info_name and info_name not in names:
                w.add(f"cpuinfo model name {info_name!r} differs from lscpu {sorted(n or '' for n in names)}")
            if lscpu.cpus is not None and cpuinfo.logical != lscpu.cpus:
                w.add(f"cpuinfo lists {cpuinfo.logical} processors but lscpu says CPU(s) {lscpu.cpus}")
    elif cpuinfo and cpuinfo.processors:
        devices.extend(_from_cpuinfo(cpuinfo, vendor_id, w))
    logical = lscpu.cpus if lscpu and lscpu.cpus is not None else (cpuinfo.logical if cpuinfo else None)
    if online is not None and logical is not None and len(online) < logical:
        w.add(f"only {len(online)} of {logical} CPUs are online")
    if online is not None and cpuinfo is not None and cpuinfo.logical != len(online):
        # cpuinfo lists online CPUs only; fewer means the text was cut (at a block boundary)
        w.add(f"cpuinfo lists {cpuinfo.logical} processors but {len(online)} CPUs are online: truncated?")
    arch = lscpu.get("Architecture") if lscpu else None
    flags = (cpuinfo.flags() if cpuinfo else frozenset()) | (
        lscpu.blocks[0].flags if lscpu and lscpu.blocks else frozenset())
    if arch is None and vendor_id in ("AuthenticAMD", "GenuineIntel", "HygonGenuine") and "lm" in flags:
        arch = "x86_64"  # the "lm" (long mode) flag is what makes an x86 CPU x86_64
    warnings = list(lscpu.warnings if lscpu else ()) + list(cpuinfo.warnings if cpuinfo else ())
    warnings.extend(w.freeze())
    return CpuFacts(tuple(devices), lscpu.numa_nodes if lscpu else None, arch, logical, tuple(warnings))


def _from_cpuinfo(cpuinfo: CpuInfo, vendor_id: str | None, w: Warnings) -> list[DeviceCapability]:
    name = cpuinfo.first("model name")
    if name is not None:
        sockets = cpuinfo.sockets()
        cores = cpuinfo.cores()
        if sockets is None:
            w.add("cpuinfo has no 'physical id': socket count unknown, counting one device")
        per_socket = cores // sockets if cores is not None and sockets else None
        family, model_no = integer(cpuinfo.first("cpu family")), integer(cpuinfo.first("model"))
        max_mhz = None  # cpuinfo's "cpu MHz" is the current clock, not the peak
        threads = None
        siblings, cpu_cores = integer(cpuinfo.first("siblings")), integer(cpuinfo.first("cpu cores"))
        if siblings and cpu_cores:
            threads = siblings // cpu_cores
        flops = derive_cpu_flops(vendor_id, family, model_no, per_socket, max_mhz)
        return [DeviceCapability(DeviceClass.CPU, name, VENDORS.get(vendor_id or "", vendor_id),
                                 count=sockets or 1, compute_units=per_socket,
                                 features=_features(cpuinfo.flags(), threads, bool(flops)), flops=flops)]
    # ARM: no model name; group processors by core type (CPU part)
    groups: dict[str, int] = {}
    for p in cpuinfo.processors:
        part = p.get("CPU part")
        part_no = int(part, 16) if part and re.fullmatch(r"0x[0-9a-fA-F]+", part) else None
        implementer = p.get("CPU implementer")
        if part_no is None:
            w.add(f"processor {p.index} has neither 'model name' nor a usable 'CPU part'")
            continue
        label = ARM_PARTS.get(part_no) if implementer == "0x41" else None
        if label is None:
            w.add(f"processor {p.index}: CPU part {part} of implementer {implementer} is not in the table")
            label = f"ARM part {part} (implementer {implementer})"
        groups[label] = groups.get(label, 0) + 1
    return [DeviceCapability(DeviceClass.CPU, label, "ARM", count=1, compute_units=n,
                             features=_features(cpuinfo.flags(), None, False))
            for label, n in groups.items()]
