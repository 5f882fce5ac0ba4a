"""``cona bench lsa``: Compute LSA decodes and signature verifications per second.

Workload: signed Compute LSAs of three real machines (the hardware facts below come from
the dumps in ``/work/shared/data/hw_dumps``; the descriptors are built by hand here, the
parsers live elsewhere), ``nodes`` providers per profile, each issuing ``refreshes``
instances (new sequence number, new availability, same hardware), in flooding order.

- ``lsa_decode_per_s``: ``decode_lsa`` over that stream (steady state: a provider's
  hardware TLVs are decoded once, then found in the descriptor cache on each refresh);
- ``lsa_decode_cold_per_s``: ``decode_lsa`` over LSAs whose descriptors are all distinct
  and not cached (every NODE and DEVICE sub-TLV parsed and validated; the decoder keeps no
  cache below the whole descriptor, so devices shared between nodes are parsed each time);
- ``lsa_verify_per_s``: ``decode_lsa`` then ``recover_originator`` (keccak + secp256k1
  public-key recovery through coincurve) over the stream;
- ``lsa_bytes_h100``: the size of the 8x H100 node's LSA.
"""

from __future__ import annotations

import hashlib
import time

from bench.stats import rnd
from marketplace.convergence import lsa as lsa_mod
from marketplace.convergence.lsa import Availability, LsaContent, decode_lsa, encode_lsa, recover_originator
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision

# Intel Xeon Platinum 8463B host, from lscpu/vllm-ascend-issue-324_xeon-platinum-8463B_x86_64_lscpu.txt:
# x86_64, 2 sockets, 192 CPUs (2 threads per core), max 3800 MHz, 2 NUMA nodes.
XEON_8463B = DeviceCapability(
    DeviceClass.CPU,
    "Intel(R) Xeon(R) Platinum 8463B",
    vendor="GenuineIntel",
    count=2,
    compute_units=96,  # 192 CPUs / 2 sockets
    clock_mhz=3800.0,
    features=frozenset({"avx512f", "amx_bf16", "amx_int8"}),
)

# nvidia-smi/linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt: "NVIDIA H100 80GB HBM3",
# FB memory 81559 MiB, max SM clock 1980 MHz, architecture Hopper. Peak dense throughput,
# SM count and bandwidth are NVIDIA's H100 SXM5 datasheet figures (not in the dump).
H100 = DeviceCapability(
    DeviceClass.GPU,
    "NVIDIA H100 80GB HBM3",
    vendor="NVIDIA",
    count=8,
    compute_units=132,
    clock_mhz=1980.0,
    flops=(
        (Precision.FP64, 34e12),
        (Precision.FP32, 67e12),
        (Precision.FP16, 989.4e12),
        (Precision.BF16, 989.4e12),
        (Precision.INT8, 1978.9e12),
        (Precision.FP8, 1978.9e12),
    ),
    memory_mib=81559,
    memory_bandwidth_gbps=3350.0,
    interconnect="nvlink4",
    features=frozenset({"cuda", "hopper", "mig"}),
)

# npu-smi/vllm-ascend-issue-324_xeon8463B_910B2Cx4_npu-smi-info.txt: four "910B2C", HBM 65536 MB each.
ASCEND_910B2C = DeviceCapability(
    DeviceClass.NPU, "910B2C", vendor="Huawei", count=4, memory_mib=65536, features=frozenset({"cann"})
)

# rocm-smi/mi100_rocm602.json: four "Arcturus GL-XL [Instinct MI100]", VRAM 34342961152 B = 32752 MiB.
MI100 = DeviceCapability(
    DeviceClass.GPU,
    "Arcturus GL-XL [Instinct MI100]",
    vendor="Advanced Micro Devices, Inc. [AMD/ATI]",
    count=4,
    memory_mib=32752,
    features=frozenset({"rocm"}),
)

# EPYC 7451 host, from lscpu/x86_64-epyc_7451.
EPYC_7451 = DeviceCapability(DeviceClass.CPU, "AMD EPYC 7451 24-Core Processor", vendor="AuthenticAMD", count=2, compute_units=24)


def profiles() -> dict[str, NodeDescriptor]:
    """The benchmark's machines, keyed by a short name."""
    return {
        "h100x8": NodeDescriptor("h100-node", (H100, XEON_8463B), memory_mib=2_097_152, numa_nodes=2, arch="x86_64"),
        "ascend910b2cx4": NodeDescriptor("ascend-node", (ASCEND_910B2C, XEON_8463B), numa_nodes=2, arch="x86_64"),
        "mi100x4": NodeDescriptor("mi100-node", (MI100, EPYC_7451), arch="x86_64"),
    }


def _key(name: str, i: int) -> bytes:
    return hashlib.sha256(f"cona-bench-lsa/{name}/{i}".encode()).digest()


def content_for(descriptor: NodeDescriptor, i: int, refresh: int) -> LsaContent:
    """Content of node ``i``'s ``refresh``-th LSA: its hardware, a moving availability, prices."""
    classes = sorted({d.device_class for d in descriptor.devices})
    return LsaContent(
        descriptor=NodeDescriptor(
            f"{descriptor.hostname}-{i:04d}",
            descriptor.devices,
            descriptor.memory_mib,
            descriptor.disk_gib,
            descriptor.numa_nodes,
            descriptor.arch,
        ),
        availability=tuple(
            Availability(c, (1000 * descriptor.device_count(c) * (refresh % 4 + 1)) // 4, (refresh * 1237 + i) % 10001)
            for c in classes
        ),
        prices=tuple((c, (int(c) * 10**15) + i) for c in classes),
        domain=64512 + i % 100,
        attachment=f"n{i % 74}",
        location=(41.0 + (i % 10) / 10, -87.0 - (i % 10) / 10),
    )


def stream(nodes: int, refreshes: int) -> list[bytes]:
    """Signed LSAs: every node of every profile, refresh after refresh (flooding order)."""
    out = []
    for refresh in range(refreshes):
        for name, descriptor in profiles().items():
            for i in range(nodes):
                out.append(
                    encode_lsa(
                        content_for(descriptor, i, refresh),
                        sequence=refresh + 1,
                        lifetime=1200,
                        key=_key(name, i),
                    )
                )
    return out


def _rate(fn, items: list[bytes], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        elapsed = time.perf_counter() - start
        best = max(best, len(items) / elapsed)
    return best


def run(quick: bool = False) -> dict:
    nodes, refreshes, repeat = (20, 4, 2) if quick else (200, 8, 3)
    lsas = stream(nodes, refreshes)
    # correctness first: every LSA decodes to the content it was built from and recovers
    # to its originator, so a benchmark of a broken codec fails instead of measuring
    profile = profiles()
    for refresh in (0, refreshes - 1):
        for j, name in enumerate(profile):
            raw = lsas[refresh * len(profile) * nodes + j * nodes + 1]
            lsa = decode_lsa(raw)
            assert lsa.content == content_for(profile[name], 1, refresh), name
            assert recover_originator(raw) == lsa_mod.address_of(_key(name, 1))

    lsa_mod.clear_descriptor_cache()
    decode_rate = _rate(decode_lsa, lsas, repeat)
    verify_rate = _rate(lambda raw: recover_originator(decode_lsa(raw)), lsas[: max(300, len(lsas) // 8)], 1)

    cold = [raw for raw in lsas[: len(profile) * nodes]]  # first refresh: one LSA per node
    cold_rates = []
    for _ in range(repeat):
        lsa_mod.clear_descriptor_cache()
        cold_rates.append(_rate(decode_lsa, cold, 1))
        # every cold decode was a cache miss: each descriptor is distinct, so each was parsed
        assert lsa_mod.cached_descriptors() == len(cold)
    return {
        "lsa_decode_per_s": rnd(decode_rate),
        "lsa_decode_cold_per_s": rnd(max(cold_rates)),
        "lsa_verify_per_s": rnd(verify_rate),
        "lsa_bytes_h100": len(lsas[0]),
        "lsa_count": len(lsas),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False)))
