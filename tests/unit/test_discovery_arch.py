"""CPU discovery on every Linux architecture, from real util-linux test dumps (cpuinfo, sysfs and the
lscpu output util-linux expects for them) and real lscpu captures (Raspberry Pi 4, a zh_CN lscpu)."""

from __future__ import annotations

import pytest

from provider_agent.discovery import cpu
from tests.unit._hw import fixture

pytestmark = pytest.mark.unit


def _facts(folder: str, cpuinfo: bool = True, lscpu: bool = True):
    info = cpu.parse_cpuinfo(fixture(folder + "/cpuinfo")) if cpuinfo else None
    ls = cpu.parse_lscpu(fixture(folder + "/lscpu.txt")) if lscpu else None
    return cpu.cpu_devices(info, ls, cpu.parse_cpu_list(fixture(folder + "/online"), "online").value)


def _groups(facts):
    return {d.model: (d.vendor, d.count, d.compute_units) for d in facts.devices}


# /proc/cpuinfo alone gave no CPU device on these before (issue 17): each has its own keys.
@pytest.mark.parametrize("folder, arch, groups", [
    ("cpu-armv7-exynos5", "armv7l", {"Cortex-A15": ("ARM", 1, 2)}),
    ("cpu-loongarch-3a5000-hv", "loongarch64", {"Loongson-3A5000-HV": ("Loongson", 1, 4)}),
    ("cpu-loongarch-3c6000-kvm", "loongarch64", {"Loongson-3A5000": ("Loongson", 32, 1)}),
    ("cpu-riscv-visionfive2", "riscv64", {"sifive,u74-mc": ("SiFive", 1, 4)}),
    ("cpu-riscv-milkv-pioneer", "riscv64", {"RISC-V rv64imafdcv": ("T-Head", 1, 64)}),
    ("cpu-s390x-lpar", "s390x", {"IBM z196 (machine type 2817)": ("IBM", 1, 17)}),
    ("cpu-s390x-zvm", "s390x", {"IBM z196 (machine type 2817)": ("IBM", 1, 4)}),
])
def test_cpuinfo_alone_on_every_architecture(folder, arch, groups):
    facts = _facts(folder, lscpu=False)
    assert _groups(facts) == groups
    assert facts.arch == arch


def test_power_cpuinfo_alone_names_the_cpu_and_says_cores_are_unknown():
    facts = _facts("cpu-ppc64-power7", lscpu=False)
    (dev,) = facts.devices
    assert (dev.model, dev.compute_units, dev.clock_mhz) == ("POWER7 (architected), altivec supported", None, 3000.0)
    assert any("core count unknown without lscpu" in w.message for w in facts.warnings)


def test_power_with_lscpu_has_sockets_cores_and_smt():
    (dev,) = _facts("cpu-ppc64-power7").devices
    assert (dev.count, dev.compute_units, dev.clock_mhz) == (4, 1, 3000.0) and "smt4" in dev.features


def test_riscv_lscpu_model_name_dash_is_named_from_cpuinfo():
    assert _groups(_facts("cpu-riscv-milkv-pioneer")) == {"RISC-V rv64imafdcv": ("T-Head", 1, 64)}
    facts = _facts("cpu-riscv-milkv-pioneer", cpuinfo=False)
    assert _groups(facts) == {"unknown CPU (Vendor ID 0x5b7)": ("T-Head", 1, 64)}
    assert any("neither lscpu nor cpuinfo names the model" in w.message for w in facts.warnings)


def test_s390_lscpu_books_are_the_machine_not_the_partition():
    facts = _facts("cpu-s390x-lpar", cpuinfo=False)
    assert _groups(facts) == {"IBM z196 (machine type 2817)": ("IBM", 1, 17)}
    assert any("books/drawers describe the machine" in w.message for w in facts.warnings)
    assert any("only 17 of 20 CPUs are online" in w.message for w in facts.warnings)


def test_loongarch_lscpu_and_cpuinfo_agree_and_cpuinfo_gives_the_clock():
    (dev,) = _facts("cpu-loongarch-3a5000-hv").devices
    assert (dev.model, dev.count, dev.compute_units, dev.clock_mhz) == ("Loongson-3A5000-HV", 1, 4, 2500.0)
    assert {"lsx", "lasx"} <= dev.features


def test_armv7_shared_block_gives_every_processor_its_part():
    info = cpu.parse_cpuinfo(fixture("cpu-armv7-exynos5/cpuinfo"))
    assert info.warnings == () and info.logical == 2 and info.arch == "arm"


def test_rpi4_lscpu_clusters_with_socket_dash():
    ls = cpu.parse_lscpu(fixture("cpu-aarch64-rpi4-lscpu/lscpu.txt"))
    assert ls.warnings == ()
    (dev,) = cpu.cpu_devices(None, ls).devices
    assert (dev.model, dev.count, dev.compute_units, dev.clock_mhz) == ("Cortex-A72", 1, 4, 1800.0)


def test_localised_lscpu_is_recognised_and_not_misread():
    ls = cpu.parse_lscpu(fixture("cpu-x86-lscpu-zh-CN/lscpu.txt"))
    assert ls.localised and ls.blocks == ()
    assert any("LC_ALL=C lscpu" in w.message for w in ls.warnings)
    assert cpu.cpu_devices(None, ls).devices == ()


def test_big_little_lscpu_reordered_keeps_each_core_type_apart():
    text = fixture("cpu-arm-big-little-A510-A710-A715-X3/lscpu.txt")
    head = text.split("\n\n")[0]
    reordered = "\n".join(reversed(head.splitlines())) + "\n"
    facts = cpu.cpu_devices(None, cpu.parse_lscpu(reordered))
    assert {d.model: d.compute_units for d in facts.devices} == {
        "Cortex-A510": 3, "Cortex-A710": 2, "Cortex-A715": 2, "Cortex-X3": 1}


def test_lscpu_with_only_a_bios_model_name_names_the_cpu_from_it():
    """Kunpeng 920 and other ARM servers print ``BIOS Model name`` and no ``Model name``. No public capture
    of one was found (docs/discovery.md): the Raspberry Pi 4's real lscpu with its model line renamed so."""
    text = fixture("cpu-aarch64-rpi4-lscpu/lscpu.txt").replace("  Model name:            Cortex-A72",
                                                                 "  BIOS Model name:       Kunpeng 920-4826")
    assert "  Model name:" not in text
    (dev,) = cpu.cpu_devices(None, cpu.parse_lscpu(text)).devices
    assert (dev.model, dev.compute_units) == ("Kunpeng 920-4826", 4)
