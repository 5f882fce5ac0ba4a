"""Normalized compute units: one scale per device class, in the three CATS metric levels.

The IETF CATS metric draft (draft-ietf-cats-metric-definition) describes compute in
three levels, and this module follows them:

- **L0, raw metrics** (``l0_metrics``): what the device reports, in its own units
  (FLOP/s per precision, MiB, GB/s, MHz, cores). Unknown values stay ``None``.
- **L1, normalized metrics per category** (``l1_metrics`` -> ``L1``): compute, memory
  and memory bandwidth, each a unitless ratio to the class's *reference device*
  (1.0 = as much as the reference).
- **L2, one score** (``l2_score``): a weighted mean of saturated L1 values, an integer
  0..100 (fits in the one octet the draft gives an L2 metric; 0..100 like Kubernetes scores).

A *compute unit* of class C is the peak dense throughput of C's reference device at
a precision (``REFERENCES``; the choices and their datasheets are in docs/resources.md):

    units(d, p) = peak(d, p) / peak(ref_C, p) * share_milli(d) / 1000

The precision used is the first in the class's preference order that both the device
and the reference publish, so units always compare like with like.

Invariants:
- a device whose FLOPS are unknown has units ``None``, never a guessed number; it can
  still match requirements that do not need FLOPS (see ``fit``);
- units are per device (one of ``DeviceCapability.count``), scaled by its share;
  ``node_units`` sums them over a class and is a lower bound when some groups are unknown;
- everything here is a pure function of frozen values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from marketplace.resources import catalog
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision

log = logging.getLogger(__name__)

TERA = 1e12


@dataclass(frozen=True, slots=True)
class ReferenceDevice:
    """The device that is worth exactly 1.0 unit of its class.

    ``flops`` are datasheet peak dense figures (no structured sparsity) per precision;
    ``preference`` is the order in which precisions are tried when a caller does not
    name one; ``source`` names the datasheet so the number can be checked.
    """

    device_class: DeviceClass
    model: str
    source: str
    flops: tuple[tuple[Precision, float], ...]
    preference: tuple[Precision, ...]
    memory_mib: int | None
    memory_bandwidth_gbps: float | None

    def peak(self, precision: Precision) -> float | None:
        for p, v in self.flops:
            if p == precision:
                return v
        return None


#: One reference device per class. Why these ones: docs/resources.md, "Reference devices".
_A100 = catalog.lookup("NVIDIA A100-SXM4-80GB")
if _A100 is None:  # pragma: no cover - a broken catalog, caught by every units test
    raise ImportError("the GPU reference device (A100-SXM4-80GB) is missing from marketplace.resources.catalog")

REFERENCES: Mapping[DeviceClass, ReferenceDevice] = MappingProxyType(
    {
        DeviceClass.CPU: ReferenceDevice(
            device_class=DeviceClass.CPU,
            model="Intel Xeon Platinum 8380",
            # Intel ARK: 40 cores, 2.30 GHz base, 2 AVX-512 FMA units per core, 8 channels
            # DDR4-3200. Peak = cores x base clock x FMA units x lanes x 2 (multiply + add);
            # lanes: 8 for FP64, 16 for FP32 in a 512-bit register.
            source="Intel ARK, Xeon Platinum 8380 (cores, base clock, AVX-512 FMA units, memory channels)",
            flops=((Precision.FP64, 40 * 2.3e9 * 2 * 8 * 2), (Precision.FP32, 40 * 2.3e9 * 2 * 16 * 2)),
            preference=(Precision.FP64, Precision.FP32),
            # ARK gives no memory size per socket; 8 channels x one 32 GiB DIMM is our
            # normalisation constant, not a property of the chip.
            memory_mib=8 * 32 * 1024,
            memory_bandwidth_gbps=8 * 3200e6 * 8 / 1e9,  # 204.8 GB/s
        ),
        DeviceClass.GPU: ReferenceDevice(
            device_class=DeviceClass.GPU,
            model=_A100.model,
            source=_A100.source + ", dense figures (one table for discovery and units: catalog.py)",
            # FP32 is plain FP32: TF32 is not FP32 and is not used
            flops=_A100.flops,
            preference=(Precision.FP16, Precision.BF16, Precision.FP32, Precision.FP64, Precision.INT8),
            memory_mib=80 * 1024,
            memory_bandwidth_gbps=_A100.memory_bandwidth_gbps,
        ),
        DeviceClass.NPU: ReferenceDevice(
            device_class=DeviceClass.NPU,
            model="Huawei Ascend 910",
            source="Huawei press release 'Ascend 910 and MindSpore', 23 Aug 2019 (FP16 256 TFLOPS, INT8 512 TOPS)",
            flops=((Precision.FP16, 256 * TERA), (Precision.INT8, 512 * TERA)),
            preference=(Precision.FP16, Precision.INT8),
            memory_mib=32 * 1024,
            # The press release gives no memory bandwidth; unknown stays unknown.
            memory_bandwidth_gbps=None,
        ),
        DeviceClass.TPU: ReferenceDevice(
            device_class=DeviceClass.TPU,
            model="Google Cloud TPU v4",
            source="Google Cloud TPU v4 documentation: 275 TFLOPS bf16/int8 per chip, 32 GiB HBM2, 1200 GBps",
            flops=((Precision.BF16, 275 * TERA), (Precision.INT8, 275 * TERA)),
            preference=(Precision.BF16, Precision.INT8),
            memory_mib=32 * 1024,
            memory_bandwidth_gbps=1200.0,
        ),
    }
)


def reference(device_class: DeviceClass) -> ReferenceDevice | None:
    """The reference device of a class, or ``None`` for a class without one yet."""
    return REFERENCES.get(device_class)


def units_precision(device: DeviceCapability, precision: Precision | None = None) -> Precision | None:
    """The precision ``compute_units`` measures ``device`` at, or ``None`` if none is comparable.

    With ``precision`` given, it is that precision if both the device and the reference
    publish it. Otherwise the first of the class's preferences that both publish.
    """
    ref = REFERENCES.get(device.device_class)
    if ref is None:
        return None
    if precision is not None:
        return precision if device.peak(precision) is not None and ref.peak(precision) else None
    for p in ref.preference:
        if device.peak(p) is not None:
            return p
    return None


def compute_units(device: DeviceCapability, precision: Precision | None = None) -> float | None:
    """Normalized units of ONE device of the group, scaled by its offered share.

    ``None`` when the device publishes no FLOPS comparable with its class's reference:
    such a device is never given a number, so it cannot be priced per unit by FLOPS
    nor match a requirement with ``min_flops``.
    """
    p = units_precision(device, precision)
    if p is None:
        return None
    ref_peak = REFERENCES[device.device_class].peak(p)
    peak = device.peak(p)
    assert ref_peak and peak is not None  # units_precision checked both
    return peak / ref_peak * device.share_milli / 1000.0


def node_units(
    descriptor: NodeDescriptor, device_class: DeviceClass, precision: Precision | None = None
) -> float | None:
    """Units of a whole node in one class: the sum of count x units over its groups.

    0.0 when the node has no device of the class; ``None`` when it has some but none
    with known units; otherwise a lower bound if some groups are unknown (logged).
    """
    total = 0.0
    known = False
    unknown = 0
    for d in descriptor.devices:
        if d.device_class != device_class:
            continue
        u = compute_units(d, precision)
        if u is None:
            unknown += d.count
            continue
        known = True
        total += d.count * u
    if unknown and not known:
        return None
    if unknown:
        log.debug(
            "node %s: %d %s device(s) without comparable FLOPS left out of its units",
            descriptor.hostname, unknown, device_class.name,
        )
    return total


# -- L0 -----------------------------------------------------------------------

_PRECISION_KEYS = tuple((p, f"flops_{p.name.lower()}") for p in Precision)


def l0_metrics(device: DeviceCapability) -> Mapping[str, float | None]:
    """CATS level 0: the raw metrics of one device, in their own units, ``None`` if unknown.

    Keys: ``count``, ``compute_units`` (cores, SMs, CUs, AI cores), ``clock_mhz``,
    ``flops_<precision>`` (FLOP/s, OP/s for int8) for every precision,
    ``memory_mib``, ``memory_bandwidth_gbps`` (GB/s), ``share_milli``.
    """
    out: dict[str, float | None] = {
        "count": float(device.count),
        "compute_units": None if device.compute_units is None else float(device.compute_units),
        "clock_mhz": device.clock_mhz,
    }
    for p, key in _PRECISION_KEYS:
        out[key] = device.peak(p)
    out["memory_mib"] = None if device.memory_mib is None else float(device.memory_mib)
    out["memory_bandwidth_gbps"] = device.memory_bandwidth_gbps
    out["share_milli"] = float(device.share_milli)
    return MappingProxyType(out)


# -- L1 -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class L1:
    """CATS level 1: per-category ratios to the class's reference device (1.0 = reference).

    ``compute`` is ``compute_units`` (share included) and ``precision`` says at which
    precision it was measured; ``memory`` and ``bandwidth`` are per device, share included
    (half a GPU offers half its memory and bandwidth). ``None`` = not known.
    """

    device_class: DeviceClass
    compute: float | None
    precision: Precision | None
    memory: float | None
    bandwidth: float | None


def l1_metrics(device: DeviceCapability, precision: Precision | None = None) -> L1:
    """CATS level 1 metrics of one device (see ``L1``)."""
    ref = REFERENCES.get(device.device_class)
    share = device.share_milli / 1000.0
    p = units_precision(device, precision)
    compute = compute_units(device, p) if p is not None else None
    memory = bandwidth = None
    if ref is not None:
        if device.memory_mib is not None and ref.memory_mib:
            memory = device.memory_mib / ref.memory_mib * share
        if device.memory_bandwidth_gbps is not None and ref.memory_bandwidth_gbps:
            bandwidth = device.memory_bandwidth_gbps / ref.memory_bandwidth_gbps * share
    return L1(device.device_class, compute, p, memory, bandwidth)


# -- L2 -----------------------------------------------------------------------

#: Weights of the L1 categories in the L2 score: compute dominates what is bought.
L2_WEIGHTS: Mapping[str, float] = MappingProxyType({"compute": 0.6, "memory": 0.25, "bandwidth": 0.15})


def _saturate(x: float) -> float:
    # x / (1 + x): the reference (1.0) lands at 0.5, more is better but never unbounded,
    # so one huge category cannot drown the others.
    return x / (1.0 + x) if x > 0 else 0.0


def l2_score(l1: L1, weights: Mapping[str, float] = L2_WEIGHTS) -> int | None:
    """CATS level 2: one integer 0..100 from the L1 categories.

    ``round(100 * sum(w_k * s(x_k)) / sum(w_k))`` over the categories that are known,
    with ``s(x) = x / (1 + x)``; the reference device scores 50. ``None`` when compute is
    unknown: a score without compute would rank a device by memory alone.
    """
    if l1.compute is None:
        return None
    num = den = 0.0
    for key in ("compute", "memory", "bandwidth"):
        value = getattr(l1, key)
        w = weights.get(key, 0.0)
        if value is None or w <= 0:
            continue
        num += w * _saturate(value)
        den += w
    return round(100.0 * num / den) if den else None
