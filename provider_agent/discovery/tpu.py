"""Google Cloud TPU discovery from the device nodes and the TPU VM environment.

A TPU VM exposes its chips as ``/dev/accel0..N`` (v2-v5e) or as VFIO groups ``/dev/vfio/0..N``
(v5p, v6e), and sets environment variables documented for TPU VMs, among them
``TPU_ACCELERATOR_TYPE`` (``v4-8``, ``v5litepod-8``, ``v5p-8``, ``v6e-8``), ``TPU_CHIPS_PER_HOST_BOUNDS``
(``"2,2,1"``), ``TPU_HOST_BOUNDS`` and ``TPU_WORKER_ID``.

CAVEAT: no real capture of a TPU VM exists in this project's data. The parser is tested only
with listings and environments built from Google's documented names, and is labelled so.

Invariants: the chip count is the number of device nodes seen; ``TPU_CHIPS_PER_HOST_BOUNDS`` is
only a cross-check (a mismatch is a warning). The generation comes from the accelerator type's
prefix; without it the model is "Google TPU (generation unknown)". Peak figures and HBM bandwidth
per chip come from the catalog (Google's TPU documentation) by generation.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass
from provider_agent.discovery.common import DiscoveryWarning, Warnings

log = logging.getLogger(__name__)

#: accelerator-type prefix -> generation, as named in Google's TPU VM documentation
GENERATIONS = {"v2": "TPU v2", "v3": "TPU v3", "v4": "TPU v4", "v5litepod": "TPU v5e", "v5e": "TPU v5e",
               "v5p": "TPU v5p", "v6e": "TPU v6e"}


@dataclass(frozen=True, slots=True)
class TpuFacts:
    devices: tuple[DeviceCapability, ...]
    warnings: tuple[DiscoveryWarning, ...] = ()
    accelerator_type: str | None = None


def parse_tpu(dev_entries: Iterable[str], env: Mapping[str, str], source: str = "tpu") -> TpuFacts:
    """``dev_entries``: paths under /dev (``/dev/accel0``, ``/dev/vfio/0``...); ``env``: the TPU variables."""
    w = Warnings(source)
    accel = sorted({e for e in dev_entries if re.fullmatch(r"/dev/accel\d+", e.strip())})
    vfio = sorted({e for e in dev_entries if re.fullmatch(r"/dev/vfio/\d+", e.strip())})
    acc_type = env.get("TPU_ACCELERATOR_TYPE")
    chips = len(accel) or len(vfio)
    if not chips:
        if acc_type:
            w.add(f"TPU_ACCELERATOR_TYPE={acc_type!r} but no /dev/accel* or /dev/vfio/N device nodes")
        return TpuFacts((), w.freeze(), acc_type)
    if accel and vfio:
        w.add(f"both /dev/accel* ({len(accel)}) and /dev/vfio groups ({len(vfio)}); counting /dev/accel*")
    model = "Google TPU (generation unknown)"
    if acc_type:
        m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", acc_type.strip())
        if m and m.group(1) in GENERATIONS:
            model = f"Google {GENERATIONS[m.group(1)]}"
        else:
            w.add(f"TPU_ACCELERATOR_TYPE {acc_type!r} is not a known 'vX-N' type")
    else:
        w.add("device nodes present but TPU_ACCELERATOR_TYPE is not set: generation unknown")
    bounds = env.get("TPU_CHIPS_PER_HOST_BOUNDS")
    if bounds:
        parts = bounds.split(",")
        if all(p.strip().isdigit() for p in parts):
            expected = math.prod(int(p) for p in parts)
            if expected != chips:
                w.add(f"TPU_CHIPS_PER_HOST_BOUNDS={bounds!r} means {expected} chips but {chips} device nodes seen")
        else:
            w.add(f"TPU_CHIPS_PER_HOST_BOUNDS {bounds!r} is not a comma-separated list of integers")
    features = {"vfio"} if vfio and not accel else set()
    spec = catalog.lookup(model)
    device = DeviceCapability(DeviceClass.TPU, model, "Google", count=chips, features=frozenset(features),
                              flops=spec.flops if spec else (),
                              memory_bandwidth_gbps=spec.memory_bandwidth_gbps if spec else None)
    return TpuFacts((device,), w.freeze(), acc_type)


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (a dump's ``tpu-env``); only ``TPU_*`` keys are kept."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().startswith("TPU_"):
            out[key.strip()] = value.strip()
    return out
