"""NVIDIA discovery against real nvidia-smi XML logs (v11/T4, v12/A100 MIG, v13/dual A5000) and captures."""

from __future__ import annotations

import pytest

from marketplace.resources.model import Precision
from provider_agent.discovery import nvidia
from tests.unit._hw import fixture, garble, truncations

pytestmark = pytest.mark.unit

H100 = "nvidia-h100-capture-590/nvidia-smi-capture.txt"
L40S = "nvidia-l40s-capture-595/nvidia-smi-capture.txt"


def test_a100_v12_mig_instances_and_attached_gpus_mismatch():
    facts = nvidia.parse_smi_xml(fixture("nvidia-a100-mig-xml-v12/nvidia-smi-q.xml"))
    (dev,) = facts.devices
    assert dev.model == "NVIDIA A100-SXM4-80GB" and dev.count == 4
    assert (dev.compute_units, dev.memory_mib, dev.clock_mhz) == (14, 19968, 1410.0)
    assert "mig" in dev.features
    assert dev.share_milli == round(1000 * 14 / 108)  # 14 of the A100's 108 SMs
    assert dev.peak(Precision.FP16) == 312e12
    assert facts.driver == "535.54.03"
    assert [w.message for w in facts.warnings] == [
        "attached_gpus says 4 but the log holds 1 <gpu> elements; counting the 1 present"]


def test_t4_older_schema():
    facts = nvidia.parse_smi_xml(fixture("nvidia-t4-xml/nvidia-smi-q.xml"))
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.model, dev.count, dev.memory_mib, dev.clock_mhz, dev.compute_units) == (
        "Tesla T4", 1, 15360, 1590.0, 40)
    assert dev.peak(Precision.INT8) == 130e12 and dev.peak(Precision.FP64) is None
    assert dev.interconnect.startswith("PCIe Gen3 x16")


def test_dual_a5000_v13_groups_two_identical_gpus():
    facts = nvidia.parse_smi_xml(fixture("nvidia-dual-a5000-xml-v13/nvidia-smi-q.xml"))
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.model, dev.count, dev.memory_mib, dev.clock_mhz) == ("NVIDIA RTX A5000", 2, 24564, 2100.0)
    assert dev.peak(Precision.FP32) == 27.8e12 and dev.peak(Precision.FP16) is None


@pytest.mark.parametrize("name, model, mib, clock, nvlink", [
    (H100, "NVIDIA H100 80GB HBM3", 81559, 1980.0, True),
    (L40S, "NVIDIA L40S", 46068, 2520.0, False),
])
def test_exporter_captures_query_csv_with_header_and_units(name, model, mib, clock, nvlink):
    cap = nvidia.parse_capture(fixture(name))
    assert cap.gpus.warnings == ()
    (dev,) = cap.gpus.devices
    assert (dev.model, dev.count, dev.memory_mib, dev.clock_mhz) == (model, 1, mib, clock)
    assert ("nvlink" in dev.features) is nvlink
    assert cap.get("arch") == "x86_64"
    if nvlink:
        assert dev.interconnect.startswith("NVLink 18 links x 26.562 GB/s")


def test_query_csv_noheader_nounits_with_probe_fields():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 1980, 5, 16, Disabled, 590.48.01\n"
    facts = nvidia.parse_query_csv(text, nvidia.PROBE_FIELDS)
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.memory_mib, dev.clock_mhz) == (81559, 1980.0)
    assert dev.interconnect.startswith("PCIe Gen5 x16")
    assert facts.driver == "590.48.01"


def test_unknown_gpu_gets_no_flops_and_a_warning():
    text = "0, NVIDIA Imaginary 9000, 1024, 1000, 4, 16, Disabled, 1.0\n"
    facts = nvidia.parse_query_csv(text, nvidia.PROBE_FIELDS)
    (dev,) = facts.devices
    assert dev.flops == () and dev.memory_bandwidth_gbps is None
    assert any("not in the datasheet catalog" in w.message for w in facts.warnings)


@pytest.mark.parametrize("name", ["nvidia-a100-mig-xml-v12/nvidia-smi-q.xml", "nvidia-t4-xml/nvidia-smi-q.xml", "nvidia-dual-a5000-xml-v13/nvidia-smi-q.xml"])
def test_damaged_xml_warns_and_does_not_raise(name):
    text = fixture(name)
    for damaged in [*truncations(text), garble(text)]:
        facts = nvidia.parse_smi_xml(damaged)
        assert facts.warnings and facts.devices == ()


@pytest.mark.parametrize("name", [H100, L40S])
def test_damaged_capture_warns_and_does_not_raise(name):
    text = fixture(name)
    query = nvidia.split_capture(text)
    csv_text = next(v for k, v in query.items() if k.startswith("idle :: query-gpu"))
    for damaged in [*truncations(text), garble(text)]:
        cap = nvidia.parse_capture(damaged)
        assert cap.gpus.warnings
    # garble() may only hit the blank lines of this two-line section: damage the row instead
    row_garbled = csv_text.replace(", ", " ;; ", 7)
    for damaged in [*truncations(csv_text), row_garbled]:
        facts = nvidia.parse_query_csv(damaged)
        assert facts.warnings
        for dev in facts.devices:  # whatever survives is what the text said
            assert dev.model in ("NVIDIA H100 80GB HBM3", "NVIDIA L40S")


# --- MIG from text and CSV captures (issue 17) ----------------------------------------------

H100_MIG = "nvidia-h100-mig-capture-590/nvidia-smi-capture.txt"
H200_MIG = "nvidia-h200-mig-text-610/"


def _by_profile(devices):
    return {next(f for f in d.features if f.startswith("mig-")): (d.count, d.memory_mib, d.compute_units, d.share_milli)
            for d in devices}


def test_h100_mig_capture_offers_each_instance_with_its_memory_and_sm_share():
    cap = nvidia.parse_capture(fixture(H100_MIG))
    assert cap.gpus.warnings == ()
    assert _by_profile(cap.gpus.devices) == {
        "mig-3g.40gb": (1, 40448, 60, round(1000 * 60 / 132)),
        "mig-2g.20gb": (1, 20096, 32, round(1000 * 32 / 132)),
        "mig-1g.10gb": (2, 9984, 16, round(1000 * 16 / 132)),
    }
    assert all(d.model == "NVIDIA H100 80GB HBM3" and d.clock_mhz == 1980.0 for d in cap.gpus.devices)
    assert all(d.interconnect.startswith("PCIe Gen5 x16") for d in cap.gpus.devices)


def test_mig_csv_alone_offers_nothing_and_says_what_is_missing():
    query = nvidia.split_capture(fixture(H100_MIG))["idle :: query-gpu (csv, what the exporter parses)"]
    facts = nvidia.parse_query_csv(query)
    assert facts.devices == ()
    assert any("in MIG mode but its instances are not in this capture" in w.message for w in facts.warnings)


def test_mig_csv_with_nvidia_smi_L_gives_instances_by_profile_with_slice_share():
    sections = nvidia.split_capture(fixture(H100_MIG))
    facts = nvidia.parse_query_csv(sections["idle :: query-gpu (csv, what the exporter parses)"],
                                   listing=sections["capabilities :: list (-L)"])
    assert _by_profile(facts.devices) == {
        "mig-3g.40gb": (1, None, None, round(1000 * 3 / 7)),
        "mig-2g.20gb": (1, None, None, round(1000 * 2 / 7)),
        "mig-1g.10gb": (2, None, None, round(1000 * 1 / 7)),
    }
    assert any("known by profile only" in w.message for w in facts.warnings)


def test_h200_mig_default_table_of_driver_610_with_its_list():
    facts = nvidia.parse_smi_text(fixture(H200_MIG + "nvidia-smi.txt"), fixture(H200_MIG + "nvidia-smi-L.txt"))
    (dev,) = facts.devices
    assert (dev.model, dev.count, dev.memory_mib, dev.compute_units) == ("NVIDIA H200", 1, 71424, 60)
    assert dev.share_milli == round(1000 * 60 / 132) and "mig-3g.71gb" in dev.features
    assert dev.peak(Precision.BF16) == 989.5e12
    assert facts.driver == "610.43.02"  # the 610 table says "KMD Version", not "Driver Version"


def test_nvidia_smi_L_alone_names_gpus_without_memory():
    facts = nvidia.parse_smi_text(None, fixture(H200_MIG + "nvidia-smi-L.txt"))
    (dev,) = facts.devices
    assert dev.memory_mib is None and dev.share_milli == round(1000 * 3 / 7)
    assert any("gives no memory size" in w.message for w in facts.warnings)


def test_geforce_rtx_3060_v12_xml_gets_catalog_figures():
    (dev,) = nvidia.parse_smi_xml(fixture("nvidia-rtx3060-xml-v12/nvidia-smi-q.xml")).devices
    assert (dev.model, dev.memory_mib, dev.clock_mhz, dev.compute_units) == ("NVIDIA GeForce RTX 3060", 12288, 2145.0, 28)
    assert dev.peak(Precision.FP32) == pytest.approx(2 * 3584 * 1777e6, rel=1e-3)


@pytest.mark.parametrize("name", [H200_MIG + "nvidia-smi.txt", H200_MIG + "nvidia-smi-L.txt"])
def test_damaged_text_warns_and_never_invents_instances(name):
    text = fixture(name)
    for damaged in [*truncations(text), garble(text)]:
        table = damaged if name.endswith("smi.txt") else None
        listing = damaged if name.endswith("L.txt") else None
        facts = nvidia.parse_smi_text(table, listing)
        assert facts.warnings
        assert sum(d.count for d in facts.devices) <= 1
