"""Real hardware for the resource-model tests, read from the dumps in tests/fixtures/hw/ (and the
Alibaba trace in tests/fixtures/traces/), the same files the discovery tests parse.

Memory sizes, counts, sockets, cores and CPU flags come from the tool output; the peak
FLOPS that no tool prints come from the vendor datasheet named beside each figure.
Devices whose vendor publishes no figure keep ``flops=()``.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "hw"
TRACES = FIX.parent / "traces"
T = 1e12


def _mib(text: str) -> int:
    return int(text.split()[0])


@cache
def nvidia_xml(name: str) -> tuple[str, int, int]:
    """(product name, GPU count, framebuffer MiB) from an ``nvidia-smi -q -x`` dump."""
    root = ET.parse(FIX / name).getroot()
    gpus = root.findall("gpu")
    return gpus[0].findtext("product_name").strip(), len(gpus), _mib(gpus[0].findtext("fb_memory_usage/total"))


@cache
def h100_memory_mib() -> int:
    text = (FIX / "nvidia-h100-capture-590/nvidia-smi-capture.txt").read_text()
    return int(re.search(r"(\d+)MiB \|", text).group(1))


@cache
def mi100() -> tuple[int, int]:
    """(card count, VRAM MiB) from the rocm-smi JSON."""
    data = json.loads((FIX / "rocm-mi100-6.0.2/rocm-smi.json").read_text())
    cards = [v for k, v in data.items() if k.startswith("card")]
    return len(cards), int(cards[0]["VRAM Total Memory (B)"]) // (1024 * 1024)


@cache
def ascend() -> tuple[str, int, int]:
    """(model, NPU count, HBM MB) from npu-smi info."""
    text = (FIX / "ascend-910b2c-x4-23.0.3/npu-smi.txt").read_text()
    rows = re.findall(r"\|\s*\d+\s+(910\w+)\s*\|", text)
    hbm = re.findall(r"(\d+)/\s*(\d+)\s*\|\s*$", text, re.M)  # HBM used/total, "52675/ 65536"
    return rows[0], len(rows), int(hbm[0][1])


def _lscpu(name: str) -> dict[str, str]:
    out = {}
    for line in (FIX / name).read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def cpu(name: str) -> DeviceCapability:
    """A CPU group from lscpu: sockets, cores per socket, max clock, flags. FLOPS unknown."""
    info = _lscpu(name)
    flags = set(info["Flags"].split())
    features = {f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma"))}
    if "avx512f" in flags:
        features.add("avx512")
    if "amx_tile" in flags:
        features.add("amx")
    clock = float(info["CPU max MHz"]) if "CPU max MHz" in info else None
    return DeviceCapability(
        DeviceClass.CPU, info["Model name"], count=int(info["Socket(s)"]),
        compute_units=int(info["Core(s) per socket"]), clock_mhz=clock, features=frozenset(features),
    )


def xeon_8463b() -> DeviceCapability:
    return cpu("ascend-910b2c-x4-23.0.3/lscpu.txt")


def epyc_7451() -> DeviceCapability:
    return cpu("cpu-x86-epyc-7451/lscpu.txt")


def h100(count: int = 8, share_milli: int = 1000) -> DeviceCapability:
    return DeviceCapability(
        DeviceClass.GPU, "NVIDIA H100 80GB HBM3", "NVIDIA", count=count, memory_mib=h100_memory_mib(),
        # NVIDIA H100 Tensor Core GPU datasheet, SXM column, dense (half the "with sparsity" figures)
        flops=((Precision.FP64, 67 * T), (Precision.FP32, 67 * T), (Precision.FP16, 989.5 * T),
               (Precision.BF16, 989.5 * T), (Precision.INT8, 1979 * T), (Precision.FP8, 1979 * T)),
        memory_bandwidth_gbps=3350.0, share_milli=share_milli,
    )


def a100(count: int = 8, share_milli: int = 1000) -> DeviceCapability:
    return DeviceCapability(
        DeviceClass.GPU, "NVIDIA A100-SXM4-80GB", "NVIDIA", count=count, memory_mib=80 * 1024,
        # NVIDIA A100 Tensor Core GPU datasheet (2021), SXM4 80GB, dense
        flops=((Precision.FP64, 19.5 * T), (Precision.FP32, 19.5 * T), (Precision.FP16, 312 * T),
               (Precision.BF16, 312 * T), (Precision.INT8, 624 * T)),
        memory_bandwidth_gbps=2039.0, share_milli=share_milli,
    )


def t4(share_milli: int = 1000) -> DeviceCapability:
    name, n, mem = nvidia_xml("nvidia-t4-xml/nvidia-smi-q.xml")
    return DeviceCapability(
        DeviceClass.GPU, name, "NVIDIA", count=n, memory_mib=mem,
        # NVIDIA T4 Tensor Core GPU datasheet: FP32 8.1 TFLOPS, mixed FP16 65 TFLOPS, INT8 130 TOPS, 320 GB/s
        flops=((Precision.FP32, 8.1 * T), (Precision.FP16, 65 * T), (Precision.INT8, 130 * T)),
        memory_bandwidth_gbps=320.0, share_milli=share_milli,
    )


def a5000() -> DeviceCapability:
    name, n, mem = nvidia_xml("nvidia-dual-a5000-xml-v13/nvidia-smi-q.xml")
    # FLOPS left unknown on purpose: a GPU whose figures discovery could not find
    return DeviceCapability(DeviceClass.GPU, name, "NVIDIA", count=n, memory_mib=mem)


def mi100_gpu() -> DeviceCapability:
    n, mem = mi100()
    return DeviceCapability(
        DeviceClass.GPU, "AMD Instinct MI100", "AMD", count=n, memory_mib=mem,
        # AMD Instinct MI100 datasheet: FP64 11.5, FP32 23.1, FP16 184.6, bf16 92.3 TFLOPS, INT8 184.6 TOPS, 1.2 TB/s
        flops=((Precision.FP64, 11.5 * T), (Precision.FP32, 23.1 * T), (Precision.FP16, 184.6 * T),
               (Precision.BF16, 92.3 * T), (Precision.INT8, 184.6 * T)),
        memory_bandwidth_gbps=1228.8,
    )


def ascend_npu() -> DeviceCapability:
    model, n, hbm = ascend()
    # Huawei publishes no datasheet peak for the 910B2C: FLOPS unknown
    return DeviceCapability(DeviceClass.NPU, f"Ascend {model}", "Huawei", count=n, memory_mib=hbm)


def node(hostname: str, *devices: DeviceCapability, memory_mib: int | None = 1024 * 1024) -> NodeDescriptor:
    return NodeDescriptor(hostname, tuple(devices), memory_mib=memory_mib)


@cache
def trace_nodes() -> tuple[dict[str, str], ...]:
    with open(TRACES / "openb_node_list_gpu_node.csv", newline="") as fh:
        return tuple(csv.DictReader(fh))


@cache
def trace_pods() -> tuple[dict[str, str], ...]:
    with open(TRACES / "openb_pod_list_default.csv", newline="") as fh:
        return tuple(csv.DictReader(fh))
