"""The device catalog: datasheet figures that the hardware tools do not print.

nvidia-smi, rocm-smi and npu-smi report a device's name, memory and clocks,
never its peak throughput. This module maps a normalized model name to the
figures its vendor publishes, so discovery can fill ``DeviceCapability.flops``,
``memory_bandwidth_gbps`` and ``interconnect``.

Invariants:
- every row cites the vendor datasheet it was copied from, in a comment;
- figures are peak *dense* throughput: where a datasheet prints only the
  "with sparsity" figure (NVIDIA Ampere and later, marked ``*`` there) the row
  holds half of it, and says so;
- a model that is not in the table, or whose name does not say which product
  it is (Alibaba's ``P100`` may be the PCIe or the SXM2 board, whose peaks
  differ), gets no entry: ``lookup`` returns ``None`` and callers leave FLOPS
  unknown. Nothing here is estimated;
- CPU peaks are never tabulated: ``derive_cpu_flops`` computes them from
  discovered facts by a stated formula, and only for microarchitectures whose
  FMA width is documented below.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from marketplace.resources.model import DeviceClass, Precision

log = logging.getLogger(__name__)

T = 1e12  # tera: the unit every datasheet below prints


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """Datasheet figures for one product. ``flops`` is per device, dense, in FLOP/s (OP/s for INT8)."""

    model: str
    vendor: str
    device_class: DeviceClass
    flops: tuple[tuple[Precision, float], ...]
    memory_bandwidth_gbps: float | None
    interconnect: str | None
    compute_units: int | None
    boost_clock_mhz: float | None
    source: str
    aliases: tuple[str, ...] = field(default=())

    def peak(self, precision: Precision) -> float | None:
        for p, v in self.flops:
            if p == precision:
                return v
        return None


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

F64, F32, F16, B16, I8, F8 = (Precision.FP64, Precision.FP32, Precision.FP16, Precision.BF16,
                              Precision.INT8, Precision.FP8)
GPU = DeviceClass.GPU

_SPECS: tuple[DeviceSpec, ...] = (
    # NVIDIA H100 Tensor Core GPU Datasheet (H100 SXM column). FP64 Tensor Core 67 TF;
    # FP32 67 TF; BF16/FP16 Tensor Core 1,979 TF*, FP8 3,958 TF*, INT8 3,958 TOPS* are
    # "with sparsity", so the dense peaks are half. 3.35 TB/s HBM3; NVLink 900 GB/s,
    # PCIe Gen5 128 GB/s. 132 SMs, 1980 MHz max boost (nvidia-smi reports clocks.max.sm 1980).
    # nvidia-smi names the SXM5 board "NVIDIA H100 80GB HBM3" (the PCIe board is "H100 PCIe").
    DeviceSpec("NVIDIA H100 80GB HBM3 SXM5", "NVIDIA", GPU,
               ((F64, 67 * T), (F32, 67 * T), (F16, 989.5 * T), (B16, 989.5 * T),
                (F8, 1979 * T), (I8, 1979 * T)),
               3350.0, "NVLink 4 900 GB/s; PCIe Gen5 x16 128 GB/s", 132, 1980.0,
               "NVIDIA H100 Tensor Core GPU Datasheet (SXM)", ("h100 80gb hbm3", "h100 sxm5 80gb", "h100 sxm")),
    # NVIDIA A100 Tensor Core GPU Datasheet (A100 80GB SXM column). FP64 Tensor Core 19.5 TF;
    # FP32 19.5 TF; BF16/FP16 Tensor Core 312 TF (624* with sparsity); INT8 624 TOPS (1,248*).
    # 2,039 GB/s HBM2e; NVLink 600 GB/s, PCIe Gen4 64 GB/s. 108 SMs, 1410 MHz boost.
    DeviceSpec("NVIDIA A100-SXM4-80GB", "NVIDIA", GPU,
               ((F64, 19.5 * T), (F32, 19.5 * T), (F16, 312 * T), (B16, 312 * T), (I8, 624 * T)),
               2039.0, "NVLink 3 600 GB/s; PCIe Gen4 x16 64 GB/s", 108, 1410.0,
               "NVIDIA A100 Tensor Core GPU Datasheet (80GB SXM)", ("a100 sxm4 80gb",)),
    # NVIDIA L40S GPU for AI and Graphics Performance datasheet. FP32 91.6 TF; BF16/FP16
    # Tensor 362.05 TF (733* with sparsity); FP8 733 TF (1,466*); INT8 733 TOPS (1,466*).
    # FP64 is not published. 48 GB GDDR6 at 864 GB/s; PCIe Gen4 x16 64 GB/s, no NVLink.
    # 142 SMs (142 third-generation RT cores, one per SM).
    DeviceSpec("NVIDIA L40S", "NVIDIA", GPU,
               ((F32, 91.6 * T), (F16, 362.05 * T), (B16, 362.05 * T), (F8, 733 * T), (I8, 733 * T)),
               864.0, "PCIe Gen4 x16 64 GB/s", 142, None,
               "NVIDIA L40S datasheet", ("l40s",)),
    # NVIDIA T4 Tensor Core GPU datasheet. FP32 8.1 TF; mixed precision (FP16/FP32) 65 TF;
    # INT8 130 TOPS. FP64 not published. 16 GB GDDR6 at 320+ GB/s; PCIe Gen3 x16 32 GB/s.
    # 40 SMs (2,560 CUDA cores / 64), 1590 MHz max (nvidia-smi max_clocks sm_clock 1590).
    DeviceSpec("NVIDIA Tesla T4", "NVIDIA", GPU,
               ((F32, 8.1 * T), (F16, 65 * T), (I8, 130 * T)),
               320.0, "PCIe Gen3 x16 32 GB/s", 40, 1590.0,
               "NVIDIA T4 Tensor Core GPU datasheet", ("t4",)),
    # NVIDIA RTX A5000 datasheet. Single-precision 27.8 TF; 24 GB GDDR6 at 768 GB/s;
    # NVLink 112.5 GB/s (bidirectional, 2-way bridge); PCIe Gen4 x16. The datasheet's
    # "Tensor performance 222.2 TF" does not say for which precision or whether it counts
    # sparsity, so no FP16/INT8 peak is recorded. 64 SMs (8,192 CUDA cores / 128).
    DeviceSpec("NVIDIA RTX A5000", "NVIDIA", GPU,
               ((F32, 27.8 * T),),
               768.0, "NVLink 112.5 GB/s (2-way bridge); PCIe Gen4 x16", 64, None,
               "NVIDIA RTX A5000 datasheet", ("rtx a5000",)),
    # NVIDIA A10 Tensor Core GPU datasheet. FP32 31.2 TF; BF16/FP16 Tensor 125 TF (250*);
    # INT8 250 TOPS (500*). 24 GB GDDR6 at 600 GB/s; PCIe Gen4 64 GB/s. 72 SMs.
    DeviceSpec("NVIDIA A10", "NVIDIA", GPU,
               ((F32, 31.2 * T), (F16, 125 * T), (B16, 125 * T), (I8, 250 * T)),
               600.0, "PCIe Gen4 x16 64 GB/s", 72, None,
               "NVIDIA A10 Tensor Core GPU datasheet", ("a10",)),
    # NVIDIA Tesla P100 datasheet, PCIe 16GB and SXM2 (NVLink) columns. PCIe: FP64 4.7,
    # FP32 9.3, FP16 18.7 TF; SXM2: 5.3 / 10.6 / 21.2 TF. 732 GB/s CoWoS HBM2.
    DeviceSpec("NVIDIA Tesla P100 PCIe 16GB", "NVIDIA", GPU,
               ((F64, 4.7 * T), (F32, 9.3 * T), (F16, 18.7 * T)),
               732.0, "PCIe Gen3 x16 32 GB/s", 56, None,
               "NVIDIA Tesla P100 datasheet (PCIe 16GB)", ("p100 pcie 16gb",)),
    DeviceSpec("NVIDIA Tesla P100 SXM2 16GB", "NVIDIA", GPU,
               ((F64, 5.3 * T), (F32, 10.6 * T), (F16, 21.2 * T)),
               732.0, "NVLink 1 160 GB/s", 56, None,
               "NVIDIA Tesla P100 datasheet (SXM2)", ("p100 sxm2 16gb",)),
    # NVIDIA V100 Tensor Core GPU datasheet, PCIe and SXM2 columns. PCIe: FP64 7, FP32 14,
    # Tensor (FP16) 112 TF; SXM2: 7.8 / 15.7 / 125 TF. 900 GB/s HBM2 (16 and 32 GB);
    # NVLink 300 GB/s on SXM2, PCIe Gen3 32 GB/s.
    DeviceSpec("NVIDIA Tesla V100 PCIe 16GB", "NVIDIA", GPU,
               ((F64, 7 * T), (F32, 14 * T), (F16, 112 * T)),
               900.0, "PCIe Gen3 x16 32 GB/s", 80, None,
               "NVIDIA V100 Tensor Core GPU datasheet (PCIe)", ("v100 pcie 16gb",)),
    DeviceSpec("NVIDIA Tesla V100 PCIe 32GB", "NVIDIA", GPU,
               ((F64, 7 * T), (F32, 14 * T), (F16, 112 * T)),
               900.0, "PCIe Gen3 x16 32 GB/s", 80, None,
               "NVIDIA V100 Tensor Core GPU datasheet (PCIe)", ("v100 pcie 32gb",)),
    DeviceSpec("NVIDIA Tesla V100 SXM2 16GB", "NVIDIA", GPU,
               ((F64, 7.8 * T), (F32, 15.7 * T), (F16, 125 * T)),
               900.0, "NVLink 2 300 GB/s", 80, None,
               "NVIDIA V100 Tensor Core GPU datasheet (SXM2)", ("v100 sxm2 16gb",)),
    DeviceSpec("NVIDIA Tesla V100 SXM2 32GB", "NVIDIA", GPU,
               ((F64, 7.8 * T), (F32, 15.7 * T), (F16, 125 * T)),
               900.0, "NVLink 2 300 GB/s", 80, None,
               "NVIDIA V100 Tensor Core GPU datasheet (SXM2)", ("v100 sxm2 32gb",)),
    # AMD Instinct MI100 Accelerator datasheet. Peak FP64 vector 11.5 TF; FP32 matrix
    # 46.1 TF (vector 23.1); FP16 matrix 184.6 TF; bfloat16 92.3 TF; INT8 184.6 TOPS.
    # 32 GB HBM2 at 1.2288 TB/s; PCIe Gen4 x16 and three Infinity Fabric links.
    # 120 compute units, 1502 MHz peak engine clock (rocm-smi's top sclk level is 1502Mhz).
    DeviceSpec("AMD Instinct MI100", "AMD", GPU,
               ((F64, 11.5 * T), (F32, 46.1 * T), (F16, 184.6 * T), (B16, 92.3 * T), (I8, 184.6 * T)),
               1228.8, "PCIe Gen4 x16; 3x Infinity Fabric links", 120, 1502.0,
               "AMD Instinct MI100 Accelerator datasheet", ("mi100",)),
    # AMD Radeon RX 6700 XT product specifications (amd.com). Peak single precision
    # 13.21 TF, peak half precision 26.43 TF; 12 GB GDDR6, up to 384 GB/s; PCIe 4.0 x16.
    # 40 compute units, 2581 MHz boost.
    DeviceSpec("AMD Radeon RX 6700 XT", "AMD", GPU,
               ((F32, 13.21 * T), (F16, 26.43 * T)),
               384.0, "PCIe Gen4 x16", 40, 2581.0,
               "AMD Radeon RX 6700 XT product specifications", ("rx 6700 xt",)),
)

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
}


def _index() -> dict[str, DeviceSpec]:
    out: dict[str, DeviceSpec] = {}
    for spec in _SPECS:
        for key in (normalize_model(spec.model), *spec.aliases):
            if key in out and out[key] is not spec:
                raise AssertionError(f"catalog alias {key!r} names two rows")
            out[key] = spec
    return out


_BY_NAME = _index()


def lookup(name: str) -> DeviceSpec | None:
    """The datasheet row for a model name as a tool prints it, or ``None`` (unknown or ambiguous)."""
    return _BY_NAME.get(normalize_model(name))


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
    return _SPECS


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
