"""Requirement: parsing with named errors, canonical form, digest; the trace's pods as requirements."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from marketplace.errors import InputError
from marketplace.resources.alibaba import requirement_from_trace
from marketplace.resources.errors import InvalidRequirement
from marketplace.resources.model import DeviceClass, Precision
from marketplace.resources.requirement import Requirement
from tests.unit._resources_hw import trace_pods

pytestmark = pytest.mark.unit

GPU40 = {"device_class": "gpu", "count": 2, "min_memory_mib": 40960, "precision": "bf16",
         "min_flops": 2e14, "features": ["NVLink", "fp8"], "max_price": 10**15, "duration_s": 7200}


def test_round_trip_and_digest():
    r = Requirement.from_dict(GPU40)
    assert r.device_class is DeviceClass.GPU and r.precision is Precision.BF16
    assert r.features == frozenset({"nvlink", "fp8"})
    assert Requirement.from_dict(r.to_dict()) == r
    assert r.digest() == keccak(r.canonical_bytes())
    assert json.loads(r.canonical_bytes()) == r.to_dict()
    assert len(r.digest()) == 32


def test_digest_ignores_spelling_and_order_but_not_content():
    a = Requirement.from_dict(GPU40)
    b = Requirement.from_dict({**dict(reversed(list(GPU40.items()))), "device_class": "GPU",
                               "precision": "BF16", "features": ["FP8", "nvlink"]})
    assert a.digest() == b.digest()
    for change in ({"count": 3}, {"min_memory_mib": 40961}, {"max_price": None}, {"features": ["nvlink"]},
                   {"share_milli": 999}, {"duration_s": 7201}):
        assert Requirement.from_dict({**GPU40, **change}).digest() != a.digest(), change


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"count": 1}, "device_class"),
        ({"device_class": "fpga"}, "device_class"),
        ({"device_class": "gpu", "count": 0}, "count"),
        ({"device_class": "gpu", "count": True}, "count"),
        ({"device_class": "gpu", "count": "2"}, "count"),
        ({"device_class": "gpu", "count": None}, "count"),
        ({"device_class": "gpu", "share_milli": 1001}, "share_milli"),
        ({"device_class": "gpu", "share_milli": 0}, "share_milli"),
        ({"device_class": "gpu", "precision": "fp12"}, "precision"),
        ({"device_class": "gpu", "min_flops": 1e12}, "precision"),
        ({"device_class": "gpu", "precision": "fp16", "min_flops": float("nan")}, "min_flops"),
        ({"device_class": "gpu", "min_memory_mib": -1}, "min_memory_mib"),
        ({"device_class": "gpu", "min_memory_mib": 1.5}, "min_memory_mib"),
        ({"device_class": "gpu", "max_latency_ms": -3}, "max_latency_ms"),
        ({"device_class": "gpu", "features": "avx512"}, "features"),
        ({"device_class": "gpu", "features": [""]}, "features"),
        ({"device_class": "gpu", "features": [1]}, "features"),
        ({"device_class": "gpu", "duration_s": 0}, "duration_s"),
        ({"device_class": "cpu", "cpu_milli": 500}, "cpu_milli"),
        ({"device_class": "gpu", "min_vram_mib": 1}, "min_vram_mib"),
    ],
)
def test_bad_input_names_the_field(data, field):
    with pytest.raises(InvalidRequirement) as info:
        Requirement.from_dict(data)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
    assert info.value.field == field
    assert info.value.to_dict()["code"] == "invalid-requirement"


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(InvalidRequirement) as info:
        Requirement.from_dict({"device_class": "gpu", "min_memory": 1})
    assert "min_memory_mib" in str(info.value)


def test_not_an_object():
    with pytest.raises(InvalidRequirement):
        Requirement.from_dict(["gpu"])


def test_frozen():
    r = Requirement(DeviceClass.GPU)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.count = 2  # type: ignore[misc]
    assert hash(r) == hash(Requirement("gpu"))


def test_every_trace_pod_is_a_valid_requirement():
    pods = trace_pods()
    reqs = [requirement_from_trace(p) for p in pods]
    assert len(reqs) == 8152
    shares = Counter(r.share_milli for r in reqs if r.device_class is DeviceClass.GPU and r.share_milli < 1000)
    # fractional GPUs survive exactly: the trace's gpu_milli histogram
    expected = Counter(int(p["gpu_milli"]) for p in pods if p["num_gpu"] == "1" and int(p["gpu_milli"]) < 1000)
    assert shares == expected and sum(shares.values()) > 3000
    for pod, r in zip(pods, reqs):
        assert r.min_system_memory_mib == int(pod["memory_mib"])
        if pod["num_gpu"] == "0":
            # whole CPUs, rounded up, never down
            assert r.device_class is DeviceClass.CPU and 0 <= r.count * 1000 - int(pod["cpu_milli"]) < 1000
        else:
            assert r.count == int(pod["num_gpu"]) and r.cpu_milli == int(pod["cpu_milli"])
        assert Requirement.from_dict(r.to_dict()) == r
    assert len({r.digest() for r in reqs}) > 100


requirements = st.builds(
    Requirement,
    device_class=st.sampled_from(list(DeviceClass)),
    count=st.integers(1, 64),
    share_milli=st.integers(1, 1000),
    min_memory_mib=st.one_of(st.none(), st.integers(0, 1 << 20)),
    precision=st.just(Precision.FP16),
    min_flops=st.one_of(st.none(), st.floats(0, 1e16)),
    features=st.frozensets(st.sampled_from(["avx512", "amx", "nvlink", "sve"])),
    max_latency_ms=st.one_of(st.none(), st.floats(0, 1e4)),
    max_price=st.one_of(st.none(), st.integers(0, 10**24)),
    domain=st.one_of(st.none(), st.integers(0, 2**32)),
    duration_s=st.integers(1, 10**6),
)


@given(requirements)
def test_round_trip_property(r):
    back = Requirement.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and back.digest() == r.digest()
