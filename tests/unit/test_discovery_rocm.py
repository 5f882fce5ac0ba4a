"""AMD discovery against real rocm-smi JSON from ROCm 6.0.2 (MI100) and ROCm 4.3.0 (RX 6700 XT)."""

from __future__ import annotations

import pytest

from marketplace.resources.model import Precision
from provider_agent.discovery import rocm
from tests.unit._hw import fixture, garble, truncations

pytestmark = pytest.mark.unit


def test_mi100_rocm602():
    facts = rocm.parse_rocm_json(fixture("rocm-mi100-6.0.2/rocm-smi.json"))
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.model, dev.vendor, dev.count) == ("AMD Instinct MI100", "AMD", 4)
    assert dev.memory_mib == 34342961152 // 2**20
    assert dev.compute_units == 120 and dev.peak(Precision.FP64) == 11.5e12
    assert dev.interconnect.startswith("PCIe 16.0GT/s x16")


def test_rx6700xt_rocm430_has_only_pci_ids_so_no_model_and_no_flops():
    facts = rocm.parse_rocm_json(fixture("rocm-rx6700xt-4.3.0/rocm-smi.json"))
    (dev,) = facts.devices
    assert dev.model == "AMD GPU 0x73df"
    assert dev.memory_mib == 12868124672 // 2**20
    assert dev.flops == ()
    assert any("only PCI ids" in w.message for w in facts.warnings)


@pytest.mark.parametrize("name", ["rocm-mi100-6.0.2/rocm-smi.json", "rocm-rx6700xt-4.3.0/rocm-smi.json"])
def test_damaged_json_warns_and_does_not_raise(name):
    text = fixture(name)
    for damaged in [*truncations(text), garble(text)]:
        facts = rocm.parse_rocm_json(damaged)
        assert facts.warnings and facts.devices == ()


def test_card_without_memory_is_kept_with_memory_unknown():
    facts = rocm.parse_rocm_json('{"card0": {"Card series": "Arcturus GL-XL [Instinct MI100]"}}')
    (dev,) = facts.devices
    assert dev.memory_mib is None and dev.count == 1
    assert any("VRAM" in w.message for w in facts.warnings)
