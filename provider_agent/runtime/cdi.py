"""Accelerators for containers through CDI (the Container Device Interface).

A container lease on N devices of a class gets exactly the N devices the agent assigned it, by
CDI name (``--device nvidia.com/gpu=0``): podman reads the CDI specs in ``/etc/cdi`` and
``/var/run/cdi`` and gives the container each named device's nodes, and the devices cgroup
lets it open those and no other.

Where the specs come from:
- ``read_specs``: the vendor's own (``nvidia-ctk cdi generate``, AMD's and Ascend's tools),
  which also mount the driver's libraries: preferred when present;
- ``generate_spec``: otherwise the agent writes one from its discovered devices (device nodes
  only: the driver's user-space libraries must then be in the image). Per vendor:
  NVIDIA ``nvidia.com/gpu=N`` -> ``/dev/nvidiaN`` (+ ``nvidiactl``, ``nvidia-uvm``,
  ``nvidia-uvm-tools``); AMD ``amd.com/gpu=N`` -> ``/dev/dri/renderD{128+N}`` (+ ``/dev/kfd``);
  Huawei Ascend ``huawei.com/npu=N`` -> ``/dev/davinciN`` (+ ``davinci_manager``,
  ``devmm_svm``, ``hisi_hdc``). A node missing under ``dev_root`` leaves its device (or shared
  node) out of the spec, with a warning, rather than promising a device podman cannot give.

``DevicePool`` hands a lease free device indices of a kind and takes them back when it ends.
Tests use a ``dev_root`` of harmless character devices (copies of ``/dev/null``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from marketplace.errors import InputError
from marketplace.resources.model import DeviceCapability, DeviceClass

log = logging.getLogger(__name__)

CDI_VERSION = "0.5.0"
SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
_NAME = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*/[A-Za-z0-9][A-Za-z0-9_.-]*=[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class CdiError(InputError):
    """A device a lease cannot be given (unknown kind, too few free devices, a bad spec)."""

    code = "cdi"


@dataclass(frozen=True, slots=True)
class Family:
    """How one vendor's devices appear: the CDI kind, each device's node, the shared nodes."""

    kind: str
    node: str  # with {i} for the device index
    first: int  # the index of device 0 in its node name (renderD128 is AMD's device 0)
    shared: tuple[str, ...]


FAMILIES = {
    "nvidia": Family("nvidia.com/gpu", "nvidia{i}", 0, ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")),
    "amd": Family("amd.com/gpu", "dri/renderD{i}", 128, ("kfd",)),
    "huawei": Family("huawei.com/npu", "davinci{i}", 0, ("davinci_manager", "devmm_svm", "hisi_hdc")),
}


def family_of(device: DeviceCapability) -> Family | None:
    if device.device_class not in (DeviceClass.GPU, DeviceClass.NPU):
        return None
    text = f"{device.vendor or ''} {device.model}".lower()
    for key, fam in FAMILIES.items():
        if key in text or (key == "amd" and ("radeon" in text or "instinct" in text)) or \
                (key == "huawei" and "ascend" in text):
            return fam
    return None


def generate_spec(devices: Iterable[DeviceCapability], dev_root: Path = Path("/dev")) -> list[dict]:
    """CDI specs (one per kind) for the discovered devices whose nodes exist under ``dev_root``.
    Devices of one kind are numbered in discovery order."""
    counts: dict[str, int] = {}
    fams: dict[str, Family] = {}
    for d in devices:
        fam = family_of(d)
        if fam is not None:
            counts[fam.kind] = counts.get(fam.kind, 0) + d.count
            fams[fam.kind] = fam
    specs = []
    for kind, n in sorted(counts.items()):
        fam = fams[kind]
        entries = []
        for i in range(n):
            host = dev_root / fam.node.format(i=fam.first + i)
            if not host.exists():
                log.warning("CDI %s=%d: %s does not exist; device left out", kind, i, host)
                continue
            entries.append({"name": str(i), "containerEdits": {"deviceNodes": [
                {"path": "/dev/" + fam.node.format(i=fam.first + i), "hostPath": str(host)}]}})
        shared = [{"path": f"/dev/{s}", "hostPath": str(dev_root / s)} for s in fam.shared if (dev_root / s).exists()]
        if entries:
            specs.append({"cdiVersion": CDI_VERSION, "kind": kind, "devices": entries,
                          "containerEdits": {"deviceNodes": shared}})
    return specs


def write_specs(specs: Iterable[dict], directory: Path = SPEC_DIRS[1], prefix: str = "cona") -> list[Path]:
    """Write each spec atomically as ``PREFIX-<vendor>-<class>.json``; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        path = directory / f"{prefix}-{spec['kind'].replace('/', '-').replace('.', '-')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        paths.append(path)
    return paths


def read_specs(directories: Iterable[Path] = SPEC_DIRS) -> dict[str, tuple[str, ...]]:
    """The device names per kind in the JSON specs found (YAML specs are podman's to read; their
    kinds are not offered by this agent unless also described in JSON)."""
    kinds: dict[str, list[str]] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            try:
                spec = json.loads(path.read_text())
                kind = spec["kind"]
                names = [str(d["name"]) for d in spec.get("devices", [])]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("CDI spec %s is unreadable: %s", path, exc)
                continue
            kinds.setdefault(kind, []).extend(n for n in names if n not in kinds.get(kind, []))
    return {k: tuple(v) for k, v in kinds.items()}


def check_device_name(name: str) -> str:
    if not _NAME.match(name):
        raise CdiError(f"{name!r} is not a CDI device name", field="devices",
                       hint="VENDOR/CLASS=NAME, e.g. nvidia.com/gpu=0")
    return name


class DevicePool:
    """Free CDI devices per kind; ``take`` gives a lease its devices, ``give`` takes them back."""

    def __init__(self, kinds: dict[str, tuple[str, ...]]) -> None:
        self._free = {k: list(v) for k, v in kinds.items()}
        self._lock = threading.Lock()

    def kinds(self) -> tuple[str, ...]:
        """The CDI kinds this pool hands out (free now or not)."""
        with self._lock:
            return tuple(sorted(self._free))

    def take(self, kind: str, count: int) -> tuple[str, ...]:
        with self._lock:
            free = self._free.get(kind)
            if free is None:
                raise CdiError(f"this provider has no {kind} device", field="devices")
            if count > len(free):
                raise CdiError(f"{count} {kind} device(s) asked for, {len(free)} free", field="devices")
            taken, self._free[kind] = free[:count], free[count:]
        return tuple(f"{kind}={n}" for n in taken)

    def give(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                kind, _, n = name.partition("=")
                if n not in self._free.setdefault(kind, []):
                    self._free[kind].append(n)
