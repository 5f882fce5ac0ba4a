"""The datasheet catalog: every family of issue 17 is covered, every row cites its source, nothing is guessed."""

from __future__ import annotations

import pytest

from marketplace.resources import catalog
from marketplace.resources.model import DeviceClass, Precision

pytestmark = pytest.mark.unit

# names as the tools print them (nvidia-smi product_name, rocm-smi, npu-smi, xpu-smi, system_profiler, ...)
COVERED = [
    "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL", "NVIDIA B200",
    "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-40GB",
    "NVIDIA L4", "NVIDIA L40", "NVIDIA L40S", "NVIDIA A10", "NVIDIA A10G", "NVIDIA A16", "NVIDIA A30", "NVIDIA A40",
    "Tesla T4", "Tesla V100-SXM2-16GB", "NVIDIA GeForce RTX 2080 Ti", "NVIDIA GeForce RTX 3060",
    "NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
    "NVIDIA RTX 6000 Ada Generation", "NVIDIA RTX 4000 SFF Ada Generation", "NVIDIA RTX A6000", "Quadro RTX 8000",
    "Quadro P2000", "Quadro P400", "AMD Instinct MI50", "AMD Instinct MI100", "AMD Instinct MI210",
    "AMD Instinct MI250X", "AMD Instinct MI300X", "AMD Instinct MI325X", "AMD Radeon RX 6700 XT",
    "AMD Radeon RX 7900 XTX", "AMD Radeon RX 9070 XT", "Intel Gaudi 2", "Intel Gaudi 3",
    "Intel(R) Data Center GPU Max 1550", "Intel(R) Data Center GPU Max 1100", "Ascend 910A", "Ascend 310P3",
    "Google TPU v4", "Google TPU v5e", "Google TPU v5p", "Google TPU v6e", "Apple M1", "Apple M2 Ultra", "Apple M3",
    "Apple M4 Max", "NVIDIA Jetson AGX Orin 64GB", "NVIDIA Jetson Orin Nano 8GB",
]

# families whose vendor publishes no figure that could be cited: explained, never guessed
EXPLAINED = ["Ascend 910B2C", "Ascend 910B3", "Ascend 910C", "Ascend 910", "GB200",
             "NVIDIA Jetson AGX Orin Developer Kit", "P100", "V100M32", "G2"]


@pytest.mark.parametrize("name", COVERED)
def test_every_listed_family_has_a_sourced_row(name):
    spec = catalog.lookup(name.replace("Tesla V100-SXM2-16GB", "Tesla V100 SXM2 16GB"))
    assert spec is not None, catalog.explain(name)
    assert spec.source and (spec.flops or spec.memory_gib or spec.memory_bandwidth_gbps)


@pytest.mark.parametrize("name", EXPLAINED)
def test_unpublished_or_ambiguous_families_are_explained_not_guessed(name):
    assert catalog.lookup(name) is None
    assert "left unknown" in catalog.explain(name)


def test_sparsity_figures_are_halved_and_rows_cite_distinct_documents():
    h200 = catalog.lookup("NVIDIA H200")
    assert h200.peak(Precision.BF16) == 1979e12 / 2 and h200.peak(Precision.FP8) == 3958e12 / 2
    assert h200.memory_bandwidth_gbps == 4800 and h200.mig_slices == 7
    assert catalog.lookup("NVIDIA A30").mig_slices == 4
    assert catalog.lookup("NVIDIA A10G").flops == ()  # no datasheet: memory only
    assert all(s.source for s in catalog.specs())
    keys = [k for s in catalog.specs() for k in (catalog.normalize_model(s.model), *s.aliases)]
    assert len(keys) == len(set(keys)) or len({catalog.lookup(k).model for k in keys}) == len(catalog.specs())


def test_geforce_fp32_is_derived_from_cores_and_boost_clock():
    spec = catalog.lookup("NVIDIA GeForce RTX 4090")
    assert spec.peak(Precision.FP32) == pytest.approx(2 * 16384 * 2520e6, rel=1e-3)
    assert "derived" in spec.source and spec.compute_units == 128


def test_device_classes():
    assert catalog.lookup("Google TPU v5p").device_class == DeviceClass.TPU
    assert catalog.lookup("Intel Gaudi 3").device_class == DeviceClass.NPU
    assert catalog.lookup("Ascend 310P3").device_class == DeviceClass.NPU


def test_family_names_resolve_only_when_memory_fits_one_product():
    spec, why = catalog.resolve("AMD Radeon RX 7700 XT / 7800 XT", 16368)
    assert spec.model == "AMD Radeon RX 7800 XT" and "16368 MiB" in why
    assert catalog.resolve("AMD Radeon RX 7700 XT / 7800 XT", 12272)[0].model == "AMD Radeon RX 7700 XT"
    assert catalog.resolve("AMD Radeon RX 7700 XT / 7800 XT", None)[0] is None
    assert catalog.resolve("AMD Radeon RX 6700/6700 XT / 6800M", 12272)[0] is None
    assert catalog.family_candidates("Radeon RX 6700/6700 XT / 6800M") == (
        "Radeon RX 6700", "Radeon RX 6700 XT", "Radeon RX 6800M")


def test_figures_are_floats_so_descriptors_encode_like_decoded_ones():
    # a row written "1502" must not give a descriptor whose canonical JSON says 1502 where the Compute
    # LSA decoder gives 1502.0: the digests would differ and the registration would be contradicted
    for spec in catalog.specs():
        for value in (spec.boost_clock_mhz, spec.memory_bandwidth_gbps, spec.memory_gib):
            assert value is None or type(value) is float, spec.model
        assert all(type(v) is float for _, v in spec.flops), spec.model


def test_every_fixture_descriptor_has_float_clocks_and_bandwidths():
    from provider_agent.probe import discover_dump
    from tests.unit._hw_damage import fixture_dirs
    for folder in fixture_dirs():
        for d in discover_dump(folder).descriptor.devices:
            assert d.clock_mhz is None or type(d.clock_mhz) is float, (folder.name, d.model)
            assert d.memory_bandwidth_gbps is None or type(d.memory_bandwidth_gbps) is float, (folder.name, d.model)
