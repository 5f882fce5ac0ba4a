"""The ``LoadLatency`` score and the ``balanced`` policy: spread by advertised load and path latency,
while the devices inside a provider are still chosen by FGD."""

from __future__ import annotations

import dataclasses

import pytest

from marketplace.matching import InMemoryBinder, MatchingConfig, Outcome, Scheduler
from marketplace.matching.plugins.scores import LOAD_LATENCY_SCALE_MS
from tests.unit.matching_fixtures import gpu, order, provider, routing

pytestmark = pytest.mark.unit


def test_the_less_loaded_of_two_equal_providers_wins_unless_it_is_much_farther():
    rt = routing()
    near = rt.nodes[0]
    by_load = MatchingConfig(score=(("LoadLatency", 1.0),))
    busy = provider("openb-node-0000", "busy", attach_node=near, price=10, load=0.8)
    idle = provider("openb-node-0000", "idle", attach_node=near, price=10, load=0.1)
    o = order("o1", gpu(), buyer=near)
    assert Scheduler([busy, idle], routing=rt, config=by_load).explain(o).best == "idle"
    # an idle provider a long way off loses to the busy near one: LOAD_LATENCY_SCALE_MS of extra
    # latency weighs as much as a fully loaded provider
    far = max(rt.topology.nodes, key=lambda n: float(rt.latency(near, n)))
    assert float(rt.latency(near, far)) > LOAD_LATENCY_SCALE_MS * 0.7
    far_idle = dataclasses.replace(idle, attach_node=far)
    assert Scheduler([busy, far_idle], routing=rt, config=by_load).explain(o).best == "busy"


def test_balanced_policy_spreads_a_stream_where_the_default_packs():
    rt = routing()
    node = rt.nodes[0]
    ps = [provider("openb-node-0000", f"p{i}", attach_node=node, price=10) for i in range(4)]
    placed = {}
    for policy in ("default", "balanced"):
        sched = Scheduler(ps, routing=rt, config=MatchingConfig(policy=policy), binder=InMemoryBinder())
        for k in range(4):
            sched.submit(order(f"o{k}", gpu(), buyer=node))
        result = sched.schedule_round(0.0)
        assert all(d.outcome == Outcome.BOUND for d in result.decisions)
        placed[policy] = {d.provider_id for d in result.decisions}
    assert len(placed["balanced"]) == 4  # one order per provider
    assert len(placed["balanced"]) > len(placed["default"])


def test_the_balanced_policy_is_registered_and_recorded():
    cfg = MatchingConfig(policy="balanced")
    assert ("LoadLatency", 6.0) in cfg.profile.score
    assert cfg.canonical()["policy"] == "balanced"
    assert MatchingConfig.from_dict({"policy": "balanced"}).profile == cfg.profile


def test_inside_a_provider_the_balanced_policy_places_devices_as_the_fragmentation_rule_does():
    """LoadLatency chooses among providers only: on one node, fractional GPU orders share devices
    exactly where the default policy (FGD) puts them, packed rather than spread over the GPUs."""
    rt = routing()
    node = rt.nodes[0]
    shares = (300, 500, 250, 700, 400, 200, 600, 350)
    slots = {}
    for policy in ("default", "balanced"):
        sched = Scheduler([provider("openb-node-0023", "v100x8", attach_node=node, price=10)], routing=rt,
                          config=MatchingConfig(policy=policy), binder=InMemoryBinder())
        placed = []
        for k, share in enumerate(shares):  # one order a round: each sees the devices the previous took
            sched.submit(order(f"o{k}", gpu(share=share), buyer=node))
            (decision,) = sched.schedule_round(float(k)).decisions
            assert decision.outcome == Outcome.BOUND, decision
            placed.append(decision.placement.slots)
        slots[policy] = placed
    assert slots["balanced"] == slots["default"]
    devices = {slot for placement in slots["balanced"] for slot, _ in placement}
    assert len(devices) < len(shares)  # packed: orders share GPUs
