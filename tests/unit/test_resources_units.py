"""Normalized compute units and the CATS L0/L1/L2 metrics, on real hardware."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision
from marketplace.resources.units import (
    L1,
    REFERENCES,
    compute_units,
    l0_metrics,
    l1_metrics,
    l2_score,
    node_units,
    units_precision,
)
from tests.unit._resources_hw import a100, a5000, ascend_npu, epyc_7451, h100, mi100_gpu, node, t4, xeon_8463b

pytestmark = pytest.mark.unit


def _as_device(ref) -> DeviceCapability:
    return DeviceCapability(ref.device_class, ref.model, flops=ref.flops, memory_mib=ref.memory_mib,
                            memory_bandwidth_gbps=ref.memory_bandwidth_gbps)


@pytest.mark.parametrize("device_class", list(DeviceClass))
def test_every_class_has_a_reference_worth_one_unit_and_scoring_50(device_class):
    ref = REFERENCES[device_class]
    device = _as_device(ref)
    assert compute_units(device) == 1.0
    l1 = l1_metrics(device)
    assert l1.compute == 1.0 and l1.memory == 1.0
    assert l1.bandwidth == (1.0 if ref.memory_bandwidth_gbps else None)
    assert l2_score(l1) == 50
    # every preferred precision is one the reference publishes
    assert all(ref.peak(p) for p in ref.preference)


def test_gpu_generations_order_by_units():
    assert compute_units(t4()) < compute_units(a100()) < compute_units(h100())
    assert units_precision(h100()) is Precision.FP16  # the GPU class prefers fp16
    # the same ordering at every precision the three publish in common
    for p in (Precision.FP32, Precision.FP16, Precision.INT8):
        assert compute_units(t4(), p) < compute_units(a100(), p) < compute_units(h100(), p)


def test_the_a100_itself_is_one_gpu_unit_at_every_precision():
    for p, _ in a100().flops:
        assert compute_units(a100(), p) == pytest.approx(1.0)


def test_units_compare_like_with_like_precisions():
    # MI100 publishes fp16 faster than bf16; units follow the precision asked for
    mi = mi100_gpu()
    assert compute_units(mi, Precision.BF16) == pytest.approx(compute_units(mi, Precision.FP16) / 2)
    # a precision the reference does not publish gives no units, not a mixed ratio
    assert compute_units(h100(), Precision.FP8) is None


def test_share_scales_units_memory_and_bandwidth():
    whole, half = l1_metrics(t4()), l1_metrics(t4(share_milli=500))
    assert half.compute == pytest.approx(whole.compute / 2)
    assert half.memory == pytest.approx(whole.memory / 2)
    assert half.bandwidth == pytest.approx(whole.bandwidth / 2)


def test_unknown_flops_give_no_units_and_no_score():
    for device in (a5000(), ascend_npu(), epyc_7451(), xeon_8463b()):
        assert compute_units(device) is None
        l1 = l1_metrics(device)
        assert l1.compute is None and l1.precision is None
        assert l2_score(l1) is None
    # memory is still known and normalized
    assert l1_metrics(ascend_npu()).memory == pytest.approx(65536 / (32 * 1024))


def test_node_units_sum_known_groups_and_say_none_when_nothing_is_known():
    n = node("dgx", h100(8), xeon_8463b())
    assert node_units(n, DeviceClass.GPU) == pytest.approx(8 * compute_units(h100()))
    assert node_units(n, DeviceClass.NPU) == 0.0
    assert node_units(n, DeviceClass.CPU) is None  # CPUs without FLOPS
    mixed = node("mixed", t4(), a5000())
    assert node_units(mixed, DeviceClass.GPU) == pytest.approx(compute_units(t4()))  # lower bound


def test_l0_is_raw_with_every_precision_key():
    m = l0_metrics(h100())
    assert m["memory_mib"] == 81559.0  # nvidia-smi's total, not the marketing 80 GB
    assert m["flops_fp16"] == h100().peak(Precision.FP16)
    assert {f"flops_{p.name.lower()}" for p in Precision} <= set(m)
    assert l0_metrics(a5000())["flops_fp16"] is None
    with pytest.raises(TypeError):
        m["count"] = 1  # read-only view


def test_l1_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        l1_metrics(t4()).compute = 3.0  # type: ignore[misc]


ratios = st.floats(min_value=0.0, max_value=1e3, allow_nan=False)


@given(c=ratios, m=st.one_of(st.none(), ratios), b=st.one_of(st.none(), ratios), more=ratios)
def test_l2_is_bounded_and_monotone_in_every_category(c, m, b, more):
    base = L1(DeviceClass.GPU, c, Precision.FP16, m, b)
    score = l2_score(base)
    assert 0 <= score <= 100
    assert l2_score(dataclasses.replace(base, compute=c + more)) >= score
    if m is not None:
        assert l2_score(dataclasses.replace(base, memory=m + more)) >= score


def test_l2_ranks_real_gpus():
    scores = [l2_score(l1_metrics(d)) for d in (t4(), mi100_gpu(), a100(), h100())]
    assert scores == sorted(scores) and len(set(scores)) == 4


def test_node_units_of_a_node_without_devices_is_zero():
    assert node_units(NodeDescriptor("empty"), DeviceClass.GPU) == 0.0
