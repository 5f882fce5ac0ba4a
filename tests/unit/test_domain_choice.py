"""Where an order goes between domains (``routing.domain_choice``) and the regions of a topology
(``routing.regions``): filters, best first, the balanced spread, and the GEANT plan of ``cona up``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from marketplace.errors import TopologyError
from marketplace.resources.model import DeviceClass
from marketplace.routing import DomainSummary, RoutingTable, load_topology
from marketplace.routing.domain_choice import ChoicePolicy, DomainOption, choose, options, weight
from marketplace.federation.launch import DOMAIN_HOMES
from marketplace.routing.regions import plan_domains

pytestmark = pytest.mark.unit

GEANT = Path(__file__).resolve().parents[1] / "fixtures" / "topologies" / "Geant2012.graphml"
GPU = DeviceClass.GPU


def route(origin: int, free: float, *, total: float = 8, price: float = 10, latency: float = 5.0,
          path: tuple[int, ...] | None = None) -> DomainSummary:
    return DomainSummary(origin, GPU, total, free, price, path or (origin,), latency, 1)


LOCAL = DomainOption(1, 2, 8, 10, 1.0, 1, local=True)


def test_options_leave_out_what_cannot_take_the_order():
    routes = [route(2, 4), route(3, 0.5), route(4, 4, price=99), route(5, 4, latency=40), route(1, 4)]
    got = options(routes, own=1, local=LOCAL, need=1, max_price=50, max_latency_ms=30, border_latency_ms=2.0)
    assert [o.domain for o in got] == [1, 2]  # 3: too little free; 4: too dear; 5: too far; 1: our own route
    assert got[1].latency_ms == 7.0 and got[1].hops == 1 and not got[1].local
    assert [o.domain for o in options(routes, own=1, local=LOCAL, need=1, domain=4)] == [4]
    assert options(routes, own=1, local=LOCAL, need=1, domain=1) == [LOCAL]
    assert [o.domain for o in options(routes, own=1, local=None, need=1, exclude=[2])] == [4, 5]


def test_best_first_keeps_the_order_home_when_it_can_else_the_routers_best():
    remote = options([route(2, 8), route(3, 8)], own=1, local=None, need=1)
    assert choose([LOCAL, *remote], ChoicePolicy.BEST_FIRST, 7) is LOCAL
    assert choose(remote, ChoicePolicy.BEST_FIRST, 7).domain == 2
    assert choose([], ChoicePolicy.BEST_FIRST, 7) is None
    assert choose([], ChoicePolicy.BALANCED, 7) is None


def test_balanced_spreads_in_proportion_to_free_capacity_discounted_by_latency():
    opts = [DomainOption(1, 2, 8, 10, 0.0, 1, local=True), DomainOption(2, 6, 8, 10, 0.0, 1),
            DomainOption(3, 4, 8, 10, 10.0, 1)]
    assert weight(opts[2]) == pytest.approx(2.0)  # 4 free, halved at 10 ms
    picks = Counter(choose(opts, ChoicePolicy.BALANCED, k).domain for k in range(1, 1001))
    total = sum(weight(o) for o in opts)
    for o in opts:  # the low-discrepancy sequence follows the weights within about 1 %
        assert picks[o.domain] / 1000 == pytest.approx(weight(o) / total, abs=0.01)
    # deterministic per counter: a replay picks the same
    assert [choose(opts, ChoicePolicy.BALANCED, k) for k in range(50)] == \
        [choose(opts, ChoicePolicy.BALANCED, k) for k in range(50)]
    nothing_free = [DomainOption(2, 0, 8, 10, 0.0, 1)]
    assert choose(nothing_free, ChoicePolicy.BALANCED, 3) is nothing_free[0]


def test_geant_plan_of_three_domains_is_the_one_cona_up_uses():
    table = RoutingTable(load_topology(GEANT))
    plan = plan_domains(table, 3, DOMAIN_HOMES)
    assert plan.homes == ("0", "7", "34")
    assert set(plan.region.values()) == {1, 2, 3} and len(plan.region) == len(table.topology.nodes)
    # the demo providers' nodes: H100 (DE), L40S (FR), MI100 (UK), Ascend (IT), EPYC (NL)
    assert [plan.region[n] for n in ("4", "7", "34", "9", "0")] == [1, 2, 3, 2, 1]
    assert {(link.a, link.b) for link in plan.links} == {(1, 2), (1, 3), (2, 3)}
    for link in plan.links:
        assert link.latency_ms == pytest.approx(float(table.latency(plan.home(link.a), plan.home(link.b))), abs=1e-3)
    assert plan.neighbours(2) == {1: plan.links[0].latency_ms, 3: plan.links[2].latency_ms}


def test_farthest_point_homes_spread_and_every_region_is_connected():
    table = RoutingTable(load_topology(GEANT))
    plan = plan_domains(table, 5)
    assert len(set(plan.homes)) == 5
    topo = table.topology
    for d in plan.domains:  # a Voronoi region of a connected graph is connected
        members = {n for n, r in plan.region.items() if r == d}
        seen, frontier = {plan.home(d)}, [plan.home(d)]
        while frontier:
            x = frontier.pop()
            for link in topo.links:
                for a, b in ((link.u, link.v), (link.v, link.u)):
                    if a == x and b in members and b not in seen:
                        seen.add(b)
                        frontier.append(b)
        assert seen == members


def test_bad_plans_are_refused_naming_the_field():
    table = RoutingTable(load_topology(GEANT))
    with pytest.raises(TopologyError) as err:
        plan_domains(table, 0)
    assert err.value.fields["field"] == "domains"
    with pytest.raises(TopologyError):
        plan_domains(table, 1000)
    with pytest.raises(TopologyError):
        plan_domains(table, 2, ["no-such-node"])
    with pytest.raises(TopologyError):
        plan_domains(table, 2).home(3)
