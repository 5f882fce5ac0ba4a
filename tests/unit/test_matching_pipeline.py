"""The matching pipeline: config, every filter's reason, refusal at once, determinism, bind."""

from __future__ import annotations

import dataclasses
import random

import pytest

from marketplace.errors import Unschedulable
from marketplace.matching import (Code, InMemoryBinder, MatchingConfig, Outcome, ProviderStatus, Scheduler)
from marketplace.matching.errors import MatchingConfigError
from marketplace.matching import trace
from tests.unit.matching_fixtures import gpu, nodes, order, pods, provider, routing, workload

pytestmark = pytest.mark.unit


def test_config_from_dict_keeps_plugin_order_and_weights():
    cfg = MatchingConfig.from_dict({"filter": ["ProviderStatus", "HardwareFit", "FreeCapacity"],
                                    "score": {"Price": 3, "Fragmentation": 1.5}})
    assert cfg.filter == ("ProviderStatus", "HardwareFit", "FreeCapacity")
    assert cfg.score == (("Price", 3.0), ("Fragmentation", 1.5))
    s = Scheduler([provider("openb-node-0000")], config=cfg)
    assert [f.name for f in s.filters] == ["ProviderStatus", "HardwareFit", "FreeCapacity"]
    assert [(p.name, w) for p, w in s.scorer.scores] == [("Price", 3.0), ("Fragmentation", 1.5)]


def test_config_rejects_unknown_plugins_and_keys_with_a_hint():
    with pytest.raises(MatchingConfigError) as e:
        MatchingConfig.from_dict({"score": {"Fragmentaton": 1}})
    assert "Fragmentation" in str(e.value)
    with pytest.raises(MatchingConfigError, match="unknown matching config key"):
        MatchingConfig.from_dict({"ageing": 3})
    with pytest.raises(MatchingConfigError):
        MatchingConfig(score=(("Price", -1.0),))


def test_weights_change_the_choice():
    # two providers on different Cogentco nodes; one cheap and far, one dear and near
    rt = routing()
    near, far = rt.nodes[0], rt.nodes[100]
    ps = [provider("openb-node-0000", "cheap-far", attach_node=far, price=10),
          provider("openb-node-0001", "dear-near", attach_node=near, price=50)]
    by_price = Scheduler(ps, routing=rt, config=MatchingConfig(score=(("Price", 1.0),)))
    by_lat = Scheduler(ps, routing=rt, config=MatchingConfig(score=(("PathLatency", 1.0),)))
    o = order("o1", gpu(), buyer=near)
    assert by_price.explain(o).best == "cheap-far"
    assert by_lat.explain(o).best == "dear-near"


def _reasons(s: Scheduler, o, pid: str) -> set[tuple[str, str, Code]]:
    v = s.explain(o).by_provider()[pid]
    assert not v.feasible
    for r in v.rejections:
        assert r.message and r.reason
    return {(r.plugin, r.reason, r.code) for r in v.rejections}


def test_every_filter_says_why():
    rt = routing()
    home = rt.nodes[0]
    ps = [
        provider("openb-node-0000", "p100-2", attach_node=home, price=100, domain=1, stake=10),
        provider("openb-node-0143", "v100-1", attach_node=rt.nodes[100], price=100, domain=2, stake=10),
        provider("openb-node-0001", "draining", attach_node=home, price=100, domain=1, stake=10,
                 status=ProviderStatus.DRAINING),
        provider("openb-node-0002", "retired", attach_node=home, price=100, domain=1, stake=10,
                 status=ProviderStatus.RETIRED),
        provider("openb-node-0003", "busy", attach_node=home, price=100, domain=1, stake=10, load=0.95,
                 lsa_at=0.0),
        provider("openb-node-0004", "poor", attach_node=home, price=100, domain=1, stake=1),
        provider("openb-node-0005", "unpriced", attach_node=home, domain=1, stake=10),
    ]
    ps = [dataclasses.replace(p, lsa_at=0.0) for p in ps]
    s = Scheduler(ps, routing=rt, config=MatchingConfig(min_stake=5, max_lsa_age_s=30.0))
    # hardware (delegated to fit): class, count, memory, cpu
    cpu_job = order("c", trace.pod_requirement(200000, 1024, 0, 0))
    assert ("HardwareFit", "count", Code.UNRESOLVABLE) in _reasons(s, cpu_job, "p100-2")
    assert ("HardwareFit", "count", Code.UNRESOLVABLE) in _reasons(s, order("g", gpu(4)), "p100-2")
    assert ("HardwareFit", "memory", Code.UNRESOLVABLE) in _reasons(
        s, order("m", gpu(min_system_memory_mib=10**7)), "p100-2")
    assert ("HardwareFit", "vram", Code.UNRESOLVABLE) in _reasons(s, order("v", gpu(min_memory_mib=8192)), "p100-2")
    # domain, latency, price
    far = order("far", gpu(max_latency_ms=1.0, domain=1), buyer=home)
    got = _reasons(s, far, "v100-1")
    assert {("DomainLatency", "domain", Code.UNRESOLVABLE), ("DomainLatency", "latency", Code.UNRESOLVABLE)} <= got
    cheap = order("cheap", gpu(max_price=50))
    assert ("PriceCeiling", "price", Code.UNRESOLVABLE) in _reasons(s, cheap, "p100-2")
    assert ("PriceCeiling", "no-price", Code.UNRESOLVABLE) in _reasons(s, cheap, "unpriced")
    # status, stake, load, stale LSA: could change, so Unschedulable
    o = order("o", gpu())
    assert ("ProviderStatus", "draining", Code.UNSCHEDULABLE) in _reasons(s, o, "draining")
    assert ("ProviderStatus", "retired", Code.UNRESOLVABLE) in _reasons(s, o, "retired")
    assert ("ProviderStatus", "stake", Code.UNSCHEDULABLE) in _reasons(s, o, "poor")
    assert ("ProviderLoad", "overloaded", Code.UNSCHEDULABLE) in _reasons(s, o, "busy")
    late = s.explain(o, now=100.0).by_provider()["busy"]
    assert any(r.reason == "stale-lsa" and "100.0 s old" in r.message for r in late.rejections)
    # fractional share and free capacity: take the P100 node's GPUs, then ask again
    s.submit(order("big", gpu(2, domain=1, max_price=100)))
    s.submit(order("half", gpu(1, 600, domain=1, max_price=100)))
    r = s.schedule_round(0.0)
    assert r.by_order()["big"].outcome == Outcome.BOUND
    after = _reasons(s, order("frac", gpu(1, 500)), r.by_order()["big"].provider_id)
    assert ("FreeCapacity", "free", Code.UNSCHEDULABLE) in after


def test_never_satisfiable_order_is_refused_at_once_with_reasons():
    s = Scheduler([provider("openb-node-0000"), provider("openb-node-0143")])
    with pytest.raises(Unschedulable) as e:
        s.submit(order("too-big", gpu(16)))
    exc = e.value
    assert {r.provider_id for r in exc.reasons} == {"openb-node-0000", "openb-node-0143"}
    assert all(r.code == Code.UNRESOLVABLE for r in exc.reasons)
    assert any("needs 16 GPU, has 2" in r.message for r in exc.reasons)
    assert "HardwareFit:count=2" in exc.to_dict()["reasons"]
    assert len(s.queue) == 0
    # merely busy is not refused: it waits
    s.submit(order("a", gpu(2)))
    s.submit(order("b", gpu(2)))
    res = s.schedule_round(1.0)
    assert sorted(d.outcome.value for d in res.decisions) == ["bound", "pending"]
    assert len(s.queue) == 1


def _market(shuffle_seed: int | None):
    ps = trace.providers(nodes(), 300, routing().nodes)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(ps)
    s = Scheduler(ps, routing=routing(), workload=workload(), config=MatchingConfig(batch_size=64, seed=7))
    for o in trace.orders(pods(), 400, routing().nodes):
        s.submit(o)
    return s, [s.schedule_round(1e7 + k) for k in range(3)]


def test_same_inputs_same_decisions_and_digest_whatever_the_provider_order():
    s1, r1 = _market(None)
    s2, r2 = _market(1)
    assert [r.digest() for r in r1] == [r.digest() for r in r2]
    assert [r.decisions for r in r1] == [r.decisions for r in r2]
    assert r1[0].count(Outcome.BOUND) == 64
    # another seed or another clock gives another digest
    s3 = Scheduler(trace.providers(nodes(), 300, routing().nodes), routing=routing(), workload=workload(),
                   config=MatchingConfig(batch_size=64, seed=8))
    for o in trace.orders(pods(), 400, routing().nodes):
        s3.submit(o)
    assert s3.schedule_round(1e7).digest() != r1[0].digest()


def test_one_bind_call_per_round_and_capacity_accounting():
    binder = InMemoryBinder()
    s = Scheduler(trace.providers(nodes(), 50), binder=binder, workload=workload(),
                  config=MatchingConfig(batch_size=100))
    orders = trace.orders(pods(), 100)
    for o in orders:
        s.submit(o)
    r = s.schedule_round(1e7)
    assert binder.batches == [(1, r.count(Outcome.BOUND))]
    used = sum(d.placement.slots and sum(m for _, m in d.placement.slots) or 0
               for d in r.decisions if d.outcome == Outcome.BOUND)
    assert s.index.used_milli(trace.DeviceClass.GPU) == used
    for oid in list(binder.leases):
        assert s.release(oid) is True
        assert s.release(oid) is False
    assert s.index.used_milli(trace.DeviceClass.GPU) == 0


def test_stops_scoring_after_enough_feasible_providers_and_rotates():
    s = Scheduler(trace.providers(nodes(), 1000), workload=workload(),
                  config=MatchingConfig(percentage_of_providers_to_score=10, min_feasible_to_score=50))
    assert s.num_to_score() == 100
    s.submit(order("x", gpu(1, 500)))
    r = s.schedule_round(0.0)
    assert r.examined < 1000 and s.next_start == r.examined % 1000
    start = s.next_start
    s.submit(order("y", gpu(1, 500)))
    s.schedule_round(1.0)
    assert s.next_start != start
