"""Topology Zoo loaders: every fixture loads with the right counts, quirks and latency model."""

from __future__ import annotations

import collections
import math
from pathlib import Path

import networkx as nx
import pytest

from marketplace.errors import TopologyError
from marketplace.routing.errors import InvalidTopology, TopologyFileError, UnknownLink, UnknownNode
from marketplace.routing.topology import (
    FIBRE_MS_PER_KM,
    FIXED_HOP_LATENCY_MS,
    MIN_LINK_LATENCY_MS,
    TopologyBuilder,
    load_gml,
    load_graphml,
    load_topology,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "topologies"
ALL = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".graphml", ".gml"))
COUNTS = {  # nodes, links (parallel links counted), as published by the Topology Zoo
    "Abilene.graphml": (11, 14),
    "Cogentco.gml": (197, 245),
    "Cogentco.graphml": (197, 245),
    "Geant2012.graphml": (40, 61),
    "Internet2.graphml": (20, 26),
    "Uninett2010.graphml": (74, 101),
}


def test_every_shared_topology_has_a_fixture_copy():
    shared = Path("/work/shared/data/topologies")
    if shared.is_dir():
        assert {p.name for p in shared.iterdir()} <= set(ALL)
    assert set(COUNTS) == set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_loads_with_published_counts_and_valid_latencies(name):
    topo = load_topology(FIXTURES / name)
    assert (len(topo.nodes), len(topo.links)) == COUNTS[name]
    assert all(topo.node_index[n] == i for i, n in enumerate(topo.nodes))
    for link in topo.links:
        assert math.isfinite(link.latency_ms) and link.latency_ms >= MIN_LINK_LATENCY_MS
        assert link.latency_source in ("geo", "median", "fixed")


@pytest.mark.parametrize("name", [n for n in ALL if n.endswith(".graphml")])
def test_graphml_matches_networkx_reader(name):
    # networkx is the oracle for structure (tests only); the loader itself uses xml.etree
    ref = nx.read_graphml(FIXTURES / name, force_multigraph=True)
    topo = load_graphml(FIXTURES / name)
    assert set(topo.nodes) == set(ref.nodes)
    mine = collections.Counter(frozenset((l.u, l.v)) for l in topo.links)
    theirs = collections.Counter(frozenset((u, v)) for u, v, _ in ref.edges(keys=True))
    assert mine == theirs
    for n, data in ref.nodes(data=True):
        assert topo.label(n) == data.get("label", "")


def test_cogentco_gml_fails_in_networkx_but_loads_here_with_its_parallel_links():
    with pytest.raises(nx.NetworkXError):
        nx.read_gml(FIXTURES / "Cogentco.gml")
    gml = load_gml(FIXTURES / "Cogentco.gml")
    graphml = load_graphml(FIXTURES / "Cogentco.graphml")
    pairs = collections.Counter(frozenset((l.u, l.v)) for l in gml.links)
    assert sorted(tuple(sorted(p)) for p, c in pairs.items() if c > 1) == [("143", "42"), ("80", "81")]
    assert {l.key for l in gml.links if frozenset((l.u, l.v)) == frozenset(("80", "81"))} == {0, 1}
    assert gml.nodes == graphml.nodes  # integer GML ids and string GraphML ids agree in decimal
    assert sorted((l.u, l.v) for l in gml.links) == sorted((l.u, l.v) for l in graphml.links)
    # repeated labels: 11 external nodes all labelled "None" still load as distinct nodes
    labels = collections.Counter(gml.label(n) for n in gml.nodes)
    assert labels["None"] == 11


def test_repeated_labels_in_uninett_are_distinct_nodes():
    topo = load_graphml(FIXTURES / "Uninett2010.graphml")
    labels = collections.Counter(topo.label(n) for n in topo.nodes)
    assert labels["UiO"] == 2 and labels["UiTo"] == 2


def test_latency_is_great_circle_at_fibre_speed():
    topo = load_graphml(FIXTURES / "Abilene.graphml")
    ny, chi = "0", "1"
    assert (topo.label(ny), topo.label(chi)) == ("New York", "Chicago")
    a, b = topo.node_info[ny], topo.node_info[chi]
    # spherical law of cosines: an independent formula for the same great circle
    p1, p2, dl = map(math.radians, (a.lat, b.lat, b.lon - a.lon))
    km = 6371.0088 * math.acos(math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl))
    (link,) = topo.links_between(ny, chi)
    assert link.latency_source == "geo"
    assert link.latency_ms == pytest.approx(km * FIBRE_MS_PER_KM, rel=1e-9)
    assert 1100 < km < 1200 and 5.4 < link.latency_ms < 5.9  # NY-Chicago is ~1,145 km


def test_missing_coordinates_fall_back_to_the_median_geo_latency():
    topo = load_graphml(FIXTURES / "Geant2012.graphml")
    geo = sorted(l.latency_ms for l in topo.links if l.latency_source == "geo")
    median = (geo[len(geo) // 2] + geo[(len(geo) - 1) // 2]) / 2
    fallback = [l for l in topo.links if l.latency_source == "median"]
    assert len(fallback) == 3
    assert all(l.latency_ms == pytest.approx(median) for l in fallback)
    for l in fallback:
        ends = [topo.node_info[l.u], topo.node_info[l.v]]
        assert any(e.lat is None for e in ends)


def test_graph_without_any_coordinates_gets_the_fixed_hop_latency():
    topo = load_graphml(FIXTURES / "Internet2.graphml")
    assert all(topo.node_info[n].lat is None for n in topo.nodes)
    assert {(l.latency_ms, l.latency_source) for l in topo.links} == {(FIXED_HOP_LATENCY_MS, "fixed")}


def test_capacity_from_link_speed():
    topo = load_graphml(FIXTURES / "Geant2012.graphml")
    speeds = collections.Counter(l.bandwidth_mbps for l in topo.links)
    assert speeds == {None: 22, 10_000.0: 26, 2_500.0: 5, 1_000.0: 6, 155.0: 2}
    uninett = load_graphml(FIXTURES / "Uninett2010.graphml")
    assert collections.Counter(l.bandwidth_mbps for l in uninett.links) == {1000.0: 72, 10_000.0: 15,
                                                                             2500.0: 11, None: 3}
    assert all(l.bandwidth_mbps is None for l in load_graphml(FIXTURES / "Abilene.graphml").links)


def test_link_speed_without_raw_uses_units(tmp_path):
    text = (FIXTURES / "Geant2012.graphml").read_text()
    stripped = text.replace('<data key="d42">10000000000.0</data>', "")
    f = tmp_path / "g.graphml"
    f.write_text(stripped)
    assert collections.Counter(l.bandwidth_mbps for l in load_graphml(f).links)[10_000.0] == 26


def test_with_link_change_is_a_copy():
    topo = load_graphml(FIXTURES / "Abilene.graphml")
    down = topo.with_link_change("0", "1", up=False)
    assert all(l.up for l in topo.links)
    assert [l.up for l in down.links_between("0", "1")] == [False]
    slow = topo.with_link_change("1", "0", latency_ms=42.0)
    assert slow.links_between("0", "1")[0].latency_ms == 42.0
    with pytest.raises(UnknownLink):
        topo.with_link_change("0", "5")
    with pytest.raises(UnknownNode) as e:
        topo.with_link_change("0", "nope")
    assert "nope" in str(e.value) and isinstance(e.value, LookupError) and isinstance(e.value, TopologyError)


# ---------------------------------------------------------------------------- errors name the place


def test_malformed_xml_names_file_and_line(tmp_path):
    f = tmp_path / "broken.graphml"
    lines = (FIXTURES / "Abilene.graphml").read_text().splitlines()
    lines[60] = lines[60].replace("</data>", "</dta>")
    f.write_text("\n".join(lines))
    with pytest.raises(TopologyFileError) as e:
        load_graphml(f)
    assert e.value.file == str(f) and e.value.line == 61 and "broken.graphml:61" in str(e.value)


def test_graphml_edge_to_unknown_node_names_the_edge(tmp_path):
    f = tmp_path / "dangling.graphml"
    f.write_text((FIXTURES / "Abilene.graphml").read_text().replace('target="10"', 'target="99"', 1))
    with pytest.raises(TopologyFileError) as e:
        load_graphml(f)
    assert "99" in str(e.value) and e.value.element.startswith("edge #")


def test_gml_errors_name_the_line(tmp_path):
    f = tmp_path / "broken.gml"
    lines = (FIXTURES / "Cogentco.gml").read_text().splitlines()
    f.write_text("\n".join(lines[:-1]))  # drop the closing ']' of the graph
    with pytest.raises(TopologyFileError, match="unclosed"):
        load_gml(f)
    lines2 = list(lines)
    lines2[40] = "    Longitude @@"
    f.write_text("\n".join(lines2))
    with pytest.raises(TopologyFileError) as e:
        load_gml(f)
    assert e.value.line == 41
    edge_line = next(i for i, l in enumerate(lines) if l.strip() == "edge [")
    lines3 = list(lines)
    lines3[edge_line + 1] = "    source 9999"
    f.write_text("\n".join(lines3))
    with pytest.raises(TopologyFileError, match="9999") as e:
        load_gml(f)
    assert f"line {edge_line + 1}" in str(e.value)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(TopologyFileError, match="cannot read"):
        load_graphml(tmp_path / "nope.graphml")
    with pytest.raises(TopologyFileError, match="unknown topology format"):
        load_topology(tmp_path / "x.json")


def test_builder_rejects_bad_input():
    b = TopologyBuilder("t").add_node("a").add_node("b")
    with pytest.raises(InvalidTopology, match="duplicate"):
        b.add_node("a")
    with pytest.raises(UnknownNode):
        b.add_link("a", "zz", 1.0)
    b.add_link("a", "b", -1.0)
    with pytest.raises(InvalidTopology, match="latency"):
        b.build()
    assert TopologyBuilder("t").add_node("a").add_node("b").add_link("a", "b", 0.0).build().links[0].latency_ms \
        == MIN_LINK_LATENCY_MS
