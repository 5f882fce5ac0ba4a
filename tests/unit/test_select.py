"""Compute-aware selection on a real topology: device class before distance, latency bounds,
ranking, rejections explained, and load balanced by free capacity among equal candidates."""

from __future__ import annotations

import collections
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.resources.model import DeviceClass
from marketplace.routing.errors import InvalidTopology, UnknownNode
from marketplace.routing.select import Candidate, evaluate, pick_balanced, select
from marketplace.routing.spf import LinkChange, RoutingTable
from marketplace.routing.topology import load_topology

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "topologies"
GEANT = load_topology(FIXTURES / "Geant2012.graphml")
TABLE = RoutingTable(GEANT)
CPU, GPU = frozenset({DeviceClass.CPU}), frozenset({DeviceClass.CPU, DeviceClass.GPU})


def by_label(label: str) -> str:
    (node,) = [n for n in GEANT.nodes if GEANT.label(n) == label]
    return node


def test_gpu_job_skips_the_nearer_cpu_only_node():
    src = by_label("NL")
    near, far = by_label("UK"), by_label("GR")
    assert TABLE.latency(src, near) < TABLE.latency(src, far)
    cands = [Candidate("cpu-london", near, 64, CPU), Candidate("gpu-athens", far, 8, GPU)]
    choices = select(TABLE, src, cands, device_class=DeviceClass.GPU)
    assert [c.provider_id for c in choices] == ["gpu-athens"]
    assert choices[0].path[0] == src and choices[0].path[-1] == far
    assert choices[0].latency_ms == pytest.approx(TABLE.latency(src, far))
    # the same with a caller's predicate instead of the class argument
    via_fits = select(TABLE, src, cands, fits=lambda c: DeviceClass.GPU in c.device_classes)
    assert [c.provider_id for c in via_fits] == ["gpu-athens"]
    # and a CPU job does take the nearer node first
    assert select(TABLE, src, cands, device_class=DeviceClass.CPU)[0].provider_id == "cpu-london"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(GEANT.nodes) - 1),
       st.lists(st.tuples(st.integers(0, len(GEANT.nodes) - 1), st.booleans(), st.integers(1, 16)), min_size=1,
                max_size=25))
def test_first_choice_is_the_nearest_provider_that_fits(src_i, placed):
    src = GEANT.nodes[src_i]
    cands = [Candidate(f"p{i}", GEANT.nodes[n], free, GPU if gpu else CPU) for i, (n, gpu, free) in
             enumerate(placed)]
    choices = select(TABLE, src, cands, device_class=DeviceClass.GPU)
    gpus = [c for c in cands if DeviceClass.GPU in c.device_classes]
    assert {c.provider_id for c in choices} == {c.provider_id for c in gpus}
    if gpus:
        best = min(TABLE.latency(src, c.node) for c in gpus)
        assert choices[0].latency_ms == pytest.approx(best)
    assert [c.latency_ms for c in choices] == sorted(c.latency_ms for c in choices)
    for tier in {c.tier for c in choices}:
        assert sum(c.weight for c in choices if c.tier == tier) == pytest.approx(1.0)


def test_latency_bound_and_rejections_are_explained():
    src = by_label("NL")
    nodes = sorted(GEANT.nodes, key=lambda n: TABLE.latency(src, n))
    bound = (TABLE.latency(src, nodes[5]) + TABLE.latency(src, nodes[6])) / 2
    cands = [Candidate(f"p{n}", n, 4, GPU) for n in nodes]
    cands += [Candidate("full", nodes[1], 0, GPU), Candidate("cpu", nodes[1], 4, CPU),
              Candidate("ghost", "no-such-node", 4, GPU), Candidate("small", nodes[2], 4, GPU, data="1 GiB")]
    sel = evaluate(TABLE, src, cands, max_latency_ms=bound, device_class=DeviceClass.GPU,
                   fits=lambda c: c.data != "1 GiB")
    assert [c.node for c in sel.choices] == nodes[:6]
    assert all(c.latency_ms <= bound for c in sel.choices)
    reasons = collections.Counter(r.reason for r in sel.rejected)
    assert reasons == {"latency-bound": len(nodes) - 6, "no-capacity": 1, "device-class": 1, "unknown-node": 1,
                       "does-not-fit": 1}
    assert len(sel.choices) + len(sel.rejected) == len(cands)


def test_unreachable_provider_is_rejected_not_chosen():
    table = RoutingTable(GEANT)
    src = by_label("NL")
    leaf = next(n for n in GEANT.nodes if len({frozenset((l.u, l.v)) for l in GEANT.links if n in (l.u, l.v)}) == 1)
    for l in GEANT.links:
        if leaf in (l.u, l.v):
            table.apply(LinkChange(l.u, l.v, up=False))
    sel = evaluate(table, src, [Candidate("cut", leaf, 4, GPU)])
    assert sel.choices == () and sel.rejected[0].reason == "unreachable"


def test_equal_cost_candidates_share_load_by_free_capacity():
    src = by_label("NL")
    dst = by_label("DE")
    cands = [Candidate("a", dst, 30, GPU), Candidate("b", dst, 10, GPU), Candidate("far", by_label("GR"), 99, GPU)]
    choices = select(TABLE, src, cands)
    assert [(c.provider_id, c.tier) for c in choices] == [("a", 0), ("b", 0), ("far", 1)]
    assert [c.weight for c in choices] == [pytest.approx(0.75), pytest.approx(0.25), 1.0]
    counts = collections.Counter(pick_balanced(choices, k).provider_id for k in range(4000))
    assert set(counts) == {"a", "b"}
    assert counts["a"] / 4000 == pytest.approx(0.75, abs=0.01)  # low-discrepancy: close to exact
    rng_counts = collections.Counter(pick_balanced(choices, random.Random(5)).provider_id for _ in range(1))
    assert set(rng_counts) <= {"a", "b"}
    # deterministic: the same seed or counter picks the same
    assert [pick_balanced(choices, random.Random(s)).provider_id for s in range(50)] == \
        [pick_balanced(choices, random.Random(s)).provider_id for s in range(50)]
    assert pick_balanced(choices, 17) == pick_balanced(choices, 17)


def test_tolerance_groups_near_equal_paths():
    src = by_label("NL")
    a, b = by_label("UK"), by_label("DE")
    la, lb = TABLE.latency(src, a), TABLE.latency(src, b)
    cands = [Candidate("a", a, 10, GPU), Candidate("b", b, 30, GPU)]
    strict = select(TABLE, src, cands)
    assert [c.tier for c in strict] == [0, 1]
    loose = select(TABLE, src, cands, tolerance_ms=abs(la - lb) + 1e-9)
    assert [c.tier for c in loose] == [0, 0]
    assert {c.provider_id: c.weight for c in loose} == {"a": pytest.approx(0.25), "b": pytest.approx(0.75)}


def test_bad_arguments():
    with pytest.raises(UnknownNode):
        select(TABLE, "nowhere", [])
    with pytest.raises(InvalidTopology):
        pick_balanced([], 0)
    with pytest.raises(InvalidTopology):
        select(TABLE, GEANT.nodes[0], [], max_latency_ms=-1)
    with pytest.raises(InvalidTopology):
        pick_balanced(select(TABLE, GEANT.nodes[0], [Candidate("a", GEANT.nodes[1], 1)]), "7")  # type: ignore[arg-type]
    assert not math.isnan(select(TABLE, GEANT.nodes[0], [Candidate("a", GEANT.nodes[0], 1)])[0].latency_ms)
