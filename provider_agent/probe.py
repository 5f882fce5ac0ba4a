"""The discovery adapter: reads the live machine or a dump directory into ``discovery.Sources``.

This is the only place that touches files, runs tools (subprocess) and reads the environment
for discovery; ``provider_agent.discovery`` only parses what it is given.

Invariants:
- a tool that is not installed, fails or times out is skipped with a note, never an error;
- nothing is substituted for a missing tool's output.
"""

from __future__ import annotations

import glob
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

from provider_agent.discovery import Discovery, Sources, discover, sources_from_files
from provider_agent.discovery.errors import DumpError
from provider_agent.discovery.node import DUMP_FILES

log = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 30.0

ROCM_SMI_ARGS = ("--showproductname", "--showmeminfo", "vram", "--showbus", "--showclocks",
                 "--showtopotype", "--showdriverversion", "--json")


def load_dump(path: str | os.PathLike[str]) -> Sources:
    """A captured dump directory (layout in ``provider_agent.discovery.node``) as ``Sources``."""
    root = Path(path)
    if not root.exists():
        raise DumpError(f"dump directory {str(root)!r} does not exist", field="from")
    if not root.is_dir():
        raise DumpError(f"{str(root)!r} is not a directory", field="from",
                        hint="pass the directory that holds cpuinfo, lscpu.txt, nvidia-smi-q.xml...")
    files = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(root.iterdir()) if p.is_file()}
    if not set(files) & set(DUMP_FILES):
        raise DumpError(f"{str(root)!r} holds none of the dump files", field="from",
                        hint="expected some of: " + ", ".join(sorted(DUMP_FILES)))
    return sources_from_files(files, default_hostname=root.name)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _run(tool: str, args: tuple[str, ...], notes: list[str]) -> str | None:
    exe = shutil.which(tool)
    if exe is None:
        notes.append(f"{tool} not installed: skipped")
        return None
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"{tool} {' '.join(args)} did not run: {exc}")
        return None
    if proc.returncode != 0:
        notes.append(f"{tool} {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[:200]}")
        return None
    log.debug("ran %s %s: %d bytes", tool, " ".join(args), len(proc.stdout))
    return proc.stdout


def live_sources(disk_path: str = "/") -> Sources:
    """Probe this machine: /proc and /sys files, lscpu, the GPU/NPU tools, TPU device nodes."""
    notes: list[str] = []
    try:
        st = os.statvfs(disk_path)
        disk_gib = round(st.f_bavail * st.f_frsize / 2**30, 3)
    except OSError as exc:
        notes.append(f"statvfs({disk_path}) failed: {exc}")
        disk_gib = None
    dev = sorted(glob.glob("/dev/accel[0-9]*") + glob.glob("/dev/vfio/[0-9]*"))
    env = {k: v for k, v in os.environ.items() if k.startswith("TPU_")}
    return Sources(
        hostname=platform.node() or "localhost",
        cpuinfo=_read("/proc/cpuinfo"),
        lscpu=_run("lscpu", (), notes),
        online=_read("/sys/devices/system/cpu/online"),
        possible=_read("/sys/devices/system/cpu/possible"),
        meminfo=_read("/proc/meminfo"),
        disk_gib=disk_gib,
        nvidia_xml=_run("nvidia-smi", ("-q", "-x"), notes),
        rocm_json=_run("rocm-smi", ROCM_SMI_ARGS, notes),
        npu_smi=_run("npu-smi", ("info",), notes),
        dev="\n".join(dev) + "\n" if dev else None,
        tpu_env="".join(f"{k}={v}\n" for k, v in sorted(env.items())) if env else None,
        notes=tuple(notes),
    )


def discover_dump(path: str | os.PathLike[str]) -> Discovery:
    return discover(load_dump(path))


def discover_live(disk_path: str = "/") -> Discovery:
    return discover(live_sources(disk_path))
