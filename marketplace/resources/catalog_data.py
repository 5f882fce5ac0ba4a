"""Datasheet rows of the device catalog (``catalog.py`` looks them up).

Every row names the public document its figures come from. Conventions (also in docs/discovery.md):
- FLOPS are per device, peak, dense: where a datasheet prints only "with sparsity" figures (NVIDIA
  Ampere and later, marked ``*`` there) the row holds half, and says so once per family;
- FP64 is the Tensor Core / matrix figure where the datasheet has one, as the reference A100 row;
- GeForce product pages print CUDA cores and boost clock, not TFLOPS: those rows derive FP32 as
  ``2 x CUDA cores x boost clock`` (one FMA per core per cycle) and say ``derived`` in the source;
- a figure the vendor does not publish is absent (never estimated); a row may hold only memory;
- ``memory_gib`` is the datasheet's nominal size (GB); ``compute_units`` SMs / CUs / Xe-cores / GPU
  cores; ``mig_slices`` the compute slices a MIG GPU splits into (NVIDIA MIG User Guide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marketplace.resources.model import DeviceClass, Precision

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
    memory_gib: float | None = None
    mig_slices: int | None = None

    def __post_init__(self) -> None:
        # figures are floats whatever literal a row uses: a descriptor built from them must encode
        # (canonical JSON, Compute LSA) the same as one decoded from the wire
        for name in ("memory_bandwidth_gbps", "boost_clock_mhz", "memory_gib"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))

    def peak(self, precision: Precision) -> float | None:
        for p, v in self.flops:
            if p == precision:
                return v
        return None


F64, F32, F16, B16, I8, F8 = (Precision.FP64, Precision.FP32, Precision.FP16, Precision.BF16,
                              Precision.INT8, Precision.FP8)
GPU, NPU, TPU = DeviceClass.GPU, DeviceClass.NPU, DeviceClass.TPU


def _f(fp64: float | None = None, fp32: float | None = None, fp16: float | None = None,
       bf16: float | None = None, fp8: float | None = None, int8: float | None = None) -> tuple[tuple[Precision, float], ...]:
    """Teraflops per precision -> the ``flops`` tuple (absent = not published)."""
    pairs = ((F64, fp64), (F32, fp32), (F16, fp16), (B16, bf16), (F8, fp8), (I8, int8))
    return tuple((p, v * T) for p, v in pairs if v is not None)


def _nv(model: str, flops: tuple[tuple[Precision, float], ...], gbps: float | None, link: str | None,
        sms: int | None, clock: float | None, gib: float | None, source: str, *aliases: str,
        mig: int | None = None) -> DeviceSpec:
    return DeviceSpec(model, "NVIDIA", GPU, flops, gbps, link, sms, clock, source, aliases, gib, mig)


def _geforce(model: str, cores: int, boost_mhz: float, gib: float, gbps: float, gen: str, alias: str) -> DeviceSpec:
    """GeForce: FP32 derived from the product page's CUDA cores and boost clock (2 FLOP per core-cycle)."""
    per_sm = 64 if gen == "Turing" else 128
    return DeviceSpec(model, "NVIDIA", GPU, _f(fp32=round(2 * cores * boost_mhz / 1e6, 2)), gbps, None,
                      cores // per_sm, boost_mhz,
                      f"NVIDIA {model} product specifications ({cores} CUDA cores, {boost_mhz:g} MHz boost; "
                      "FP32 derived)", (alias,), gib)


def _amd(model: str, flops: tuple[tuple[Precision, float], ...], gbps: float | None, link: str | None,
         cus: int | None, clock: float | None, gib: float | None, source: str, *aliases: str) -> DeviceSpec:
    return DeviceSpec(model, "AMD", GPU, flops, gbps, link, cus, clock, source, aliases, gib)


_H100 = "NVIDIA H100 Tensor Core GPU Datasheet"
_A100 = "NVIDIA A100 Tensor Core GPU Datasheet"

NVIDIA_DATACENTER: tuple[DeviceSpec, ...] = (
    # H100 datasheet: FP64 TC 67 / FP32 67 / BF16,FP16 1,979* / FP8, INT8 3,958* (SXM); PCIe 51 / 51 /
    # 1,513* / 3,026*; NVL 60 / 60 / 1,671* / 3,341*. * = sparsity: rows hold half.
    _nv("NVIDIA H100 80GB HBM3 SXM5", _f(67, 67, 989.5, 989.5, 1979, 1979), 3350, "NVLink 4 900 GB/s; PCIe Gen5 x16 128 GB/s",
        132, 1980, 80, _H100 + " (SXM)", "h100 80gb hbm3", "h100 sxm5 80gb", "h100 sxm", mig=7),
    _nv("NVIDIA H100 PCIe", _f(51, 51, 756.5, 756.5, 1513, 1513), 2000, "PCIe Gen5 x16 128 GB/s; NVLink bridge 600 GB/s",
        114, None, 80, _H100 + " (PCIe)", "h100 pcie", mig=7),
    _nv("NVIDIA H100 NVL", _f(60, 60, 835.5, 835.5, 1670.5, 1670.5), 3900, "PCIe Gen5 x16; NVLink bridge 600 GB/s",
        None, None, 94, _H100 + " (NVL)", "h100 nvl", mig=7),
    # NVIDIA H200 Tensor Core GPU datasheet: H200 SXM FP64 TC 67, FP32 67, BF16/FP16 1,979*, FP8/INT8
    # 3,958*; 141 GB HBM3e at 4.8 TB/s; NVLink 900 GB/s. H200 NVL: 60 / 60 / 1,671* / 3,341*, 141 GB, 4.8 TB/s.
    _nv("NVIDIA H200", _f(67, 67, 989.5, 989.5, 1979, 1979), 4800, "NVLink 4 900 GB/s; PCIe Gen5 x16 128 GB/s",
        132, 1980, 141, "NVIDIA H200 Tensor Core GPU datasheet (SXM)", "h200", "h200 sxm", mig=7),
    _nv("NVIDIA H200 NVL", _f(60, 60, 835.5, 835.5, 1670.5, 1670.5), 4800, "PCIe Gen5 x16; NVLink bridge 900 GB/s",
        None, None, 141, "NVIDIA H200 Tensor Core GPU datasheet (NVL)", "h200 nvl", mig=7),
    # NVIDIA HGX platform specifications, HGX B200 (8 GPUs): FP64 296 TF, FP32 600 TF, FP16/BF16 36 PF*,
    # FP8 72 PF*, INT8 72 POPS*, 1.44 TB HBM3e: per GPU one eighth, sparsity halved. The per-GPU HBM
    # bandwidth is printed differently across revisions of the page: not recorded.
    _nv("NVIDIA B200", _f(37, 75, 2250, 2250, 4500, 4500), None, "NVLink 5 1.8 TB/s", None, None, 180,
        "NVIDIA HGX B200 specifications (8-GPU totals / 8)", "b200"),
    # A100 datasheet: FP64 TC 19.5, FP32 19.5, BF16/FP16 TC 312 (624*), INT8 624 (1,248*). 40GB: 1,555 GB/s;
    # 80GB SXM 2,039 GB/s, 80GB PCIe 1,935 GB/s. 108 SMs, 1410 MHz.
    _nv("NVIDIA A100-SXM4-80GB", _f(19.5, 19.5, 312, 312, None, 624), 2039, "NVLink 3 600 GB/s; PCIe Gen4 x16 64 GB/s",
        108, 1410, 80, _A100 + " (80GB SXM)", "a100 sxm4 80gb", mig=7),
    _nv("NVIDIA A100-SXM4-40GB", _f(19.5, 19.5, 312, 312, None, 624), 1555, "NVLink 3 600 GB/s; PCIe Gen4 x16 64 GB/s",
        108, 1410, 40, _A100 + " (40GB SXM)", "a100 sxm4 40gb", mig=7),
    _nv("NVIDIA A100 80GB PCIe", _f(19.5, 19.5, 312, 312, None, 624), 1935, "PCIe Gen4 x16 64 GB/s; NVLink bridge 600 GB/s",
        108, 1410, 80, _A100 + " (80GB PCIe)", "a100 80gb pcie", mig=7),
    _nv("NVIDIA A100-PCIE-40GB", _f(19.5, 19.5, 312, 312, None, 624), 1555, "PCIe Gen4 x16 64 GB/s",
        108, 1410, 40, _A100 + " (40GB PCIe)", "a100 pcie 40gb", mig=7),
    # NVIDIA A30 datasheet: FP64 TC 10.3, FP32 10.3, BF16/FP16 TC 165 (330*), INT8 330 (661*);
    # 24 GB HBM2 933 GB/s; NVLink 200 GB/s; MIG up to 4 instances.
    _nv("NVIDIA A30", _f(10.3, 10.3, 165, 165, None, 330), 933, "PCIe Gen4 x16 64 GB/s; NVLink bridge 200 GB/s",
        56, 1440, 24, "NVIDIA A30 Tensor Core GPU datasheet", "a30", mig=4),
    # NVIDIA A40 datasheet: FP32 37.4; BF16/FP16 TC 149.7 (299.4*); INT8 299.3 (598.6*); 48 GB 696 GB/s.
    _nv("NVIDIA A40", _f(None, 37.4, 149.7, 149.7, None, 299.3), 696, "PCIe Gen4 x16 64 GB/s; NVLink bridge 112.5 GB/s",
        84, 1740, 48, "NVIDIA A40 datasheet", "a40"),
    # NVIDIA A10 datasheet: FP32 31.2; BF16/FP16 TC 125 (250*); INT8 250 (500*); 24 GB GDDR6 600 GB/s.
    _nv("NVIDIA A10", _f(None, 31.2, 125, 125, None, 250), 600, "PCIe Gen4 x16 64 GB/s", 72, None, 24,
        "NVIDIA A10 Tensor Core GPU datasheet", "a10"),
    # The A10G is sold only inside AWS G5 instances; NVIDIA publishes no datasheet for it and AWS gives
    # 24 GB of GPU memory only: no peak is recorded.
    _nv("NVIDIA A10G", (), None, None, None, None, 24, "AWS EC2 G5 instance documentation (memory only; no "
        "published peaks)", "a10g"),
    # NVIDIA A16 datasheet: four GPUs per board, each FP32 4.5 TF, 16 GB GDDR6 at 200 GB/s; the tensor
    # figures are printed per board with sparsity only, so none is recorded here.
    _nv("NVIDIA A16", _f(fp32=4.5), 200, "PCIe Gen4 x16 (board)", None, None, 16, "NVIDIA A16 datasheet (per GPU)", "a16"),
    # NVIDIA L4 datasheet: FP32 30.3; FP16/BF16 242* ; FP8 485*; INT8 485*; 24 GB 300 GB/s.
    _nv("NVIDIA L4", _f(None, 30.3, 121, 121, 242.5, 242.5), 300, "PCIe Gen4 x16 64 GB/s", 58, 2040, 24,
        "NVIDIA L4 Tensor Core GPU datasheet", "l4"),
    # NVIDIA L40 datasheet: FP32 90.5; BF16/FP16 TC 181.05 (362.1*); FP8 362 (724*); INT8 362 (724*); 48 GB 864 GB/s.
    _nv("NVIDIA L40", _f(None, 90.5, 181.05, 181.05, 362, 362), 864, "PCIe Gen4 x16 64 GB/s", 142, 2490, 48,
        "NVIDIA L40 datasheet", "l40"),
    # NVIDIA L40S datasheet: FP32 91.6; BF16/FP16 TC 362.05 (733*); FP8 733 (1,466*); INT8 733 (1,466*).
    _nv("NVIDIA L40S", _f(None, 91.6, 362.05, 362.05, 733, 733), 864, "PCIe Gen4 x16 64 GB/s", 142, None, 48,
        "NVIDIA L40S datasheet", "l40s"),
    # NVIDIA T4 datasheet: FP32 8.1, mixed FP16 65, INT8 130; 16 GB 320 GB/s; 40 SMs, 1590 MHz.
    _nv("NVIDIA Tesla T4", _f(None, 8.1, 65, None, None, 130), 320, "PCIe Gen3 x16 32 GB/s", 40, 1590, 16,
        "NVIDIA T4 Tensor Core GPU datasheet", "t4"),
    # NVIDIA V100 datasheet: PCIe FP64 7, FP32 14, Tensor 112; SXM2 7.8 / 15.7 / 125; 900 GB/s.
    _nv("NVIDIA Tesla V100 PCIe 16GB", _f(7, 14, 112), 900, "PCIe Gen3 x16 32 GB/s", 80, None, 16,
        "NVIDIA V100 Tensor Core GPU datasheet (PCIe)", "v100 pcie 16gb"),
    _nv("NVIDIA Tesla V100 PCIe 32GB", _f(7, 14, 112), 900, "PCIe Gen3 x16 32 GB/s", 80, None, 32,
        "NVIDIA V100 Tensor Core GPU datasheet (PCIe)", "v100 pcie 32gb"),
    _nv("NVIDIA Tesla V100 SXM2 16GB", _f(7.8, 15.7, 125), 900, "NVLink 2 300 GB/s", 80, None, 16,
        "NVIDIA V100 Tensor Core GPU datasheet (SXM2)", "v100 sxm2 16gb"),
    _nv("NVIDIA Tesla V100 SXM2 32GB", _f(7.8, 15.7, 125), 900, "NVLink 2 300 GB/s", 80, None, 32,
        "NVIDIA V100 Tensor Core GPU datasheet (SXM2)", "v100 sxm2 32gb"),
    # NVIDIA Tesla P100 datasheet: PCIe FP64 4.7, FP32 9.3, FP16 18.7; SXM2 5.3 / 10.6 / 21.2; 732 GB/s.
    _nv("NVIDIA Tesla P100 PCIe 16GB", _f(4.7, 9.3, 18.7), 732, "PCIe Gen3 x16 32 GB/s", 56, None, 16,
        "NVIDIA Tesla P100 datasheet (PCIe 16GB)", "p100 pcie 16gb"),
    _nv("NVIDIA Tesla P100 SXM2 16GB", _f(5.3, 10.6, 21.2), 732, "NVLink 1 160 GB/s", 56, None, 16,
        "NVIDIA Tesla P100 datasheet (SXM2)", "p100 sxm2 16gb"),
)

NVIDIA_WORKSTATION: tuple[DeviceSpec, ...] = (
    # NVIDIA RTX PRO 6000 Blackwell datasheets: Workstation Edition FP32 125 TF, 96 GB GDDR7 1,792 GB/s,
    # 24,064 CUDA cores (188 SMs); the Max-Q and Server Editions print the same memory; their FP32 is
    # printed for the Workstation Edition only, so those rows hold memory figures.
    _nv("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", _f(fp32=125), 1792, "PCIe Gen5 x16", 188, None, 96,
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition datasheet", "rtx pro 6000 blackwell workstation edition"),
    _nv("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", (), 1792, "PCIe Gen5 x16", 188, None, 96,
        "NVIDIA RTX PRO 6000 Blackwell Max-Q datasheet (memory only)", "rtx pro 6000 blackwell max q workstation edition"),
    _nv("NVIDIA RTX PRO 6000 Blackwell Server Edition", (), 1792, "PCIe Gen5 x16", 188, None, 96,
        "NVIDIA RTX PRO 6000 Blackwell Server Edition datasheet (memory only)", "rtx pro 6000 blackwell server edition"),
    # NVIDIA RTX Ada generation datasheets: single-precision performance and memory bandwidth.
    _nv("NVIDIA RTX 6000 Ada Generation", _f(fp32=91.1), 960, "PCIe Gen4 x16", 142, None, 48,
        "NVIDIA RTX 6000 Ada Generation datasheet", "rtx 6000 ada generation"),
    _nv("NVIDIA RTX 5000 Ada Generation", _f(fp32=65.3), 576, "PCIe Gen4 x16", 100, None, 32,
        "NVIDIA RTX 5000 Ada Generation datasheet", "rtx 5000 ada generation"),
    _nv("NVIDIA RTX 4500 Ada Generation", _f(fp32=39.6), 432, "PCIe Gen4 x16", 60, None, 24,
        "NVIDIA RTX 4500 Ada Generation datasheet", "rtx 4500 ada generation"),
    _nv("NVIDIA RTX 4000 Ada Generation", _f(fp32=26.7), 360, "PCIe Gen4 x16", 48, None, 20,
        "NVIDIA RTX 4000 Ada Generation datasheet", "rtx 4000 ada generation"),
    _nv("NVIDIA RTX 4000 SFF Ada Generation", _f(fp32=19.2), 280, "PCIe Gen4 x16", 48, None, 20,
        "NVIDIA RTX 4000 SFF Ada Generation datasheet", "rtx 4000 sff ada generation"),
    # NVIDIA RTX A-series datasheets (Ampere): single-precision performance, memory, bandwidth.
    _nv("NVIDIA RTX A6000", _f(fp32=38.7), 768, "NVLink 112.5 GB/s (2-way bridge); PCIe Gen4 x16", 84, None, 48,
        "NVIDIA RTX A6000 datasheet", "rtx a6000"),
    _nv("NVIDIA RTX A5000", _f(fp32=27.8), 768, "NVLink 112.5 GB/s (2-way bridge); PCIe Gen4 x16", 64, None, 24,
        "NVIDIA RTX A5000 datasheet", "rtx a5000"),
    _nv("NVIDIA RTX A4500", _f(fp32=23.7), 640, "NVLink 112.5 GB/s (2-way bridge); PCIe Gen4 x16", 56, None, 20,
        "NVIDIA RTX A4500 datasheet", "rtx a4500"),
    _nv("NVIDIA RTX A4000", _f(fp32=19.2), 448, "PCIe Gen4 x16", 48, None, 16, "NVIDIA RTX A4000 datasheet", "rtx a4000"),
    _nv("NVIDIA RTX A2000", _f(fp32=8.0), 288, "PCIe Gen4 x16", 26, None, 6, "NVIDIA RTX A2000 datasheet", "rtx a2000"),
    # NVIDIA Quadro datasheets: single-precision performance and memory bandwidth.
    _nv("Quadro RTX 8000", _f(fp32=16.3), 672, "NVLink 100 GB/s; PCIe Gen3 x16", 72, None, 48,
        "NVIDIA Quadro RTX 8000 datasheet", "quadro rtx 8000"),
    _nv("Quadro RTX 6000", _f(fp32=16.3), 672, "NVLink 100 GB/s; PCIe Gen3 x16", 72, None, 24,
        "NVIDIA Quadro RTX 6000 datasheet", "quadro rtx 6000"),
    _nv("Quadro RTX 5000", _f(fp32=11.2), 448, "NVLink 50 GB/s; PCIe Gen3 x16", 48, None, 16,
        "NVIDIA Quadro RTX 5000 datasheet", "quadro rtx 5000"),
    _nv("Quadro RTX 4000", _f(fp32=7.1), 416, "PCIe Gen3 x16", 36, None, 8, "NVIDIA Quadro RTX 4000 datasheet",
        "quadro rtx 4000"),
    _nv("Quadro GV100", _f(7.4, 14.8, 118.5), 870, "NVLink 200 GB/s; PCIe Gen3 x16", 80, None, 32,
        "NVIDIA Quadro GV100 datasheet", "quadro gv100"),
    _nv("Quadro P2000", _f(fp32=3.0), 140, "PCIe Gen3 x16", 8, None, 5, "NVIDIA Quadro P2000 datasheet", "quadro p2000"),
    _nv("Quadro P400", _f(fp32=0.64), 32, "PCIe Gen3 x16", 2, None, 2, "NVIDIA Quadro P400 datasheet", "quadro p400"),
)

GEFORCE: tuple[DeviceSpec, ...] = (
    _geforce("NVIDIA GeForce RTX 2060", 1920, 1680, 6, 336, "Turing", "rtx 2060"),
    _geforce("NVIDIA GeForce RTX 2060 SUPER", 2176, 1650, 8, 448, "Turing", "rtx 2060 super"),
    _geforce("NVIDIA GeForce RTX 2070", 2304, 1620, 8, 448, "Turing", "rtx 2070"),
    _geforce("NVIDIA GeForce RTX 2070 SUPER", 2560, 1770, 8, 448, "Turing", "rtx 2070 super"),
    _geforce("NVIDIA GeForce RTX 2080", 2944, 1710, 8, 448, "Turing", "rtx 2080"),
    _geforce("NVIDIA GeForce RTX 2080 SUPER", 3072, 1815, 8, 496, "Turing", "rtx 2080 super"),
    _geforce("NVIDIA GeForce RTX 2080 Ti", 4352, 1545, 11, 616, "Turing", "rtx 2080 ti"),
    _geforce("NVIDIA GeForce RTX 3050", 2560, 1777, 8, 224, "Ampere", "rtx 3050"),
    _geforce("NVIDIA GeForce RTX 3060", 3584, 1777, 12, 360, "Ampere", "rtx 3060"),
    _geforce("NVIDIA GeForce RTX 3060 Ti", 4864, 1665, 8, 448, "Ampere", "rtx 3060 ti"),
    _geforce("NVIDIA GeForce RTX 3070", 5888, 1725, 8, 448, "Ampere", "rtx 3070"),
    _geforce("NVIDIA GeForce RTX 3070 Ti", 6144, 1770, 8, 608, "Ampere", "rtx 3070 ti"),
    _geforce("NVIDIA GeForce RTX 3080", 8704, 1710, 10, 760, "Ampere", "rtx 3080"),
    _geforce("NVIDIA GeForce RTX 3080 Ti", 10240, 1665, 12, 912, "Ampere", "rtx 3080 ti"),
    _geforce("NVIDIA GeForce RTX 3090", 10496, 1695, 24, 936, "Ampere", "rtx 3090"),
    _geforce("NVIDIA GeForce RTX 3090 Ti", 10752, 1860, 24, 1008, "Ampere", "rtx 3090 ti"),
    _geforce("NVIDIA GeForce RTX 4060", 3072, 2460, 8, 272, "Ada", "rtx 4060"),
    _geforce("NVIDIA GeForce RTX 4060 Ti", 4352, 2535, 8, 288, "Ada", "rtx 4060 ti"),
    _geforce("NVIDIA GeForce RTX 4070", 5888, 2475, 12, 504, "Ada", "rtx 4070"),
    _geforce("NVIDIA GeForce RTX 4070 SUPER", 7168, 2475, 12, 504, "Ada", "rtx 4070 super"),
    _geforce("NVIDIA GeForce RTX 4070 Ti", 7680, 2610, 12, 504, "Ada", "rtx 4070 ti"),
    _geforce("NVIDIA GeForce RTX 4070 Ti SUPER", 8448, 2610, 16, 672, "Ada", "rtx 4070 ti super"),
    _geforce("NVIDIA GeForce RTX 4080", 9728, 2505, 16, 717, "Ada", "rtx 4080"),
    _geforce("NVIDIA GeForce RTX 4080 SUPER", 10240, 2550, 16, 736, "Ada", "rtx 4080 super"),
    _geforce("NVIDIA GeForce RTX 4090", 16384, 2520, 24, 1008, "Ada", "rtx 4090"),
    _geforce("NVIDIA GeForce RTX 5060", 3840, 2497, 8, 448, "Blackwell", "rtx 5060"),
    _geforce("NVIDIA GeForce RTX 5060 Ti", 4608, 2572, 16, 448, "Blackwell", "rtx 5060 ti"),
    _geforce("NVIDIA GeForce RTX 5070", 6144, 2512, 12, 672, "Blackwell", "rtx 5070"),
    _geforce("NVIDIA GeForce RTX 5070 Ti", 8960, 2452, 16, 896, "Blackwell", "rtx 5070 ti"),
    _geforce("NVIDIA GeForce RTX 5080", 10752, 2617, 16, 960, "Blackwell", "rtx 5080"),
    _geforce("NVIDIA GeForce RTX 5090", 21760, 2407, 32, 1792, "Blackwell", "rtx 5090"),
)

AMD_GPUS: tuple[DeviceSpec, ...] = (
    # AMD Instinct datasheets; FP64/FP32 are the matrix figures where printed, FP16/BF16/INT8/FP8 dense.
    _amd("AMD Instinct MI50", _f(6.6, 13.3, 26.5, None, None, 53), 1024, "PCIe Gen4 x16; Infinity Fabric 2 links",
         60, 1725, 32, "AMD Radeon Instinct MI50 datasheet", "mi50", "radeon instinct mi50"),
    _amd("AMD Instinct MI60", _f(7.4, 14.7, 29.5, None, None, 59), 1024, "PCIe Gen4 x16; Infinity Fabric 2 links",
         64, 1800, 32, "AMD Radeon Instinct MI60 datasheet", "mi60", "radeon instinct mi60"),
    # MI100 datasheet: FP64 11.5, FP32 matrix 46.1, FP16 184.6, BF16 92.3, INT8 184.6; 1.2288 TB/s.
    _amd("AMD Instinct MI100", _f(11.5, 46.1, 184.6, 92.3, None, 184.6), 1228.8, "PCIe Gen4 x16; 3x Infinity Fabric links",
         120, 1502, 32, "AMD Instinct MI100 Accelerator datasheet", "mi100"),
    _amd("AMD Instinct MI210", _f(45.3, 45.3, 181, 181, None, 181), 1638.4, "PCIe Gen4 x16; Infinity Fabric 3 links",
         104, 1700, 64, "AMD Instinct MI210 datasheet", "mi210"),
    _amd("AMD Instinct MI250", _f(90.5, 90.5, 362.1, 362.1, None, 362.1), 3276.8, "Infinity Fabric 6 links; PCIe Gen4 x16",
         208, 1700, 128, "AMD Instinct MI250 datasheet", "mi250"),
    _amd("AMD Instinct MI250X", _f(95.7, 95.7, 383, 383, None, 383), 3276.8, "Infinity Fabric 8 links; PCIe Gen4 x16",
         220, 1700, 128, "AMD Instinct MI250X datasheet", "mi250x"),
    _amd("AMD Instinct MI300A", _f(122.6, 122.6, 980.6, 980.6, 1961.2, 1961.2), 5300, "Infinity Fabric 4 links",
         228, 2100, 128, "AMD Instinct MI300A APU datasheet", "mi300a"),
    _amd("AMD Instinct MI300X", _f(163.4, 163.4, 1307.4, 1307.4, 2614.9, 2614.9), 5300, "Infinity Fabric 7 links 896 GB/s; PCIe Gen5 x16",
         304, 2100, 192, "AMD Instinct MI300X datasheet", "mi300x", "mi300x oam"),
    _amd("AMD Instinct MI325X", _f(163.4, 163.4, 1307.4, 1307.4, 2614.9, 2614.9), 6000, "Infinity Fabric 7 links 896 GB/s; PCIe Gen5 x16",
         304, 2100, 256, "AMD Instinct MI325X datasheet", "mi325x"),
    # AMD Radeon product specifications (amd.com): peak single / half precision, memory, bandwidth, CUs.
    _amd("AMD Radeon RX 6600", _f(None, 8.93, 17.86), 224, "PCIe Gen4 x8", 28, 2491, 8,
         "AMD Radeon RX 6600 product specifications", "rx 6600"),
    _amd("AMD Radeon RX 6600 XT", _f(None, 10.6, 21.21), 256, "PCIe Gen4 x8", 32, 2589, 8,
         "AMD Radeon RX 6600 XT product specifications", "rx 6600 xt"),
    _amd("AMD Radeon RX 6700 XT", _f(None, 13.21, 26.43), 384, "PCIe Gen4 x16", 40, 2581, 12,
         "AMD Radeon RX 6700 XT product specifications", "rx 6700 xt"),
    _amd("AMD Radeon RX 6800", _f(None, 16.17, 32.33), 512, "PCIe Gen4 x16", 60, 2105, 16,
         "AMD Radeon RX 6800 product specifications", "rx 6800"),
    _amd("AMD Radeon RX 6800 XT", _f(None, 20.74, 41.47), 512, "PCIe Gen4 x16", 72, 2250, 16,
         "AMD Radeon RX 6800 XT product specifications", "rx 6800 xt"),
    _amd("AMD Radeon RX 6900 XT", _f(None, 23.04, 46.08), 512, "PCIe Gen4 x16", 80, 2250, 16,
         "AMD Radeon RX 6900 XT product specifications", "rx 6900 xt"),
    _amd("AMD Radeon RX 7600", _f(None, 21.75, 43.5), 288, "PCIe Gen4 x8", 32, 2655, 8,
         "AMD Radeon RX 7600 product specifications", "rx 7600"),
    _amd("AMD Radeon RX 7700 XT", _f(None, 35.17, 70.34), 432, "PCIe Gen4 x16", 54, 2544, 12,
         "AMD Radeon RX 7700 XT product specifications", "rx 7700 xt"),
    _amd("AMD Radeon RX 7800 XT", _f(None, 37.32, 74.65), 624, "PCIe Gen4 x16", 60, 2430, 16,
         "AMD Radeon RX 7800 XT product specifications", "rx 7800 xt"),
    _amd("AMD Radeon RX 7900 XT", _f(None, 51.48, 102.97), 800, "PCIe Gen4 x16", 84, 2400, 20,
         "AMD Radeon RX 7900 XT product specifications", "rx 7900 xt"),
    _amd("AMD Radeon RX 7900 XTX", _f(None, 61.39, 122.78), 960, "PCIe Gen4 x16", 96, 2500, 24,
         "AMD Radeon RX 7900 XTX product specifications", "rx 7900 xtx"),
    _amd("AMD Radeon RX 9070", _f(None, 36.1, 72.3), 640, "PCIe Gen5 x16", 56, 2520, 16,
         "AMD Radeon RX 9070 product specifications", "rx 9070"),
    _amd("AMD Radeon RX 9070 XT", _f(None, 48.7, 97.3), 640, "PCIe Gen5 x16", 64, 2970, 16,
         "AMD Radeon RX 9070 XT product specifications", "rx 9070 xt"),
)

OTHER_ACCELERATORS: tuple[DeviceSpec, ...] = (
    # Huawei, "Huawei launches Ascend 910" (press release, 23 Aug 2019): FP16 256 TFLOPS, INT8 512 TOPS.
    DeviceSpec("Huawei Ascend 910A", "Huawei", NPU, _f(fp16=256, int8=512), None, "HCCS", 32, None,
               "Huawei Ascend 910 press release (23 Aug 2019)", ("910a",), 32),
    # Huawei Ascend 310 AI processor page: INT8 22 TOPS, FP16 11 TFLOPS, 8 GB LPDDR4X per chip.
    DeviceSpec("Huawei Ascend 310", "Huawei", NPU, _f(fp16=11, int8=22), None, "PCIe Gen3 x4", 2, None,
               "Huawei Ascend 310 AI processor specifications", ("310",), 8),
    # Huawei Atlas 300I Pro inference card (one Ascend 310P3): 70 TFLOPS FP16, 140 TOPS INT8,
    # 24 GB LPDDR4X at 204.8 GB/s.
    DeviceSpec("Huawei Ascend 310P3", "Huawei", NPU, _f(fp16=70, int8=140), 204.8, "PCIe Gen4 x16", 8, None,
               "Huawei Atlas 300I Pro inference card specifications", ("310p3", "310p"), 24),
    # Intel Data Center GPU Max Series product brief: Max 1550 FP64/FP32 52 TF, BF16/FP16 (XMX) 832 TF,
    # INT8 1664 TOPS, 128 GB HBM2e 3.2768 TB/s, 128 Xe-cores; Max 1100 22.2 / 352 / 704, 48 GB, 1.2288 TB/s.
    DeviceSpec("Intel Data Center GPU Max 1550", "Intel", GPU, _f(52, 52, 832, 832, None, 1664), 3276.8,
               "Xe Link; PCIe Gen5 x16", 128, 1600, "Intel Data Center GPU Max Series product brief",
               ("intel r data center gpu max 1550", "data center gpu max 1550"), 128),
    DeviceSpec("Intel Data Center GPU Max 1100", "Intel", GPU, _f(22.2, 22.2, 352, 352, None, 704), 1228.8,
               "Xe Link; PCIe Gen5 x16", 56, 1550, "Intel Data Center GPU Max Series product brief",
               ("intel r data center gpu max 1100", "data center gpu max 1100"), 48),
    # Intel Arc A770 (ark.intel.com): 32 Xe-cores, 2400 MHz graphics clock, 16 GB GDDR6 at 560 GB/s;
    # Intel prints no TFLOPS for it.
    DeviceSpec("Intel Arc A770 Graphics", "Intel", GPU, (), 560, "PCIe Gen4 x16", 32, 2400,
               "Intel Arc A770 Graphics specifications (ark.intel.com)", ("intel r arc tm a770 graphics",), 16),
    # Intel Gaudi 3 AI accelerator white paper: 1,835 TFLOPS BF16 and FP8 (MME), 128 GB HBM2e at
    # 3.7 TB/s, 24x 200 GbE. Gaudi 2 product brief: 96 GB HBM2E at 2.46 TB/s, 24x 100 GbE; its
    # per-precision peaks are not printed there.
    DeviceSpec("Intel Gaudi 3", "Intel", NPU, _f(bf16=1835, fp8=1835), 3700, "24x 200 GbE RoCE", 64, None,
               "Intel Gaudi 3 AI accelerator white paper", ("gaudi 3", "hl 325l", "gaudi3"), 128),
    DeviceSpec("Intel Gaudi 2", "Intel", NPU, (), 2460, "24x 100 GbE RoCE", None, None,
               "Intel Gaudi 2 AI accelerator product brief (memory only)", ("gaudi 2", "hl 225", "gaudi2"), 96),
    # Google Cloud TPU documentation, system architecture pages, per chip: v4 275 TFLOPS BF16/INT8,
    # 32 GiB HBM2 at 1,200 GB/s; v5e 197 BF16 / 394 INT8, 16 GB at 819 GB/s; v5p 459 / 918, 95 GB at
    # 2,765 GB/s; v6e (Trillium) 918 / 1,836, 32 GB at 1,640 GB/s.
    DeviceSpec("Google TPU v4", "Google", TPU, _f(bf16=275, int8=275), 1200, "ICI", None, None,
               "Google Cloud TPU v4 documentation", ("google tpu v4",), 32),
    DeviceSpec("Google TPU v5e", "Google", TPU, _f(bf16=197, int8=394), 819, "ICI", None, None,
               "Google Cloud TPU v5e documentation", ("google tpu v5e",), 16),
    DeviceSpec("Google TPU v5p", "Google", TPU, _f(bf16=459, int8=918), 2765, "ICI", None, None,
               "Google Cloud TPU v5p documentation", ("google tpu v5p",), 95),
    DeviceSpec("Google TPU v6e", "Google", TPU, _f(bf16=918, int8=1836), 1640, "ICI", None, None,
               "Google Cloud TPU v6e (Trillium) documentation", ("google tpu v6e",), 32),
)


def _apple(chip: str, gpu_cores: int, gbps: float, tflops: float | None, source: str) -> DeviceSpec:
    return DeviceSpec(f"Apple {chip}", "Apple", GPU, _f(fp32=tflops) if tflops else (), gbps, None, gpu_cores,
                      None, source, (f"apple {chip.lower()}",))


APPLE: tuple[DeviceSpec, ...] = (
    # Apple Newsroom announcements: unified-memory bandwidth and GPU cores of the top configuration;
    # FP32 TFLOPS only where Apple printed it (M1 family, M2), for that GPU configuration.
    _apple("M1", 8, 68.25, 2.6, "Apple Newsroom, 'Apple unleashes M1' (10 Nov 2020)"),
    _apple("M1 Pro", 16, 200, 5.2, "Apple Newsroom, 'Introducing M1 Pro and M1 Max' (18 Oct 2021)"),
    _apple("M1 Max", 32, 400, 10.4, "Apple Newsroom, 'Introducing M1 Pro and M1 Max' (18 Oct 2021)"),
    _apple("M1 Ultra", 64, 800, 21, "Apple Newsroom, 'Apple unveils M1 Ultra' (8 Mar 2022)"),
    _apple("M2", 10, 100, 3.6, "Apple Newsroom, 'Apple unveils M2' (6 Jun 2022)"),
    _apple("M2 Pro", 19, 200, None, "Apple Newsroom, 'Apple unveils M2 Pro and M2 Max' (17 Jan 2023)"),
    _apple("M2 Max", 38, 400, None, "Apple Newsroom, 'Apple unveils M2 Pro and M2 Max' (17 Jan 2023)"),
    _apple("M2 Ultra", 76, 800, None, "Apple Newsroom, 'Apple introduces M2 Ultra' (5 Jun 2023)"),
    _apple("M3", 10, 100, None, "Apple Newsroom, 'Apple unveils M3, M3 Pro, and M3 Max' (30 Oct 2023)"),
    _apple("M3 Pro", 18, 150, None, "Apple Newsroom, 'Apple unveils M3, M3 Pro, and M3 Max' (30 Oct 2023)"),
    _apple("M3 Max", 40, 400, None, "Apple Newsroom, 'Apple unveils M3, M3 Pro, and M3 Max' (30 Oct 2023)"),
    _apple("M4", 10, 120, None, "Apple Newsroom, 'Apple introduces M4 chip' (7 May 2024)"),
    _apple("M4 Pro", 20, 273, None, "Apple Newsroom, 'Apple introduces M4 Pro and M4 Max' (30 Oct 2024)"),
    _apple("M4 Max", 40, 546, None, "Apple Newsroom, 'Apple introduces M4 Pro and M4 Max' (30 Oct 2024)"),
)

JETSON: tuple[DeviceSpec, ...] = (
    # NVIDIA Jetson AGX Orin / Orin NX / Orin Nano series datasheets: GPU FP32 TFLOPS (CUDA cores),
    # CUDA cores (128 per SM) and LPDDR5 bandwidth of each module; memory is shared with the CPU.
    _nv("NVIDIA Jetson AGX Orin 64GB", _f(fp32=5.32), 204.8, None, 16, 1300, 64,
        "NVIDIA Jetson AGX Orin Series datasheet", "jetson agx orin 64gb"),
    _nv("NVIDIA Jetson AGX Orin 32GB", _f(fp32=3.33), 204.8, None, 14, 930, 32,
        "NVIDIA Jetson AGX Orin Series datasheet", "jetson agx orin 32gb"),
    _nv("NVIDIA Jetson Orin NX 16GB", _f(fp32=1.88), 102.4, None, 8, 918, 16,
        "NVIDIA Jetson Orin NX Series datasheet", "jetson orin nx 16gb"),
    _nv("NVIDIA Jetson Orin NX 8GB", _f(fp32=1.57), 102.4, None, 8, 765, 8,
        "NVIDIA Jetson Orin NX Series datasheet", "jetson orin nx 8gb"),
    _nv("NVIDIA Jetson Orin Nano 8GB", _f(fp32=1.28), 68, None, 8, 625, 8,
        "NVIDIA Jetson Orin Nano Series datasheet", "jetson orin nano 8gb"),
    _nv("NVIDIA Jetson Orin Nano 4GB", _f(fp32=0.64), 34, None, 4, 625, 4,
        "NVIDIA Jetson Orin Nano Series datasheet", "jetson orin nano 4gb"),
)

SPECS: tuple[DeviceSpec, ...] = (NVIDIA_DATACENTER + NVIDIA_WORKSTATION + GEFORCE + AMD_GPUS + OTHER_ACCELERATORS
                                 + APPLE + JETSON)
