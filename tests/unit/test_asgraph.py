"""AS graph readers: the real SNAP as-caida head in tests/fixtures/asgraphs (see its SOURCES.md), the
same links written in CAIDA's format, and every kind of bad line, which is refused, counted and
logged with its line number, never a crash."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from marketplace.routing.asgraph import LOGGED_PROBLEMS, AsGraph, parse_as_graph, read_as_graph
from marketplace.routing.domain_policy import Relation
from marketplace.routing.errors import InvalidTopology, TopologyFileError

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "asgraphs" / "as-caida20071105-head.txt"
C, P, R, S = Relation.CUSTOMER, Relation.PROVIDER, Relation.PEER, Relation.SIBLING


@pytest.fixture(scope="module")
def snap() -> AsGraph:
    return read_as_graph(FIXTURE)


def test_real_snap_file_reads_with_its_quirks(snap, caplog):
    rep = snap.report
    assert rep.fmt == "snap" and rep.lines == 1076
    assert (len(snap), snap.number_of_links()) == (1089, 1062)
    # the header line that does not start with '#' is the one refused line, reported with its number
    assert dict(rep.refused) == {"fields": 1}
    assert rep.problems[0].line == 4 and rep.problems[0].text.startswith("-1 (<FromNodeId> is a customer")
    assert rep.contradictions == [] and rep.repeated == 5  # links listed from both ends (e.g. 18581-5006)
    assert snap.relation(8563, 3216) is P  # "8563 3216 -1": 8563 is a customer of 3216
    assert snap.relation(3216, 8563) is C
    assert snap.relation(8563, 21482) is C  # "8563 21482 1": 8563 is a provider of 21482
    assert snap.relation(8434, 3303) is R and snap.relation(5006, 1347) is S
    assert snap.relation(18581, 5006) is P and snap.relation(5006, 18581) is C  # both directions agree
    assert 64626 in snap  # a private AS number is a valid AS
    assert snap.highest_degree() == 6327 and snap.degree(6327) == 111
    with caplog.at_level(logging.WARNING, logger="marketplace.routing.asgraph"):
        read_as_graph(FIXTURE)
    assert "as-caida20071105-head.txt:4: refused (fields)" in caplog.text


def test_the_same_links_in_caida_format_give_the_same_graph(snap, tmp_path):
    lines = ["# source:topology|BGP|20071105|the fixture, rewritten"]
    for a, b, rel in snap.links():
        if rel is C:
            lines.append(f"{a}|{b}|-1")
        elif rel is P:
            lines.append(f"{b}|{a}|-1|bgp")  # the optional fourth field
        elif rel is R:
            lines.append(f"{a}|{b}|0")
    path = tmp_path / "20071105.as-rel.txt"
    path.write_text("\n".join(lines) + "\n")
    caida = read_as_graph(path)
    assert caida.report.fmt == "caida" and not caida.report.refused
    siblings = {(a, b) for a, b, rel in snap.links() if rel is S}  # CAIDA's format has no sibling code
    assert len(siblings) == 4
    assert {(a, b, r) for a, b, r in caida.links()} == {(a, b, r) for a, b, r in snap.links() if (a, b) not in siblings}


CAIDA_BAD = [
    ("1|2", "fields"),
    ("1|2|-1|bgp|extra", "fields"),
    ("x|2|0", "not-an-asn"),
    ("1|2|zero", "not-an-asn"),
    ("0|2|0", "asn-out-of-range"),
    ("1|4294967296|0", "asn-out-of-range"),
    ("7|7|-1", "self-link"),
    ("1|2|1", "unknown-relationship"),  # provider-to-customer is -1 in CAIDA's files; 1 is not a code there
    (b"\xff\xfe|2|0", "not-utf8"),
]


@pytest.mark.parametrize("line, reason", CAIDA_BAD)
def test_bad_caida_lines_are_refused_with_their_reason(line, reason):
    good = ["# comment", "", "3356|15169|-1", "13335|6939|0|bgp,mlp"]
    raw = [ln.encode() if isinstance(ln, str) else ln for ln in good[:2]] + [
        line.encode() if isinstance(line, str) else line] + [ln.encode() for ln in good[2:]]
    g = parse_as_graph(raw, "caida", source="t.txt")
    assert dict(g.report.refused) == {reason: 1} and g.report.problems[0].line == 3
    assert g.relation(3356, 15169) is C and g.relation(13335, 6939) is R and len(g) == 4


def test_bad_snap_lines_and_contradictions_are_reported(caplog):
    text = ["# Directed graph", "1\t2\t-1", "2\t1\t1", "3\t4\t0", "4\t3\t-1", "5 6 2", "5\t6\t7\t8", "9\t10\t3"]
    with caplog.at_level(logging.WARNING, logger="marketplace.routing.asgraph"):
        g = parse_as_graph(text, "snap", source="s.txt")
    rep = g.report
    assert g.relation(1, 2) is P and rep.repeated == 1
    assert len(rep.contradictions) == 1
    c = rep.contradictions[0]
    assert (c.a, c.b, c.first, c.first_line, c.other, c.line) == (4, 3, R, 4, P, 5)
    assert g.relation(3, 4) is R  # the first statement is kept
    assert g.relation(5, 6) is S  # any whitespace separates fields
    assert dict(rep.refused) == {"fields": 1, "unknown-relationship": 1}
    assert "s.txt:5: AS4-AS3 said to be peer on line 4" in caplog.text


def test_a_file_of_garbage_is_counted_not_fatal(tmp_path, caplog):
    path = tmp_path / "garbage.txt"
    path.write_bytes(b"\x00\x01 garbage\n" * (LOGGED_PROBLEMS + 30) + b"1\t2\t0\n")
    with caplog.at_level(logging.WARNING, logger="marketplace.routing.asgraph"):
        g = read_as_graph(path)
    assert len(g) == 2 and sum(g.report.refused.values()) == LOGGED_PROBLEMS + 30
    assert len(g.report.problems) == LOGGED_PROBLEMS + 30
    assert caplog.text.count("refused (fields):") == LOGGED_PROBLEMS  # the rest are only counted


def test_file_and_format_errors():
    with pytest.raises(TopologyFileError, match="cannot read AS graph"):
        read_as_graph("/nonexistent/as-rel.txt")
    with pytest.raises(TopologyFileError, match="unknown AS graph format"):
        parse_as_graph([], "bgpdump")
    with pytest.raises(InvalidTopology, match="both"):
        AsGraph.from_links([(1, 2, C), (2, 1, C)])
    with pytest.raises(InvalidTopology, match="itself"):
        AsGraph.from_links([(3, 3, R)])
    with pytest.raises(InvalidTopology, match="empty"):
        AsGraph().highest_degree()


def test_highest_degree_ties_go_to_the_lowest_as_and_routers_carry_the_relations():
    g = AsGraph.from_links([(5, 1, C), (5, 2, R), (7, 3, P), (7, 4, S)])
    assert g.highest_degree() == 5
    routers = g.routers(latency_ms=2.5)
    assert set(routers) == {1, 2, 3, 4, 5, 7}
    assert routers[5].neighbors[1].relation is C and routers[1].neighbors[5].relation is P
    assert routers[7].neighbors[3].relation is P and routers[7].neighbors[4].relation is S
    assert routers[2].neighbors[5].latency_ms == 2.5
