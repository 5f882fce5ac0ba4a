"""fit(): verdicts, every reason with its numbers, tightness, free capacity; the Alibaba trace as oracle."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.resources.alibaba import node_from_trace, requirement_from_trace
from marketplace.resources.errors import FreeCapacityError
from marketplace.resources.fit import Fit, NodeView, fit, view_of
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor, Precision
from marketplace.resources.requirement import Requirement
from tests.unit._resources_hw import (
    T,
    a100,
    a5000,
    ascend_npu,
    epyc_7451,
    h100,
    mi100_gpu,
    node,
    t4,
    trace_nodes,
    trace_pods,
    xeon_8463b,
)

pytestmark = pytest.mark.unit
GPU = DeviceClass.GPU


def codes(f: Fit) -> list[str]:
    return [r.code for r in f.reasons]


def test_reason_message_carries_the_numbers():
    f = fit(Requirement(GPU, count=2, min_memory_mib=40960), node("ws", a5000()))
    assert not f.ok and codes(f) == ["vram"]
    # 24564 MiB per A5000 is what nvidia-smi reports in the dump
    assert f.reasons[0].message == "needs 2 GPU with >= 40960 MiB, has 2 with 24564 MiB"
    assert f.score == 0.0 and f.devices == ()


def test_every_reason_not_just_the_first():
    req = Requirement(GPU, count=2, share_milli=1000, min_memory_mib=40960, features=frozenset({"nvlink"}),
                      min_system_memory_mib=2 << 20, max_price=100, max_latency_ms=5.0, domain=7,
                      precision=Precision.FP16, min_flops=1e14, cpu_milli=10**6)
    n = node("ws", a5000(), epyc_7451(), memory_mib=256 * 1024)
    f = fit(req, n, price=101, latency_ms=20.0, domain=3)
    assert set(codes(f)) == {"vram", "precision", "features", "memory", "cpu", "price", "latency", "domain"}
    assert not f.transient


def test_device_class_and_count():
    f = fit(Requirement(DeviceClass.NPU), node("dgx", h100(8)))
    assert codes(f) == ["device-class"] and "node has 8 GPU" in f.reasons[0].message
    f = fit(Requirement(GPU, count=4), node("ws", a5000()))
    assert codes(f) == ["count"] and "needs 4 GPU, has 2" in f.reasons[0].message
    assert fit(Requirement(GPU, count=2), node("ws", a5000())).ok


def test_flops_and_precision_from_datasheets():
    need = Requirement(GPU, precision=Precision.FP16, min_flops=300 * T)
    assert fit(need, node("a", a100(1))).ok
    assert fit(need, node("h", h100(1))).ok
    f = fit(need, node("t", t4()))
    assert codes(f) == ["flops"] and "Tesla T4" in f.reasons[0].message
    # unknown FLOPS: cannot be matched on FLOPS, and says so
    f = fit(need, node("ws", a5000()))
    assert codes(f) == ["precision"] and "known fp16 FLOPS" in f.reasons[0].message
    # ... but matches a requirement that does not need FLOPS
    assert fit(Requirement(DeviceClass.NPU, count=4, min_memory_mib=60000), node("ascend", ascend_npu())).ok
    # MI100 publishes bf16 at half its fp16 rate
    assert not fit(Requirement(GPU, precision=Precision.BF16, min_flops=100 * T), node("mi", mi100_gpu())).ok
    assert fit(Requirement(GPU, precision=Precision.FP16, min_flops=100 * T), node("mi", mi100_gpu())).ok


def test_cpu_features_and_core_slots_from_lscpu():
    amx = Requirement(DeviceClass.CPU, count=8, features=frozenset({"amx"}))
    assert fit(amx, node("xeon", xeon_8463b())).ok
    f = fit(amx, node("epyc", epyc_7451()))
    assert codes(f) == ["features"] and "lacks amx" in f.reasons[0].message
    # 2 sockets x 48 cores: 96 CPU slots
    assert fit(Requirement(DeviceClass.CPU, count=96), node("xeon", xeon_8463b())).ok
    assert codes(fit(Requirement(DeviceClass.CPU, count=97), node("xeon", xeon_8463b()))) == ["count"]


def test_fractional_gpu_needs_a_free_slice_on_one_device():
    pod = next(p for p in trace_pods() if p["num_gpu"] == "1" and p["gpu_milli"] == "460")
    req = requirement_from_trace(pod)
    t4_node = node_from_trace(next(r for r in trace_nodes() if r["model"] == "T4" and r["gpu"] == "2"))
    cpu_free = int(next(r for r in trace_nodes() if r["sn"] == t4_node.hostname)["cpu_milli"])
    assert fit(req, t4_node).ok
    # a free half GPU serves it
    assert fit(req, t4_node, free={GPU: [500, 0], DeviceClass.CPU: cpu_free}).ok
    assert fit(req, t4_node, free={GPU: 500, DeviceClass.CPU: cpu_free}).ok
    # 400 + 400 free is 800 in all, but no single GPU has 460
    f = fit(req, t4_node, free={GPU: [400, 400], DeviceClass.CPU: cpu_free})
    assert codes(f) == ["free"] and f.transient
    # host CPU busy is transient too
    f = fit(req, t4_node, free={GPU: [1000, 1000], DeviceClass.CPU: 1000})
    assert codes(f) == ["free"] and "milli-CPU" in f.reasons[0].message
    # a class absent from free has nothing free
    assert codes(fit(req, t4_node, free={DeviceClass.CPU: cpu_free})) == ["free"]
    with pytest.raises(FreeCapacityError):
        fit(req, t4_node, free={GPU: [1000]})


def test_offered_share_bounds_the_slice():
    halves = node("t4-halves", t4(share_milli=500))  # the provider offers half of its T4
    assert fit(Requirement(GPU, share_milli=460), halves).ok
    assert fit(Requirement(GPU, share_milli=500), halves).ok
    for share in (501, 1000):
        f = fit(Requirement(GPU, share_milli=share), halves)
        assert codes(f) == ["share"] and f"needs 1 GPU with >= {share} milli each, has 1 at 500" in f.reasons[0].message


def test_score_prefers_the_tight_fit():
    # 12000 MiB on a T4 (15360 MiB in its dump) wastes less than on an H100 (81559 MiB)
    small = Requirement(GPU, min_memory_mib=12000)
    s_t4, s_h100 = fit(small, node("t", t4())).score, fit(small, node("h", h100(1))).score
    assert 0 < s_h100 < s_t4 < 1
    # and a 2-GPU A5000 workstation (24564 MiB each) sits in between for memory, lower for capacity
    assert fit(small, node("ws", a5000())).score < s_t4
    # one GPU on a one-GPU node beats one GPU out of eight
    assert fit(Requirement(GPU), node("one", a100(1))).score == 1.0
    assert fit(Requirement(GPU), node("eight", a100(8))).score == pytest.approx(1 / 8)
    # a node with a small and a big group serves from the smallest group that qualifies
    mixed = node("mixed", t4(), a100(2))
    f = fit(Requirement(GPU, min_memory_mib=10000), mixed)
    assert f.ok and [d.model for d in f.devices] == ["Tesla T4"]
    f = fit(Requirement(GPU, min_memory_mib=20000), mixed)
    assert [d.model for d in f.devices] == ["NVIDIA A100-SXM4-80GB"]


def test_node_view_is_cached_per_descriptor_and_accepted():
    n = node("dgx", h100(8), xeon_8463b())
    assert view_of(n) is view_of(n)
    assert isinstance(view_of(n), NodeView)
    req = Requirement(GPU, count=8)
    assert fit(req, view_of(n)) == fit(req, n)


def _oracle(pod: dict[str, str], row: dict[str, str]) -> bool:
    """What a trace pod needs of a trace node, computed straight from the CSV columns."""
    cpu, mem, gpus = int(row["cpu_milli"]), int(row["memory_mib"]), int(row["gpu"])
    if int(pod["memory_mib"]) > mem:
        return False
    if pod["num_gpu"] == "0":
        return math.ceil(int(pod["cpu_milli"]) / 1000) * 1000 <= cpu
    return int(pod["num_gpu"]) <= gpus and int(pod["cpu_milli"]) <= cpu


def test_whole_trace_agrees_with_a_direct_reading_of_the_csv():
    shapes = {(r["cpu_milli"], r["memory_mib"], r["gpu"], r["model"]): r for r in trace_nodes()}
    nodes = [(row, node_from_trace(row)) for row in shapes.values()]
    pods = trace_pods()
    reqs = [requirement_from_trace(p) for p in pods]
    fits = 0
    for pod, req in zip(pods, reqs):
        for row, desc in nodes:
            f = fit(req, desc)
            assert f.ok == _oracle(pod, row), (pod["name"], row["sn"], f.reasons)
            fits += f.ok
    assert 0 < fits < len(pods) * len(nodes)
    # the 8-GPU pods fit only 8-GPU nodes, and the reason says count
    big = next(r for p, r in zip(pods, reqs) if p["num_gpu"] == "8")
    small = node_from_trace(next(r for r in trace_nodes() if r["gpu"] == "2"))
    assert "count" in codes(fit(big, small))


def test_values_are_frozen():
    f = fit(Requirement(GPU), node("a", a100(1)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.ok = False  # type: ignore[misc]


# -- monotonicity -----------------------------------------------------------------

MEMS = [15360, 24564, 32752, 81559, 81920]  # from the dumps: T4, A5000, MI100, H100; A100 datasheet
FEATS = ["nvlink", "fp8", "mig"]


def _often_none(values):
    # mostly unconstrained, so that fits and near-misses both come up often
    return st.one_of(st.none(), st.none(), st.none(), st.sampled_from(values))


@st.composite
def nodes(draw):
    groups = []
    for i in range(draw(st.integers(1, 3))):
        groups.append(DeviceCapability(
            GPU, f"gpu{i}", count=draw(st.integers(1, 8)), memory_mib=draw(st.sampled_from([None, *MEMS])),
            flops=draw(st.sampled_from([(), ((Precision.FP16, 65 * T),), ((Precision.FP16, 312 * T),)])),
            features=draw(st.frozensets(st.sampled_from(FEATS))), share_milli=draw(st.sampled_from([250, 500, 1000])),
        ))
    if draw(st.sampled_from([True, True, True, False])):
        groups.append(DeviceCapability(DeviceClass.CPU, "cpu", count=2, compute_units=draw(st.integers(1, 64))))
    return NodeDescriptor("n", tuple(groups), memory_mib=draw(st.sampled_from([None, 32768, 524288, 524288])))


def reqs():
    return st.builds(
        Requirement, device_class=st.just(GPU), count=st.integers(1, 4),
        share_milli=st.sampled_from([100, 250, 460, 500, 1000]),
        min_memory_mib=_often_none(MEMS),
        precision=_often_none([Precision.FP16]),
        features=st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from(FEATS), max_size=2)),
        min_system_memory_mib=_often_none([1024, 65536, 600000]),
        cpu_milli=st.sampled_from([0, 0, 0, 1000, 64000]),
        max_price=_often_none([0, 50, 100]),
    )


def _free(draw, n: NodeDescriptor):
    view = view_of(n)
    out = {}
    for cls, slots in view.slots.items():
        if draw(st.booleans()):
            out[cls] = draw(st.lists(st.sampled_from([0, 250, 460, 500, 1000, 1000, 1000]), min_size=slots, max_size=slots))
        else:
            out[cls] = draw(st.one_of(st.integers(0, 10000), st.just(10**6)))
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=nodes(), req=reqs(), price=st.one_of(st.none(), st.integers(0, 100)))
def test_more_free_never_breaks_a_fit(data, n, req, price):
    free = _free(data.draw, n)
    before = fit(req, n, free=free, price=price)
    more = {c: ([min(1000, x + data.draw(st.integers(0, 1000))) for x in v] if isinstance(v, list)
                else v + data.draw(st.integers(0, 5000))) for c, v in free.items()}
    after = fit(req, n, free=more, price=price)
    if before.ok:
        assert after.ok
    assert fit(req, n, price=price).ok or not after.ok  # nothing beats a wholly free node


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=nodes(), req=reqs(), price=st.integers(0, 100))
def test_stricter_never_turns_no_into_yes(data, n, req, price):
    free = _free(data.draw, n) if data.draw(st.booleans()) else None
    before = fit(req, n, free=free, price=price)
    stricter = dataclasses.replace(
        req,
        count=req.count + data.draw(st.integers(0, 2)),
        share_milli=min(1000, req.share_milli + data.draw(st.integers(0, 500))),
        min_memory_mib=data.draw(st.sampled_from([req.min_memory_mib, *[m for m in MEMS if m >= (req.min_memory_mib or 0)]])),
        precision=data.draw(st.sampled_from([req.precision, Precision.FP16])),
        features=req.features | data.draw(st.frozensets(st.sampled_from(FEATS), max_size=1)),
        cpu_milli=req.cpu_milli + data.draw(st.sampled_from([0, 1000])),
        max_price=data.draw(st.sampled_from([req.max_price, 0] if req.max_price is None else [req.max_price, max(0, req.max_price - 1)])),
    )
    if not before.ok:
        assert not fit(stricter, n, free=free, price=price).ok
