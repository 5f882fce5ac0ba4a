"""Ascend discovery against a real `npu-smi info` (4x 910B2C) from a public bug report."""

from __future__ import annotations

import pytest

from marketplace.resources.model import DeviceClass
from provider_agent.discovery import npu
from tests.unit._hw import fixture, garble, truncations

pytestmark = pytest.mark.unit

NAME = "ascend-910b2c-x4-23.0.3/npu-smi.txt"


def test_four_910b2c_with_64gib_hbm():
    facts = npu.parse_npu_smi(fixture(NAME))
    (dev,) = facts.devices
    assert (dev.device_class, dev.model, dev.vendor, dev.count, dev.memory_mib) == (
        DeviceClass.NPU, "Ascend 910B2C", "Huawei", 4, 65536)
    assert dev.flops == ()  # no citable datasheet for this SKU
    assert facts.version == "23.0.3"
    assert [w.message for w in facts.warnings] == [
        "'Ascend 910B2C': Huawei publishes no per-SKU datasheet for the Ascend 910B2C that could be "
        "cited: peak figures left unknown"]


def test_damaged_table_warns_and_does_not_raise():
    text = fixture(NAME)
    baseline = len(npu.parse_npu_smi(text).warnings)
    for damaged in [*truncations(text), garble(text)]:
        facts = npu.parse_npu_smi(damaged)
        assert len(facts.warnings) > baseline
        assert sum(d.count for d in facts.devices) <= 4
        for dev in facts.devices:
            assert dev.memory_mib in (65536, None)
