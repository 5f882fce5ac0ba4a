"""``/proc/cpuinfo`` of every Linux architecture, read into core groups.

Each architecture's kernel prints its own keys (``arch/*/kernel/*proc*.c``); the dumps in
``tests/fixtures/hw`` (util-linux test dumps) show them:

- x86: one block per logical CPU with ``vendor_id``, ``model name``, ``physical id``, ``core id``,
  ``siblings``, ``cpu cores``, ``flags``;
- ARM: ``CPU implementer``/``CPU part`` per processor (aarch64), or once in a trailing block shared
  by all processors (old armv7 kernels, which also print ``Processor : ARMv7 Processor rev 4``);
- LoongArch: ``Model Name``, ``package``, ``core``, ``CPU MHz``, ``Features``, after a
  ``system type`` block;
- POWER: ``cpu``, ``clock``, ``revision``, then a ``timebase``/``platform``/``machine`` block;
  threads per core are not printed, so cores stay unknown without lscpu;
- RISC-V: ``isa``, ``mmu``, optionally ``uarch``, ``mvendorid``/``marchid``;
- s390x: one global block (``vendor_id: IBM/S390``, ``# processors``, ``features``) with one
  ``processor N: version = .., identification = .., machine = 2817`` line per CPU.

Invariants: a group is one core type (big.LITTLE clusters are kept apart by ``CPU part``); a
count that cpuinfo does not give (POWER cores, sockets outside x86/LoongArch) is ``None``, never
assumed; whatever cannot be read becomes a warning naming the processor and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provider_agent.discovery.common import DiscoveryWarning, Warnings, integer, number, truncation
from provider_agent.discovery.lscpu import s390_model

# ARM MIDR implementer -> (vendor, {part: core name}); names as util-linux 2.41 lscpu prints them
# (sys-utils/lscpu-arm.c), so cpuinfo-only and lscpu give the same model for the same core.
ARM_CORES: dict[int, tuple[str, dict[int, str]]] = {
    0x41: ("ARM", {
        0xC07: "Cortex-A7", 0xC09: "Cortex-A9", 0xC0F: "Cortex-A15", 0xD03: "Cortex-A53", 0xD04: "Cortex-A35",
        0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75",
        0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77", 0xD40: "Neoverse-V1",
        0xD41: "Cortex-A78", 0xD42: "Cortex-A78AE", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510",
        0xD47: "Cortex-A710", 0xD49: "Neoverse-N2", 0xD4B: "Cortex-A78C", 0xD4D: "Cortex-A715",
        0xD4E: "Cortex-X3", 0xD4F: "Neoverse-V2"}),
    0x43: ("Cavium", {0x0AF: "ThunderX2-99xx"}),
    0x46: ("FUJITSU", {0x001: "A64FX"}),
    0x48: ("HiSilicon", {0xD01: "TaiShan-v110", 0xD02: "TaiShan-v120"}),
    0x4E: ("NVIDIA", {0x004: "Carmel"}),
    0xC0: ("Ampere", {0xAC3: "Ampere-1"}),
}

#: RISC-V mvendorid (JEDEC bank and id) of the vendors in the fixtures
RISCV_VENDORS = {"0x489": "SiFive", "0x5b7": "T-Head"}

X86_VENDORS = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel", "HygonGenuine": "Hygon"}


@dataclass(frozen=True, slots=True)
class Processor:
    """One logical CPU's fields (its own, then those the kernel printed once for all)."""

    index: int
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        for k, v in self.fields:
            if k == key:
                return v
        return None


@dataclass(frozen=True, slots=True)
class CoreGroup:
    """One core type as cpuinfo describes it (``None`` = cpuinfo does not say)."""

    name: str
    vendor: str | None
    sockets: int | None
    cores_per_socket: int | None
    threads_per_core: int | None
    clock_mhz: float | None
    flags: frozenset[str]
    family: int | None = None
    model: int | None = None


@dataclass(frozen=True, slots=True)
class CpuInfo:
    processors: tuple[Processor, ...]
    shared: tuple[tuple[str, str], ...] = ()
    arch: str | None = None
    warnings: tuple[DiscoveryWarning, ...] = ()

    @property
    def logical(self) -> int:
        return len(self.processors)

    def first(self, key: str) -> str | None:
        for p in self.processors:
            value = p.get(key)
            if value is not None:
                return value
        return dict(self.shared).get(key)

    def flags(self) -> frozenset[str]:
        text = self.first("flags") or self.first("Features") or self.first("features") or ""
        return frozenset(text.split())

    def sockets(self) -> int | None:
        ids = {p.get("physical id") for p in self.processors}
        return None if None in ids or not ids else len(ids)

    def cores(self) -> int | None:
        """Physical cores over all sockets, from distinct (physical id, core id)."""
        pairs = {(p.get("physical id"), p.get("core id")) for p in self.processors}
        if any(a is None or b is None for a, b in pairs) or not pairs:
            return None
        return len(pairs)


def _blocks(text: str, w: Warnings) -> list[list[tuple[str, str]]]:
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
    return [b for b in blocks if b]


_S390_CPU = re.compile(r"^processor (\d+)$")


def parse_cpuinfo(text: str, source: str = "cpuinfo") -> CpuInfo:
    w = Warnings(source)
    truncation(text, w)
    processors: list[Processor] = []
    shared: list[tuple[str, str]] = []
    for block in _blocks(text, w):
        if block[0][0] == "Processor" and len(block) > 1:
            shared.append(block[0])  # old ARM kernels: "Processor : ARMv7 Processor rev 4 (v7l)" once
            block = block[1:]
        keys = dict(block)
        if "processor" in keys:
            index = integer(keys["processor"])
            if index is None:
                w.add(f"processor number {keys['processor']!r} is not an integer")
                continue
            processors.append(Processor(index, tuple(block)))
            continue
        for key, value in block:
            m = _S390_CPU.match(key)
            if m:  # s390: "processor 3: version = FF,  identification = 000123,  machine = 2817"
                fields = tuple((k.strip(), v.strip()) for k, _, v in (f.partition("=") for f in value.split(",")))
                processors.append(Processor(int(m.group(1)), fields))
            else:
                shared.append((key, value))
    if shared:  # fields printed once for all processors (armv7 CPU part, s390 features)
        processors = [Processor(p.index, p.fields + tuple(shared)) for p in processors]
    info = CpuInfo(tuple(processors), tuple(shared), None, ())
    arch = _arch(info)
    _check(info, arch, w)
    return CpuInfo(info.processors, info.shared, arch, w.freeze())


def _arch(info: CpuInfo) -> str | None:
    first = info.first
    if first("vendor_id") == "IBM/S390":
        return "s390"
    if first("CPU implementer") is not None:
        return "arm"
    if first("isa") is not None and (first("isa") or "").startswith("rv"):
        return "riscv"
    if (first("CPU Family") or "").startswith("Loongson") or "loongarch" in (first("ISA") or ""):
        return "loongarch"
    if first("cpu") is not None and (first("clock") is not None or first("timebase") is not None):
        return "power"
    if first("vendor_id") is not None or first("flags") is not None:
        return "x86"
    return None


def _check(info: CpuInfo, arch: str | None, w: Warnings) -> None:
    processors = info.processors
    if not processors:
        w.add("no processor blocks found")
        return
    if arch is None:
        w.add("cpuinfo format not recognised (no x86, ARM, LoongArch, POWER, RISC-V or s390 keys)")
    shape = {k for k, _ in processors[0].fields}
    for p in processors[1:]:
        missing = shape - {k for k, _ in p.fields}
        if missing:
            w.add(f"processor {p.index} lacks {sorted(missing)[:4]} that processor "
                  f"{processors[0].index} has: the text may be truncated")
    indices = [p.index for p in processors]
    if arch != "s390" and indices != list(range(len(indices))):
        w.add(f"processor numbers are not 0..{len(indices) - 1}")
    declared = integer(info.first("# processors"))
    if declared is not None and declared != len(processors):
        w.add(f"'# processors' says {declared} but {len(processors)} processor lines are present")


def core_groups(info: CpuInfo) -> tuple[tuple[CoreGroup, ...], tuple[DiscoveryWarning, ...]]:
    """The core types cpuinfo describes, by architecture; warnings for what it cannot say."""
    w = Warnings("cpuinfo")
    reader = _READERS.get(info.arch or "")
    groups = reader(info, w) if reader and info.processors else []
    return tuple(groups), w.freeze()


def _x86(info: CpuInfo, w: Warnings) -> list[CoreGroup]:
    name = info.first("model name")
    if name is None:
        w.add("x86 cpuinfo has no 'model name'")
        return []
    sockets, cores = info.sockets(), info.cores()
    if sockets is None:
        w.add("cpuinfo has no 'physical id': socket count unknown, counting one device")
    siblings, cpu_cores = integer(info.first("siblings")), integer(info.first("cpu cores"))
    vendor_id = info.first("vendor_id")
    return [CoreGroup(name, X86_VENDORS.get(vendor_id or "", vendor_id), sockets or 1,
                      cores // sockets if cores is not None and sockets else None,
                      siblings // cpu_cores if siblings and cpu_cores else None,
                      None,  # "cpu MHz" is the current clock, not the peak
                      info.flags(), integer(info.first("cpu family")), integer(info.first("model")))]


def arm_core(implementer: str | None, part: str | None) -> tuple[str, str] | None:
    """(vendor, core name) for a MIDR implementer and part, as util-linux names them."""
    if not implementer or not part or not re.fullmatch(r"0x[0-9a-fA-F]+", part) \
            or not re.fullmatch(r"0x[0-9a-fA-F]+", implementer):
        return None
    vendor, parts = ARM_CORES.get(int(implementer, 16), (f"implementer {implementer}", {}))
    return vendor, parts.get(int(part, 16), f"{vendor} CPU part {part}")


def _arm(info: CpuInfo, w: Warnings) -> list[CoreGroup]:
    counts: dict[tuple[str, str], int] = {}
    for p in info.processors:
        core = arm_core(p.get("CPU implementer"), p.get("CPU part"))
        if core is None:
            w.add(f"processor {p.index} has no usable 'CPU implementer'/'CPU part'")
            continue
        if "CPU part" in core[1]:
            w.add(f"processor {p.index}: {core[1]} is not in the core table")
        counts[core] = counts.get(core, 0) + 1
    # cpuinfo gives no sockets on ARM: each core type is one group of its cores
    return [CoreGroup(name, vendor, 1, n, None, None, info.flags()) for (vendor, name), n in counts.items()]


def _loongarch(info: CpuInfo, w: Warnings) -> list[CoreGroup]:
    groups: dict[str, list[Processor]] = {}
    for p in info.processors:
        name = p.get("Model Name") or p.get("model name") or p.get("cpu model")
        if name is None:
            w.add(f"processor {p.index} has no 'Model Name'")
            continue
        groups.setdefault(name, []).append(p)
    out = []
    for name, procs in groups.items():
        packages = {p.get("package") for p in procs}
        cores = {(p.get("package"), p.get("core")) for p in procs}
        known = None not in packages and not any(None in c for c in cores)
        if not known:
            w.add(f"{name}: no 'package'/'core' lines: sockets unknown, counting one device")
        sockets = len(packages) if known else 1
        out.append(CoreGroup(name, "Loongson", sockets, len(cores) // sockets if known else len(procs),
                             1 if known and len(cores) == len(procs) else None,
                             number(procs[0].get("CPU MHz")), info.flags()))
    return out


def _power(info: CpuInfo, w: Warnings) -> list[CoreGroup]:
    name = info.first("cpu")
    if name is None:
        return []
    clock = number((info.first("clock") or "").replace("MHz", ""))
    w.add(f"POWER cpuinfo lists {info.logical} hardware threads but neither cores nor sockets "
          "(SMT width is not printed): core count unknown without lscpu")
    return [CoreGroup(name, "IBM", None, None, None, clock, frozenset())]


def _riscv(info: CpuInfo, w: Warnings) -> list[CoreGroup]:
    isa = (info.first("isa") or "").split("_")[0]
    name = info.first("uarch") or f"RISC-V {isa}"
    vendor_id = info.first("mvendorid")
    vendor = RISCV_VENDORS.get(vendor_id or "", f"mvendorid {vendor_id}" if vendor_id else None)
    # each hart is one processor; Linux reports no SMT on RISC-V
    vector = frozenset({"rvv"}) if "v" in isa[4:] else frozenset()  # the V (vector) extension
    return [CoreGroup(name, vendor, 1, info.logical, 1, None, vector)]


def _s390(info: CpuInfo, w: Warnings) -> list[CoreGroup]:
    machines = {p.get("machine") for p in info.processors}
    if None in machines or len(machines) != 1:
        w.add(f"s390 processor lines name machine types {sorted(m or '?' for m in machines)}")
    machine = sorted(m for m in machines if m)[0] if any(machines) else None
    threads = integer(info.first("max thread id"))
    threads = threads + 1 if threads is not None else 1
    return [CoreGroup(s390_model(machine) or "IBM Z CPU", "IBM", 1, info.logical // threads, threads,
                      None, info.flags())]


_READERS = {"x86": _x86, "arm": _arm, "loongarch": _loongarch, "power": _power, "riscv": _riscv,
            "s390": _s390}
