"""Every fixture folder, damaged: truncated, reordered, localised and mixed from two versions.

A damaged dump must give the devices that can still be read and a warning naming what could not:
never an exception, never an accelerator or a memory size the real capture does not have, and never
a changed result without a new warning.
"""

from __future__ import annotations

import json

import pytest

from provider_agent.discovery import discover, sources_from_files
from provider_agent.discovery.check import summary
from tests.unit._hw import fixture
from tests.unit._hw_damage import fixture_dirs, load, localised, reordered, truncated

pytestmark = pytest.mark.unit


def _run(dump: dict[str, str], name: str):
    found = discover(sources_from_files(dump, name))
    return summary(found.descriptor), {str(w) for w in found.warnings}


@pytest.mark.parametrize("folder", fixture_dirs(), ids=lambda p: p.name)
def test_damaged_copies_read_what_they_can_and_say_what_they_could_not(folder):
    dump = load(folder)
    base, base_warnings = _run(dump, folder.name)
    assert base == {**base, **json.loads((folder / "expected.json").read_text())}
    damaged = truncated(dump) + reordered(dump) + localised(dump)
    assert damaged, "every fixture can be damaged"
    for label, copy in damaged:
        got, warnings = _run(copy, folder.name)
        assert got["devices"] <= base["devices"], f"{label}: accelerators invented"
        assert set(got["memory_mib"]) <= set(base["memory_mib"]) | {None}, f"{label}: memory invented"
        if got != base:
            assert warnings - base_warnings, f"{label}: result changed without a warning: {got} vs {base}"


def test_truncation_is_reported_even_when_nothing_else_changes():
    dump = load(fixture_dirs()[0].parent / "ascend-310x4-21.0.4")
    text = dump["npu-smi.txt"]
    got, warnings = _run({"npu-smi.txt": text[: text.rindex("\n")]}, "x")
    assert any("truncated" in w for w in warnings)


def test_mixed_versions_rocm_cards_from_two_releases_are_each_read_with_their_keys():
    new = json.loads(fixture("rocm-rx6700xt-6.1.2/rocm-smi.json"))
    old = json.loads(fixture("rocm-mi100-6.0.2/rocm-smi.json"))
    mixed = {"card0": new["card0"], "card1": old["card0"], "system": new["system"]}
    got, warnings = _run({"rocm-smi.json": json.dumps(mixed, indent=4) + "\n"}, "mixed")
    assert got["devices"] == 2
    assert got["models"] == ["AMD Instinct MI100", "AMD Radeon RX 6700/6700 XT / 6800M"]


def test_mixed_versions_npu_tables_of_two_drivers_in_one_file():
    text = fixture("ascend-310x4-21.0.4/npu-smi.txt") + fixture("ascend-910b2c-x4-23.0.3/npu-smi.txt")
    got, _ = _run({"npu-smi.txt": text}, "mixed")
    assert got["devices"] == 8 and got["models"] == ["Ascend 310", "Ascend 910B2C"]
    assert got["memory_mib"] == [8192, 65536]


def test_mixed_versions_nvidia_table_and_list_of_different_machines_warn_and_keep_the_table():
    dump = {"nvidia-smi.txt": fixture("nvidia-h200-mig-text-610/nvidia-smi.txt"),
            "nvidia-smi-L.txt": fixture("nvidia-h100-mig-capture-590/nvidia-smi-capture.txt").split(
                "# $ nvidia-smi -L\n" + "#" * 80 + "\n")[1].split("\n\n\n")[0] + "\n"}
    got, warnings = _run(dump, "mixed")
    assert got["devices"] == 1 and got["memory_mib"] == [71424]
    assert any("different machines or drivers" in w for w in warnings)


def test_mixed_machines_lscpu_and_cpuinfo_disagree_loudly():
    dump = {"lscpu.txt": fixture("cpu-x86-epyc-7451/lscpu.txt"), "cpuinfo": fixture("cpu-x86-dell-e4310/cpuinfo")}
    got, warnings = _run(dump, "mixed")
    assert got["models"] == ["AMD EPYC 7451 24-Core Processor"]
    assert any("differs from lscpu" in w for w in warnings)
    assert any("cpuinfo lists 4 processors but lscpu says 96" in w for w in warnings)
