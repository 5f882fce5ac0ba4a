"""The device catalog: datasheet figures that the hardware tools do not print.

nvidia-smi, rocm-smi, npu-smi, xpu-smi and system_profiler report a device's name, memory and
clocks, never its peak throughput. This module maps a normalized model name to the figures its
vendor publishes (rows in ``catalog_data``), so discovery can fill ``DeviceCapability.flops``,
``memory_bandwidth_gbps`` and ``interconnect``.

Invariants:
- every row cites the public document it was copied from (see ``catalog_data``);
- figures are peak *dense* throughput: where a datasheet prints only the "with sparsity" figure
  (NVIDIA Ampere and later) the row holds half of it, and says so;
- a model that is not in the table, or whose name does not say which product it is (Alibaba's
  ``P100`` may be the PCIe or the SXM2 board), gets no entry: ``lookup`` returns ``None`` and
  callers leave FLOPS unknown. A figure a vendor does not publish is absent from its row.
  Nothing here is estimated;
- a family name as the PCI database prints it (``Radeon RX 7700 XT / 7800 XT``) resolves to one
  row only when the device's memory matches exactly one candidate (``resolve``);
- CPU peaks are never tabulated: ``derive_cpu_flops`` computes them from discovered facts by a
  stated formula, and only for microarchitectures whose FMA width is documented below.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from marketplace.resources.catalog_data import SPECS, DeviceSpec
from marketplace.resources.model import Precision

__all__ = ["AMBIGUOUS", "CPU_MICROARCH", "DeviceSpec", "UNRESOLVED", "derive_cpu_flops", "explain",
           "family_candidates", "lookup", "normalize_model", "resolve", "specs"]

log = logging.getLogger(__name__)



def normalize_model(name: str) -> str:
    """Lower case, vendor words dropped, punctuation folded to single spaces.

    ``"NVIDIA A100-SXM4-80GB"`` -> ``"a100 sxm4 80gb"``; ``"Tesla T4"`` -> ``"t4"``;
    ``"Arcturus GL-XL [Instinct MI100]"`` is handled by the caller (rocm.py takes
    the bracketed marketing name).
    """
    text = re.sub(r"[^0-9a-z]+", " ", name.lower()).strip()
    words = [w for w in text.split() if w not in _VENDOR_WORDS]
    return " ".join(words)


_VENDOR_WORDS = frozenset({"nvidia", "tesla", "amd", "huawei", "ascend", "radeon", "instinct", "geforce"})

# Names that a real source uses but that do not identify one product. The Alibaba trace
# says "P100" or "V100M32" without the board: PCIe and SXM2 peaks differ by ~12%.
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "p100": ("NVIDIA Tesla P100 PCIe 16GB", "NVIDIA Tesla P100 SXM2 16GB"),
    "v100m16": ("NVIDIA Tesla V100 PCIe 16GB", "NVIDIA Tesla V100 SXM2 16GB"),
    "v100m32": ("NVIDIA Tesla V100 PCIe 32GB", "NVIDIA Tesla V100 SXM2 32GB"),
    "v100": ("NVIDIA Tesla V100 PCIe 16GB", "NVIDIA Tesla V100 SXM2 16GB",
             "NVIDIA Tesla V100 PCIe 32GB", "NVIDIA Tesla V100 SXM2 32GB"),
}

# Names we know we cannot resolve, with the reason (so a caller can explain the None).
UNRESOLVED: dict[str, str] = {
    "g2": "the Alibaba trace anonymises this GPU model as 'G2'",
    "g3": "the Alibaba trace anonymises this GPU model as 'G3'",
    "910b2c": "Huawei publishes no per-SKU datasheet for the Ascend 910B2C that could be cited",
    "910b": "Huawei publishes no per-SKU datasheet for the Ascend 910B that could be cited",
    "910b1": "Huawei publishes no per-SKU datasheet for the Ascend 910B1 that could be cited",
    "910b2": "Huawei publishes no per-SKU datasheet for the Ascend 910B2 that could be cited",
    "910b3": "Huawei publishes no per-SKU datasheet for the Ascend 910B3 that could be cited",
    "910b4": "Huawei publishes no per-SKU datasheet for the Ascend 910B4 that could be cited",
    "910c": "Huawei publishes no per-chip datasheet for the Ascend 910C that could be cited",
    "910": "npu-smi prints 'Ascend910' for more than one generation (the 910C of Atlas A3 systems among them)",
    "gb200": "NVIDIA publishes GB200 figures per superchip and per NVL72 rack, in revisions that differ; "
             "no per-GPU figure is copied",
    "jetson agx orin developer kit": "the AGX Orin developer kit carries a 32 GB or a 64 GB module, whose "
                                     "GPUs differ; resolved only by memory size",
}


def _index() -> dict[str, DeviceSpec]:
    out: dict[str, DeviceSpec] = {}
    for spec in SPECS:
        for key in (normalize_model(spec.model), *spec.aliases):
            if key in out and out[key] is not spec:
                raise AssertionError(f"catalog alias {key!r} names two rows")
            out[key] = spec
    return out


_BY_NAME = _index()


def lookup(name: str) -> DeviceSpec | None:
    """The datasheet row for a model name as a tool prints it, or ``None`` (unknown or ambiguous)."""
    return _BY_NAME.get(normalize_model(name))


def family_candidates(name: str) -> tuple[str, ...]:
    """The products a PCI-database family name lists: ``RX 7700 XT / 7800 XT`` -> both, prefixed alike.

    ``Radeon RX 6700/6700 XT / 6800M`` -> ``Radeon RX 6700``, ``Radeon RX 6700 XT``, ``Radeon RX 6800M``.
    A name without ``/`` is its own only candidate.
    """
    parts = [p.strip() for p in name.split("/") if p.strip()]
    if len(parts) < 2:
        return (name,)
    prefix = re.match(r"^(.*?)(\d\S*.*)$", parts[0])
    head = prefix.group(1) if prefix else ""
    out = [parts[0]]
    for part in parts[1:]:
        out.append(part if not re.match(r"^\d", part) else head + part)
    return tuple(out)


def resolve(name: str, memory_mib: int | None = None) -> tuple[DeviceSpec | None, str]:
    """The row for ``name``, resolving a family name by memory size; and the line that explains it."""
    spec = lookup(name)
    if spec is not None:
        return spec, explain(name)
    candidates = family_candidates(name)
    if len(candidates) < 2:
        return None, explain(name)
    rows = [lookup(c) for c in candidates]
    if memory_mib is None:
        return None, f"{name!r} names {len(candidates)} products and the memory size is unknown: peak figures left unknown"
    fits = [r for r in rows if r is None or r.memory_gib is None or abs(memory_mib / 1024 - r.memory_gib) <= 0.1 * r.memory_gib]
    if len(fits) == 1 and fits[0] is not None:
        return fits[0], f"{name!r} with {memory_mib} MiB is {fits[0].model} ({fits[0].source})"
    unknown = [c for c, r in zip(candidates, rows) if r is None]
    return None, (f"{name!r} with {memory_mib} MiB may be any of {', '.join(c for c, r in zip(candidates, rows) if r in fits)}"
                  + (f" ({', '.join(unknown)} not in the catalog)" if unknown else "") + ": peak figures left unknown")


def explain(name: str) -> str:
    """Why ``lookup(name)`` gives what it gives, in one line (for warnings and ``--json``)."""
    key = normalize_model(name)
    spec = _BY_NAME.get(key)
    if spec is not None:
        return f"{name!r} is {spec.model} ({spec.source})"
    if key in AMBIGUOUS:
        return f"{name!r} may be any of {', '.join(AMBIGUOUS[key])}: peak figures left unknown"
    if key in UNRESOLVED:
        return f"{name!r}: {UNRESOLVED[key]}: peak figures left unknown"
    return f"{name!r} is not in the datasheet catalog: peak figures left unknown"


def specs() -> tuple[DeviceSpec, ...]:
    return SPECS


# --- CPUs -------------------------------------------------------------------------------
#
# Peak FP64 FLOP/s per core per cycle = vector lanes (64-bit) x 2 (a fused multiply-add is
# two FLOPs) x FMA pipes of that width. FP32 is twice that (twice the lanes). The flags say
# which ISA a core has; they do not say how many FMA pipes it has, so the pipe count comes
# from the vendor's optimisation manual per microarchitecture, keyed by
# (vendor_id, cpu family, model) exactly as /proc/cpuinfo prints them. A CPU not listed
# here gets no FLOPS. The clock used is the maximum frequency lscpu reports; AVX-512
# code may run below it, so this is an upper bound, labelled "flops-derived".


@dataclass(frozen=True, slots=True)
class CpuMicroarch:
    name: str
    fp64_flops_per_cycle: int
    source: str


CPU_MICROARCH: dict[tuple[str, int, int], CpuMicroarch] = {
    # AMD Software Optimization Guide for AMD Family 17h Processors: Zen executes 256-bit
    # AVX2 as two 128-bit halves on two 128-bit FMA pipes: 2 lanes x 2 x 2 = 8 FP64/cycle.
    ("AuthenticAMD", 23, 1): CpuMicroarch("Zen (Naples)", 8, "AMD Software Optimization Guide, Family 17h"),
    # Intel 64 and IA-32 Architectures Optimization Reference Manual, Sapphire Rapids
    # (family 6 model 143): two 512-bit FMA units on Xeon Platinum: 8 x 2 x 2 = 32 FP64/cycle.
    ("GenuineIntel", 6, 143): CpuMicroarch("Sapphire Rapids", 32, "Intel Optimization Reference Manual, Sapphire Rapids"),
}


def derive_cpu_flops(vendor_id: str | None, family: int | None, model: int | None,
                     cores: int | None, max_mhz: float | None) -> tuple[tuple[Precision, float], ...]:
    """Peak FP64 and FP32 FLOP/s of ``cores`` cores at ``max_mhz``, or ``()`` when a fact is missing.

    Formula: cores x max_mhz x 1e6 x fp64_flops_per_cycle (FP32: twice that).
    """
    if vendor_id is None or family is None or model is None or not cores or not max_mhz:
        return ()
    arch = CPU_MICROARCH.get((vendor_id, family, model))
    if arch is None:
        log.debug("no FMA width documented for cpu %s family %s model %s", vendor_id, family, model)
        return ()
    fp64 = cores * max_mhz * 1e6 * arch.fp64_flops_per_cycle
    return ((Precision.FP64, fp64), (Precision.FP32, 2 * fp64))
