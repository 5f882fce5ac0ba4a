"""TPU discovery. NO REAL TPU CAPTURE EXISTS in the project's data: these listings and environments
are built from the variable and device names Google documents for TPU VMs, and test the parsing only."""

from __future__ import annotations

import pytest

from marketplace.resources.model import DeviceClass, Precision
from provider_agent.discovery import tpu

pytestmark = pytest.mark.unit


def test_v4_host_with_accel_nodes():
    facts = tpu.parse_tpu([f"/dev/accel{i}" for i in range(4)],
                          {"TPU_ACCELERATOR_TYPE": "v4-8", "TPU_CHIPS_PER_HOST_BOUNDS": "2,2,1"})
    assert facts.warnings == ()
    (dev,) = facts.devices
    assert (dev.device_class, dev.model, dev.count) == (DeviceClass.TPU, "Google TPU v4", 4)
    assert dev.peak(Precision.BF16) == 275e12 and dev.memory_bandwidth_gbps == 1200  # Cloud TPU v4 docs


def test_v6e_host_with_vfio_groups():
    facts = tpu.parse_tpu(["/dev/vfio/vfio", *(f"/dev/vfio/{i}" for i in range(8))],
                          {"TPU_ACCELERATOR_TYPE": "v6e-8"})
    (dev,) = facts.devices
    assert (dev.model, dev.count, dev.features) == ("Google TPU v6e", 8, frozenset({"vfio"}))


def test_mismatch_and_missing_type_are_warnings_not_guesses():
    facts = tpu.parse_tpu(["/dev/accel0", "/dev/accel1"], {"TPU_CHIPS_PER_HOST_BOUNDS": "2,2,1"})
    (dev,) = facts.devices
    assert dev.model == "Google TPU (generation unknown)" and dev.count == 2
    assert len(facts.warnings) == 2


def test_no_device_nodes_means_no_tpu():
    facts = tpu.parse_tpu([], {"TPU_ACCELERATOR_TYPE": "v5litepod-8"})
    assert facts.devices == () and facts.warnings
    assert tpu.parse_tpu(["/dev/null"], {}).devices == ()


def test_env_file_keeps_only_tpu_variables():
    assert tpu.parse_env_file("TPU_ACCELERATOR_TYPE=v5p-8\nHOME=/root\ngarbage\n") == {
        "TPU_ACCELERATOR_TYPE": "v5p-8"}
