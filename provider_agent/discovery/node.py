"""Discovery of a whole node: raw tool outputs in, one ``NodeDescriptor`` and its warnings out.

``Sources`` holds the text each tool printed (or ``None`` when the tool or file is absent);
``discover`` runs every parser over it and assembles the descriptor. The same function serves
the live probe (``provider_agent.probe`` fills ``Sources`` by running the tools) and captured
dumps (``sources_from_files`` maps a dump directory's files by name).

Dump layout (one directory per machine; every file optional, unknown names are listed in notes;
the capture commands are in docs/discovery.md):

    hostname                 the node's name (else the directory name)
    cpuinfo                  /proc/cpuinfo
    lscpu.txt                `LC_ALL=C lscpu` (an appended `lscpu -p` section is allowed)
    online, possible         /sys/devices/system/cpu/{online,possible}
    meminfo                  /proc/meminfo
    df.txt                   `df -Pk PATH` of the disk on offer
    nvidia-smi-q.xml         `nvidia-smi -q -x` (preferred: it holds MIG instances exactly)
    nvidia-smi-capture.txt   an nvidia_gpu_exporter capture file (many sections)
    nvidia-smi.txt           `nvidia-smi` (the default table, with its MIG devices table)
    nvidia-smi-L.txt         `nvidia-smi -L`
    nvidia-smi-query.csv     `nvidia-smi --query-gpu=... --format=csv` (with header)
    rocm-smi.json            `rocm-smi ... --json`
    npu-smi.txt              `npu-smi info`
    xpu-smi.txt              `xpu-smi discovery` and/or `xpu-smi discovery -d N`
    sycl-ls.txt              `sycl-ls`
    system_profiler.txt      `system_profiler SPHardwareDataType SPDisplaysDataType` (macOS)
    tegrastats.txt           one line of `tegrastats` (Jetson)
    device-tree-model        /proc/device-tree/model (Jetson and other device-tree boards)
    dev.txt                  TPU device nodes, one /dev path per line
    tpu-env                  TPU_* environment variables, KEY=VALUE lines
    SOURCES.md, expected.json  provenance and `discover --check` expectations (not read)

Invariants: a missing source leaves its facts ``None`` (never a default); every warning of
every parser reaches ``Discovery.warnings``; the same sources always give the same descriptor
and so the same digest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

from marketplace.resources.model import DeviceCapability, NodeDescriptor
from provider_agent.discovery import apple, cpu, intel, jetson, npu, nvidia, rocm, tpu
from provider_agent.discovery.common import DiscoveryWarning

log = logging.getLogger(__name__)

#: dump file name -> ``Sources`` field
DUMP_FILES: dict[str, str] = {
    "hostname": "hostname", "cpuinfo": "cpuinfo", "lscpu.txt": "lscpu", "online": "online",
    "possible": "possible", "meminfo": "meminfo", "df.txt": "df", "nvidia-smi-q.xml": "nvidia_xml",
    "nvidia-smi-query.csv": "nvidia_csv", "nvidia-smi-capture.txt": "nvidia_capture",
    "nvidia-smi.txt": "nvidia_table", "nvidia-smi-L.txt": "nvidia_list",
    "rocm-smi.json": "rocm_json", "npu-smi.txt": "npu_smi", "xpu-smi.txt": "xpu_smi", "sycl-ls.txt": "sycl_ls",
    "system_profiler.txt": "system_profiler", "tegrastats.txt": "tegrastats", "device-tree-model": "dt_model",
    "dev.txt": "dev", "tpu-env": "tpu_env",
}
IGNORED_FILES = frozenset({"SOURCES.md", "expected.json"})


@dataclass(frozen=True, slots=True)
class Sources:
    """Raw outputs, one per tool or file; ``None`` = not available."""

    hostname: str
    cpuinfo: str | None = None
    lscpu: str | None = None
    online: str | None = None
    possible: str | None = None
    meminfo: str | None = None
    df: str | None = None
    disk_gib: float | None = None  # measured directly (statvfs) by the live probe
    nvidia_xml: str | None = None
    nvidia_csv: str | None = None
    nvidia_csv_noheader: str | None = None  # with nvidia.PROBE_FIELDS
    nvidia_capture: str | None = None
    nvidia_table: str | None = None
    nvidia_list: str | None = None
    rocm_json: str | None = None
    npu_smi: str | None = None
    xpu_smi: str | None = None
    sycl_ls: str | None = None
    system_profiler: str | None = None
    tegrastats: str | None = None
    dt_model: str | None = None
    dev: str | None = None
    tpu_env: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Discovery:
    descriptor: NodeDescriptor
    warnings: tuple[DiscoveryWarning, ...]
    notes: tuple[str, ...] = ()
    used: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "descriptor": self.descriptor.canonical(),
            "digest": "0x" + self.descriptor.digest().hex(),
            "warnings": [{"source": w.source, "message": w.message} for w in self.warnings],
            "notes": list(self.notes),
            "used": list(self.used),
        }


def sources_from_files(files: Mapping[str, str], default_hostname: str) -> Sources:
    """Map a dump directory's ``{file name: text}`` to ``Sources`` by the layout above."""
    kwargs: dict[str, object] = {}
    notes = []
    for name in sorted(files):
        if name in IGNORED_FILES:
            continue
        target = DUMP_FILES.get(name)
        if target is None:
            notes.append(f"{name}: not a dump file name, ignored")
            continue
        kwargs[target] = files[name]
    hostname = str(kwargs.pop("hostname", "") or "").strip() or default_hostname
    return Sources(hostname=hostname, notes=tuple(notes), **kwargs)  # type: ignore[arg-type]


@dataclass(slots=True)
class _Found:
    """What the parsers found so far (one per ``discover`` call)."""

    warnings: list[DiscoveryWarning] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    used: list[str] = field(default_factory=list)
    devices: list[DeviceCapability] = field(default_factory=list)
    arch: str | None = None
    numa: int | None = None
    memory: int | None = None

    def add(self, used: str, devices: "tuple[DeviceCapability, ...]", warnings: "tuple[DiscoveryWarning, ...]") -> None:
        self.used.append(used)
        self.devices.extend(devices)
        self.warnings.extend(warnings)


def _cpus(src: Sources, f: _Found) -> None:
    online = None
    for name, text in (("online", src.online), ("possible", src.possible)):
        if text is not None:
            parsed = cpu.parse_cpu_list(text, name)
            f.add(name, (), parsed.warnings)
            if name == "online":
                online = parsed.value  # type: ignore[assignment]
    if src.cpuinfo is None and src.lscpu is None:
        f.notes.append("no cpuinfo or lscpu: CPU unknown")
        return
    cpuinfo = cpu.parse_cpuinfo(src.cpuinfo) if src.cpuinfo is not None else None
    lscpu = cpu.parse_lscpu(src.lscpu) if src.lscpu is not None else None
    f.used += [n for n, t in (("cpuinfo", src.cpuinfo), ("lscpu", src.lscpu)) if t is not None]
    facts = cpu.cpu_devices(cpuinfo, lscpu, online)  # type: ignore[arg-type]
    f.devices.extend(facts.devices)
    f.warnings.extend(facts.warnings)
    f.arch, f.numa = facts.arch, facts.numa_nodes


def _memory_and_disk(src: Sources, f: _Found) -> float | None:
    if src.meminfo is not None:
        parsed = cpu.parse_meminfo(src.meminfo)
        f.memory = parsed.value  # type: ignore[assignment]
        f.add("meminfo", (), parsed.warnings)
    else:
        f.notes.append("no meminfo: system memory unknown")
    if src.disk_gib is not None:
        return src.disk_gib
    if src.df is not None:
        parsed = cpu.parse_df(src.df)
        f.add("df", (), parsed.warnings)
        return parsed.value  # type: ignore[return-value]
    f.notes.append("no disk record: disk unknown")
    return None


def _nvidia(src: Sources, f: _Found) -> None:
    if src.nvidia_xml is not None:
        facts = nvidia.parse_smi_xml(src.nvidia_xml)
        f.add("nvidia-smi -q -x", facts.devices, facts.warnings)
    elif src.nvidia_capture is not None:
        capture = nvidia.parse_capture(src.nvidia_capture)
        f.arch = f.arch or capture.get("arch")
        f.add("nvidia_gpu_exporter capture", capture.gpus.devices, capture.gpus.warnings)
    elif src.nvidia_csv is not None or src.nvidia_csv_noheader is not None:
        facts = nvidia.parse_query_csv(src.nvidia_csv, listing=src.nvidia_list, table=src.nvidia_table) \
            if src.nvidia_csv is not None else \
            nvidia.parse_query_csv(src.nvidia_csv_noheader or "", nvidia.PROBE_FIELDS, listing=src.nvidia_list,
                                   table=src.nvidia_table)
        f.add("nvidia-smi --query-gpu (csv)", facts.devices, facts.warnings)
    elif src.nvidia_table is not None or src.nvidia_list is not None:
        facts = nvidia.parse_smi_text(src.nvidia_table, src.nvidia_list)
        f.add("nvidia-smi (text)", facts.devices, facts.warnings)


def _accelerators(src: Sources, f: _Found) -> None:
    if src.rocm_json is not None:
        r = rocm.parse_rocm_json(src.rocm_json)
        f.add("rocm-smi", r.devices, r.warnings)
    if src.npu_smi is not None:
        n = npu.parse_npu_smi(src.npu_smi)
        f.add("npu-smi", n.devices, n.warnings)
    if src.xpu_smi is not None:
        x = intel.parse_xpu_smi(src.xpu_smi)
        f.add("xpu-smi", x.devices, x.warnings)
    elif src.sycl_ls is not None:
        s = intel.parse_sycl_ls(src.sycl_ls)
        f.add("sycl-ls", s.devices, s.warnings)
    if src.system_profiler is not None:
        mac = apple.parse_system_profiler(src.system_profiler)
        f.add("system_profiler", mac.devices, mac.warnings)
        f.memory = f.memory if f.memory is not None else mac.memory_mib
    if src.tegrastats is not None or src.dt_model is not None and "jetson" in src.dt_model.lower():
        j = jetson.parse_jetson(src.tegrastats, src.dt_model)
        f.add("tegrastats", j.devices, j.warnings)
    if src.dev is not None or src.tpu_env is not None:
        entries = [ln.strip() for ln in (src.dev or "").splitlines() if ln.strip()]
        t = tpu.parse_tpu(entries, tpu.parse_env_file(src.tpu_env or ""))
        f.add("tpu", t.devices, t.warnings)


def discover(src: Sources) -> Discovery:
    found = _Found(notes=list(src.notes))
    _cpus(src, found)
    disk = _memory_and_disk(src, found)
    _nvidia(src, found)
    _accelerators(src, found)
    descriptor = NodeDescriptor(hostname=src.hostname, devices=tuple(found.devices), memory_mib=found.memory,
                                disk_gib=disk, numa_nodes=found.numa, arch=found.arch)
    log.info("discovered node %s: %d device groups, %d warnings, digest %s", src.hostname,
             len(descriptor.devices), len(found.warnings), descriptor.digest().hex()[:16])
    return Discovery(descriptor, tuple(found.warnings), tuple(found.notes), tuple(found.used))
