"""Discovery of a whole node: raw tool outputs in, one ``NodeDescriptor`` and its warnings out.

``Sources`` holds the text each tool printed (or ``None`` when the tool or file is absent);
``discover`` runs every parser over it and assembles the descriptor. The same function serves
the live probe (``provider_agent.probe`` fills ``Sources`` by running the tools) and captured
dumps (``sources_from_files`` maps a dump directory's files by name).

Dump layout (one directory per machine; every file optional, unknown names are listed in notes):

    hostname                 the node's name (else the directory name)
    cpuinfo                  /proc/cpuinfo
    lscpu.txt                `lscpu` (an appended `lscpu -p` section is allowed)
    online, possible         /sys/devices/system/cpu/{online,possible}
    meminfo                  /proc/meminfo
    df.txt                   `df -Pk PATH` of the disk on offer
    nvidia-smi-q.xml         `nvidia-smi -q -x`
    nvidia-smi-query.csv     `nvidia-smi --query-gpu=... --format=csv` (with header)
    nvidia-smi-capture.txt   an nvidia_gpu_exporter capture file (many sections)
    rocm-smi.json            `rocm-smi ... --json`
    npu-smi.txt              `npu-smi info`
    dev.txt                  TPU device nodes, one /dev path per line
    tpu-env                  TPU_* environment variables, KEY=VALUE lines
    SOURCES.md               provenance (not read)

Invariants: a missing source leaves its facts ``None`` (never a default); every warning of
every parser reaches ``Discovery.warnings``; the same sources always give the same descriptor
and so the same digest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

from marketplace.resources.model import DeviceCapability, NodeDescriptor
from provider_agent.discovery import cpu, npu, nvidia, rocm, tpu
from provider_agent.discovery.common import DiscoveryWarning

log = logging.getLogger(__name__)

#: dump file name -> ``Sources`` field
DUMP_FILES: dict[str, str] = {
    "hostname": "hostname", "cpuinfo": "cpuinfo", "lscpu.txt": "lscpu", "online": "online",
    "possible": "possible", "meminfo": "meminfo", "df.txt": "df", "nvidia-smi-q.xml": "nvidia_xml",
    "nvidia-smi-query.csv": "nvidia_csv", "nvidia-smi-capture.txt": "nvidia_capture",
    "rocm-smi.json": "rocm_json", "npu-smi.txt": "npu_smi", "dev.txt": "dev", "tpu-env": "tpu_env",
}
IGNORED_FILES = frozenset({"SOURCES.md"})


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
    rocm_json: str | None = None
    npu_smi: str | None = None
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


def discover(src: Sources) -> Discovery:
    warnings: list[DiscoveryWarning] = []
    notes = list(src.notes)
    used: list[str] = []
    devices: list[DeviceCapability] = []

    cpuinfo = cpu.parse_cpuinfo(src.cpuinfo) if src.cpuinfo is not None else None
    lscpu = cpu.parse_lscpu(src.lscpu) if src.lscpu is not None else None
    online = None
    for name, text in (("online", src.online), ("possible", src.possible)):
        if text is not None:
            parsed = cpu.parse_cpu_list(text, name)
            warnings.extend(parsed.warnings)
            used.append(name)
            if name == "online":
                online = parsed.value  # type: ignore[assignment]
    used += [n for n, t in (("cpuinfo", src.cpuinfo), ("lscpu", src.lscpu)) if t is not None]
    arch = None
    numa = None
    if cpuinfo is not None or lscpu is not None:
        facts = cpu.cpu_devices(cpuinfo, lscpu, online)  # type: ignore[arg-type]
        devices.extend(facts.devices)
        warnings.extend(facts.warnings)
        arch, numa = facts.arch, facts.numa_nodes
    else:
        notes.append("no cpuinfo or lscpu: CPU unknown")

    memory = None
    if src.meminfo is not None:
        parsed = cpu.parse_meminfo(src.meminfo)
        memory = parsed.value
        warnings.extend(parsed.warnings)
        used.append("meminfo")
    else:
        notes.append("no meminfo: system memory unknown")
    disk = src.disk_gib
    if disk is None and src.df is not None:
        parsed = cpu.parse_df(src.df)
        disk = parsed.value  # type: ignore[assignment]
        warnings.extend(parsed.warnings)
        used.append("df")
    elif disk is None:
        notes.append("no disk record: disk unknown")

    gpu_facts = None
    if src.nvidia_xml is not None:
        gpu_facts = nvidia.parse_smi_xml(src.nvidia_xml)
        used.append("nvidia-smi -q -x")
    elif src.nvidia_capture is not None:
        capture = nvidia.parse_capture(src.nvidia_capture)
        gpu_facts = capture.gpus
        arch = arch or capture.get("arch")
        used.append("nvidia_gpu_exporter capture")
    elif src.nvidia_csv is not None:
        gpu_facts = nvidia.parse_query_csv(src.nvidia_csv)
        used.append("nvidia-smi --query-gpu (csv)")
    elif src.nvidia_csv_noheader is not None:
        gpu_facts = nvidia.parse_query_csv(src.nvidia_csv_noheader, nvidia.PROBE_FIELDS)
        used.append("nvidia-smi --query-gpu (csv,noheader,nounits)")
    if gpu_facts is not None:
        devices.extend(gpu_facts.devices)
        warnings.extend(gpu_facts.warnings)
    if src.rocm_json is not None:
        r = rocm.parse_rocm_json(src.rocm_json)
        devices.extend(r.devices)
        warnings.extend(r.warnings)
        used.append("rocm-smi")
    if src.npu_smi is not None:
        n = npu.parse_npu_smi(src.npu_smi)
        devices.extend(n.devices)
        warnings.extend(n.warnings)
        used.append("npu-smi")
    if src.dev is not None or src.tpu_env is not None:
        entries = [ln.strip() for ln in (src.dev or "").splitlines() if ln.strip()]
        t = tpu.parse_tpu(entries, tpu.parse_env_file(src.tpu_env or ""))
        devices.extend(t.devices)
        warnings.extend(t.warnings)
        used.append("tpu")

    descriptor = NodeDescriptor(hostname=src.hostname, devices=tuple(devices), memory_mib=memory,  # type: ignore[arg-type]
                                disk_gib=disk, numa_nodes=numa, arch=arch)
    log.info("discovered node %s: %d device groups, %d warnings, digest %s", src.hostname,
             len(descriptor.devices), len(warnings), descriptor.digest().hex()[:16])
    return Discovery(descriptor, tuple(warnings), tuple(notes), tuple(used))
