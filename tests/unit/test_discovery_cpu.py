"""CPU, memory and disk discovery against real util-linux dumps and a real lscpu from a bug report."""

from __future__ import annotations

import pytest

from marketplace.resources.catalog import derive_cpu_flops
from marketplace.resources.model import DeviceClass, Precision
from provider_agent.discovery import cpu
from tests.unit._hw import fixture, garble, truncations

pytestmark = pytest.mark.unit

EPYC = "cpu-x86-epyc-7451/"
ARM = "cpu-arm-big-little-A510-A710-A715-X3/"
XEON = "ascend-910b2c-x4-23.0.3/lscpu.txt"


def test_epyc_cpuinfo_counts_sockets_cores_and_flags():
    info = cpu.parse_cpuinfo(fixture(EPYC + "cpuinfo"))
    assert info.warnings == ()
    assert info.logical == 96
    assert info.sockets() == 2
    assert info.cores() == 48
    assert {"avx2", "fma"} <= info.flags() and "avx512f" not in info.flags()


def test_epyc_lscpu_with_parsable_sections():
    ls = cpu.parse_lscpu(fixture(EPYC + "lscpu.txt"))
    assert ls.warnings == ()
    assert ls.cpus == 96 and ls.numa_nodes == 8
    (block,) = ls.blocks
    assert (block.model_name, block.sockets, block.cores_per_socket, block.threads_per_core) == (
        "AMD EPYC 7451 24-Core Processor", 2, 24, 2)
    assert block.max_mhz == 2300.0


def test_epyc_devices_and_derived_flops():
    facts = cpu.cpu_devices(cpu.parse_cpuinfo(fixture(EPYC + "cpuinfo")),
                            cpu.parse_lscpu(fixture(EPYC + "lscpu.txt")),
                            cpu.parse_cpu_list(fixture(EPYC + "online"), "online").value)
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.device_class, dev.vendor, dev.count, dev.compute_units) == (DeviceClass.CPU, "AMD", 2, 24)
    assert facts.arch == "x86_64" and facts.numa_nodes == 8 and facts.logical_cpus == 96
    # Zen 1: 8 FP64 FLOP/cycle x 24 cores x 2.3 GHz, per socket
    assert dev.peak(Precision.FP64) == pytest.approx(24 * 2300e6 * 8)
    assert dev.peak(Precision.FP32) == pytest.approx(2 * 24 * 2300e6 * 8)
    assert "flops-derived" in dev.features and "avx512" not in dev.features


def test_xeon_8463b_old_field_order_amx_and_avx512():
    ls = cpu.parse_lscpu(fixture(XEON))
    assert ls.warnings == ()
    facts = cpu.cpu_devices(None, ls)
    (dev,) = facts.devices
    assert dev.model == "Intel(R) Xeon(R) Platinum 8463B"
    assert (dev.count, dev.compute_units, dev.clock_mhz) == (2, 48, 3800.0)
    assert {"avx512", "amx", "amx_bf16", "amx_int8", "avx512_bf16", "smt2"} <= dev.features
    assert facts.numa_nodes == 2 and facts.arch == "x86_64"
    assert dev.peak(Precision.FP64) == pytest.approx(48 * 3800e6 * 32)


def test_arm_big_little_gives_one_group_per_core_type_without_flops():
    ls = cpu.parse_lscpu(fixture(ARM + "lscpu.txt"))
    assert ls.warnings == ()
    facts = cpu.cpu_devices(cpu.parse_cpuinfo(fixture(ARM + "cpuinfo")), ls)
    groups = {d.model: d.compute_units for d in facts.devices}
    assert groups == {"Cortex-A510": 3, "Cortex-A710": 2, "Cortex-A715": 2, "Cortex-X3": 1}
    assert all(d.flops == () for d in facts.devices)  # no documented FMA width: no FLOPS
    assert all("asimd" in d.features for d in facts.devices)


def test_arm_cpuinfo_alone_names_cores_by_part_number():
    facts = cpu.cpu_devices(cpu.parse_cpuinfo(fixture(ARM + "cpuinfo")), None)
    assert {d.model: d.compute_units for d in facts.devices} == {
        "Cortex-A510": 3, "Cortex-A710": 2, "Cortex-A715": 2, "Cortex-X3": 1}


def test_unknown_microarchitecture_gets_no_flops():
    assert derive_cpu_flops("GenuineIntel", 6, 85, 28, 3800.0) == ()
    assert derive_cpu_flops("AuthenticAMD", 23, 1, 24, None) == ()


@pytest.mark.parametrize("dump", [EPYC, ARM])
def test_damaged_cpuinfo_warns_and_does_not_raise(dump):
    text = fixture(dump + "cpuinfo")
    online = cpu.parse_cpu_list(fixture(dump + "online"), "online").value
    for damaged in [*truncations(text), garble(text)]:
        # a cut that falls between two processor blocks is only visible against the online list
        facts = cpu.cpu_devices(cpu.parse_cpuinfo(damaged), None, online)
        assert facts.warnings, "damage must be reported"


@pytest.mark.parametrize("name", [EPYC + "lscpu.txt", ARM + "lscpu.txt", XEON])
def test_damaged_lscpu_warns_and_does_not_raise(name):
    text = fixture(name)
    for damaged in [*truncations(text), garble(text)]:
        ls = cpu.parse_lscpu(damaged)
        assert ls.warnings, "damage must be reported"
        for dev in cpu.cpu_devices(None, ls).devices:
            assert dev.count >= 1


def test_meminfo_df_and_cpu_lists():
    assert cpu.parse_meminfo("MemTotal:       24684544 kB\nMemFree: 1 kB\n").value == 24684544 // 1024
    assert cpu.parse_meminfo("MemTotal: lots\n").warnings
    assert cpu.parse_meminfo("MemFree: 1 kB\n").value is None
    df = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n/dev/sda1 103081248 20000000 82520820 20% /\n"
    assert cpu.parse_df(df).value == pytest.approx(82520820 / 2**20, abs=1e-3)
    assert cpu.parse_df("garbage\n").value is None and cpu.parse_df("garbage\n").warnings
    assert cpu.parse_cpu_list("0-5,48-53\n", "online").value == frozenset([*range(6), *range(48, 54)])
    assert cpu.parse_cpu_list("0-x", "online").warnings
