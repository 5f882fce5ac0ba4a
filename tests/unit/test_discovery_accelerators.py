"""Ascend npu-smi of several drivers, rocm-smi 5.7-6.2 keys, Intel xpu-smi / sycl-ls, macOS
system_profiler and Jetson tegrastats, each against real captures in tests/fixtures/hw."""

from __future__ import annotations

import pytest

from marketplace.resources.model import DeviceClass, Precision
from provider_agent.discovery import apple, intel, jetson, npu, rocm
from tests.unit._hw import fixture, garble, truncations

pytestmark = pytest.mark.unit


def test_npu_smi_21_chip_device_table_is_four_310_chips_not_eight_npus():
    # the "Chip Device" second row used to be read as an NPU row: "Ascend 3", "Ascend 4"... without memory
    facts = npu.parse_npu_smi(fixture("ascend-310x4-21.0.4/npu-smi.txt"))
    (dev,) = facts.devices
    assert (dev.device_class, dev.model, dev.count, dev.memory_mib) == (DeviceClass.NPU, "Ascend 310", 4, 8192)
    assert dev.peak(Precision.INT8) == 22e12 and facts.version == "21.0.4" and facts.warnings == ()


def test_npu_smi_24_1_atlas_800_reads_hbm_and_reports_unhealthy_chips():
    facts = npu.parse_npu_smi(fixture("ascend-atlas800-9010-24.1.RC2/npu-smi.txt"))
    (dev,) = facts.devices
    assert (dev.count, dev.memory_mib) == (8, 32768)
    assert sum("health is 'Warning'" in w.message for w in facts.warnings) == 2


def test_npu_model_names_and_the_ambiguous_ascend910():
    assert npu.model_name("Ascend910") == "Ascend 910" and npu.model_name("310P3") == "Ascend 310P3"


@pytest.mark.parametrize("name", ["ascend-310x4-21.0.4/npu-smi.txt", "ascend-atlas800-9010-24.1.RC2/npu-smi.txt"])
def test_damaged_npu_tables_never_overcount(name):
    text = fixture(name)
    total = sum(d.count for d in npu.parse_npu_smi(text).devices)
    for damaged in [*truncations(text), garble(text)]:
        facts = npu.parse_npu_smi(damaged)
        assert facts.warnings and sum(d.count for d in facts.devices) <= total


@pytest.mark.parametrize("folder", ["rocm-rx6700xt-5.7.1", "rocm-rx6700xt-6.1.2"])
def test_rocm_57_and_61_name_the_navi22_family_not_a_pci_id(folder):
    facts = rocm.parse_rocm_json(fixture(folder + "/rocm-smi.json"))
    (dev,) = facts.devices
    assert dev.model == "AMD Radeon RX 6700/6700 XT / 6800M" and dev.memory_mib == 12868124672 // 2**20
    assert dev.flops == ()  # 12 GB fits both the RX 6700 XT and the RX 6800M: no guess
    assert any("may be any of" in w.message for w in facts.warnings)


def test_rocm_624_family_name_resolved_by_memory():
    facts = rocm.parse_rocm_json(fixture("rocm-rx7800xt-6.2.4/rocm-smi.json"))
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.model, dev.memory_mib, dev.compute_units) == ("AMD Radeon RX 7800 XT", 16368, 60)
    assert dev.peak(Precision.FP32) == 37.32e12


def test_xpu_smi_discovery_detail():
    facts = intel.parse_xpu_smi(fixture("intel-xpu-smi-0x020a/xpu-smi.txt"))
    (dev,) = facts.devices
    assert (dev.model, dev.vendor, dev.memory_mib, dev.clock_mhz) == ("Intel(R) Graphics [0x020a]", "Intel", 32768, 1400.0)
    assert dev.interconnect == "PCIe Gen4 x16"


def test_sycl_ls_counts_level_zero_gpus_once():
    facts = intel.parse_sycl_ls(fixture("intel-sycl-ls-arc-a770/sycl-ls.txt"))
    assert {d.model: d.count for d in facts.devices} == {
        "Intel(R) Arc(TM) A770 Graphics": 1, "Intel(R) UHD Graphics 730": 1}
    a770 = next(d for d in facts.devices if "A770" in d.model)
    assert a770.memory_bandwidth_gbps == 560 and a770.memory_mib is None
    old = intel.parse_sycl_ls(fixture("intel-sycl-ls-iris-xe-windows/sycl-ls.txt"))
    assert [(d.model, d.count) for d in old.devices] == [("Intel(R) Iris(R) Xe Graphics", 1)]


def test_system_profiler_apple_silicon_keeps_performance_and_efficiency_cores_apart():
    facts = apple.parse_system_profiler(fixture("apple-m2-pro-hardware/system_profiler.txt"))
    assert {d.model: d.compute_units for d in facts.devices} == {
        "Apple M2 Pro performance cores": 8, "Apple M2 Pro efficiency cores": 4}
    assert facts.memory_mib == 16 * 1024
    assert any("no Graphics/Displays section" in w.message for w in facts.warnings)


def test_system_profiler_displays_apple_gpu_and_discrete_vram():
    (m3,) = apple.parse_system_profiler(fixture("apple-m3-displays/system_profiler.txt")).devices
    assert (m3.model, m3.compute_units, m3.memory_mib, m3.memory_bandwidth_gbps) == ("Apple M3", 10, None, 100)
    (vega,) = apple.parse_system_profiler(fixture("mac-radeon-pro-vega64/system_profiler.txt")).devices
    assert (vega.model, vega.vendor, vega.memory_mib) == ("Radeon Pro Vega 64", "AMD", 16384)


def test_jetson_tegrastats_and_device_tree_model():
    facts = jetson.parse_jetson(fixture("jetson-nano/tegrastats.txt"), fixture("jetson-nano/device-tree-model"))
    (gpu,) = facts.devices
    assert (gpu.model, gpu.memory_mib, facts.ram_mib, facts.cpus) == ("NVIDIA Jetson Nano Developer Kit", None, 3965, 4)
    assert "unified-memory" in gpu.features


def test_jetson_without_model_says_so():
    facts = jetson.parse_jetson(fixture("jetson-nano/tegrastats.txt"), None)
    assert facts.devices[0].model == "NVIDIA Jetson (model unknown)"
    assert any("device-tree/model" in w.message for w in facts.warnings)
