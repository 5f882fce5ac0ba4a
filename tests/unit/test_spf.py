"""Shortest paths: scipy backend against networkx (the oracle, tests only) on every real
topology and on random graphs; incremental updates equal full recomputation."""

from __future__ import annotations

import math
import random
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.routing.errors import InvalidTopology, UnknownLink, UnknownNode, Unreachable
from marketplace.routing.generate import regional_topology
from marketplace.routing.spf import LinkChange, NodeChange, RoutingTable
from marketplace.routing.topology import Topology, TopologyBuilder, from_edges, load_topology

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "topologies"
ALL = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".graphml", ".gml"))


def oracle(topo: Topology, down_nodes: frozenset[str] = frozenset()) -> nx.Graph:
    """A networkx graph of what is up: parallel links collapse to their fastest one that is up."""
    g = nx.Graph()
    g.add_nodes_from(topo.nodes)
    for l in topo.links:
        if not l.up or l.u in down_nodes or l.v in down_nodes:
            continue
        if not g.has_edge(l.u, l.v) or g[l.u][l.v]["w"] > l.latency_ms:
            g.add_edge(l.u, l.v, w=l.latency_ms)
    return g


def assert_matches_oracle(table: RoutingTable, g: nx.Graph, sources) -> None:
    for s in sources:
        ref = nx.single_source_dijkstra_path_length(g, s, weight="w")
        dist = table.distances_from(s)
        for node, i in table.node_index.items():
            if node in ref:
                assert dist[i] == pytest.approx(ref[node], rel=1e-9, abs=1e-9), (s, node)
            else:
                assert dist[i] == math.inf, (s, node)


def assert_paths_valid(table: RoutingTable, g: nx.Graph, source: str, targets) -> None:
    for t in targets:
        d = table.distances_from(source)[table.node_index[t]]
        if d == math.inf:
            with pytest.raises(Unreachable):
                table.path(source, t)
            continue
        p = table.path(source, t)
        assert p[0] == source and p[-1] == t
        assert sum(g[a][b]["w"] for a, b in zip(p, p[1:])) == pytest.approx(d, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", ALL)
def test_all_pairs_match_networkx(name):
    topo = load_topology(FIXTURES / name)
    table = RoutingTable(topo)
    g = oracle(topo)
    assert_matches_oracle(table, g, topo.nodes)
    assert_paths_valid(table, g, topo.nodes[0], topo.nodes)
    assert table.latency(topo.nodes[0], topo.nodes[-1]) == pytest.approx(
        nx.dijkstra_path_length(g, topo.nodes[0], topo.nodes[-1], weight="w"))


def test_parallel_links_route_over_the_faster_one_and_fail_over():
    topo = load_topology(FIXTURES / "Cogentco.gml")
    slow = topo.with_link_change("80", "81", latency_ms=50.0, key=1)
    table = RoutingTable(slow)
    fast = slow.links_between("80", "81")[0].latency_ms
    assert table.latency("80", "81") == pytest.approx(fast)
    table.apply(LinkChange("80", "81", up=False, key=0))
    g = oracle(table.topology)
    assert table.latency("80", "81") == pytest.approx(nx.dijkstra_path_length(g, "80", "81", weight="w"))
    assert table.latency("80", "81") <= 50.0
    table.apply(LinkChange("80", "81", up=True, key=0))
    assert table.latency("80", "81") == pytest.approx(fast)


def random_changes(topo: Topology, rng: random.Random, count: int):
    for _ in range(count):
        l = rng.choice(topo.links)
        r = rng.random()
        if r < 0.25:
            yield LinkChange(l.u, l.v, up=False)
        elif r < 0.45:
            yield LinkChange(l.u, l.v, latency_ms=l.latency_ms * rng.uniform(1.0, 10.0))
        elif r < 0.65:
            yield LinkChange(l.u, l.v, latency_ms=l.latency_ms * rng.uniform(0.05, 1.0))
        elif r < 0.8:
            yield LinkChange(l.u, l.v, up=True)
        else:
            yield NodeChange(rng.choice(topo.nodes), up=rng.random() < 0.5)


@pytest.mark.parametrize("name", ALL)
def test_incremental_equals_full_and_networkx_after_random_changes(name):
    topo = load_topology(FIXTURES / name)
    rng = random.Random(name)
    table = RoutingTable(topo)
    sources = rng.sample(topo.nodes, min(12, len(topo.nodes)))
    for s in sources:
        table.distances_from(s)
    down: set[str] = set()
    incremental = 0
    for step, change in enumerate(random_changes(topo, rng, 150)):
        stats = table.apply(change)
        incremental += stats.incremental
        if isinstance(change, NodeChange):
            (down.discard if change.up else down.add)(change.node)
        if step % 10 == 9:
            for s in sources:
                fresh = RoutingTable(table.topology)
                for n in down:
                    fresh.apply(NodeChange(n, up=False))
                np.testing.assert_allclose(table.distances_from(s), fresh.distances_from(s), rtol=1e-9)
            g = oracle(table.topology, frozenset(down))
            assert_matches_oracle(table, g, sources[:3])
            assert_paths_valid(table, g, sources[0], topo.nodes)
    assert incremental > 0  # the incremental path really ran


def test_incremental_on_a_regional_graph_matches_full():
    bases = [load_topology(FIXTURES / "Cogentco.graphml"), load_topology(FIXTURES / "Geant2012.graphml")]
    topo = regional_topology(bases, 2000, seed=3)
    table = RoutingTable(topo)
    rng = random.Random(7)
    sources = rng.sample(topo.nodes, 4)
    for s in sources:
        table.distances_from(s)
    inc = 0
    for change in random_changes(topo, rng, 120):
        inc += table.apply(change).incremental
    reference = RoutingTable(table.topology)
    down = {n for n, up in zip(topo.nodes, table._node_up) if not up}
    for n in down:
        reference.apply(NodeChange(n, up=False))
    for s in sources:
        np.testing.assert_allclose(table.distances_from(s), reference.distances_from(s), rtol=1e-9)
    assert inc > 0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    edges=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39), st.floats(0.01, 100.0)), min_size=1,
                   max_size=120),
    ops=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 4), st.floats(0.01, 100.0)), max_size=25),
)
def test_random_graphs_match_networkx_through_random_changes(n, edges, ops):
    triples = [(f"n{u % n}", f"n{v % n}", w) for u, v, w in edges if u % n != v % n]
    if not triples:
        return
    topo = from_edges("random", triples)
    table = RoutingTable(topo)
    for s in topo.nodes[:3]:
        table.distances_from(s)
    down: set[str] = set()
    for pick, kind, w in ops:
        l = topo.links[pick % len(topo.links)]
        if kind == 0:
            change = LinkChange(l.u, l.v, up=False, key=l.key)
        elif kind == 1:
            change = LinkChange(l.u, l.v, up=True, key=l.key)
        elif kind == 2:
            change = LinkChange(l.u, l.v, latency_ms=w, key=l.key)
        else:
            node = topo.nodes[pick % len(topo.nodes)]
            change = NodeChange(node, up=kind == 4)
            (down.discard if change.up else down.add)(node)
        table.apply(change)
    g = oracle(table.topology, frozenset(down))
    assert_matches_oracle(table, g, topo.nodes)
    assert_paths_valid(table, g, topo.nodes[0], topo.nodes)


def test_batch_with_raises_and_lowers_together():
    topo = from_edges("sq", [("a", "b", 1.0), ("b", "c", 1.0), ("a", "d", 5.0), ("d", "c", 5.0)])
    table = RoutingTable(topo)
    assert table.path("a", "c") == ["a", "b", "c"]
    stats = table.apply([LinkChange("a", "b", latency_ms=20.0), LinkChange("a", "d", latency_ms=0.5)])
    assert stats.incremental >= 1 and stats.full == 0
    assert table.path("a", "c") == ["a", "d", "c"] and table.latency("a", "c") == pytest.approx(5.5)


def test_node_failure_and_recovery():
    topo = from_edges("line", [("a", "b", 1.0), ("b", "c", 1.0), ("a", "x", 3.0), ("x", "c", 3.0)])
    table = RoutingTable(topo)
    table.apply(NodeChange("b", up=False))
    assert table.path("a", "c") == ["a", "x", "c"] and not table.node_up("b")
    with pytest.raises(Unreachable) as e:
        table.latency("a", "b")
    assert e.value.target == "b"
    table.apply(NodeChange("b", up=True))
    assert table.latency("a", "c") == pytest.approx(2.0)


def test_errors_name_the_node_or_link():
    table = RoutingTable(from_edges("t", [("a", "b", 1.0)]))
    with pytest.raises(UnknownNode, match="'zz'"):
        table.distances_from("zz")
    with pytest.raises(UnknownLink):
        table.apply(LinkChange("a", "a"))
    with pytest.raises(InvalidTopology, match="latency"):
        table.apply(LinkChange("a", "b", latency_ms=math.nan))
    t2 = TopologyBuilder("iso").add_node("a").add_node("b").build()
    with pytest.raises(Unreachable):
        RoutingTable(t2).path("a", "b")


def test_distances_view_is_read_only_and_cache_is_bounded():
    topo = load_topology(FIXTURES / "Abilene.graphml")
    table = RoutingTable(topo, max_cached_sources=3)
    d = table.distances_from("0")
    with pytest.raises(ValueError):
        d[1] = 0.0
    for s in topo.nodes:
        table.distances_from(s)
    assert table.cached_sources() == list(topo.nodes[-3:])
