"""AS graphs with business relationships, read from CAIDA's and SNAP's files.

An ``AsGraph`` holds, for every AS, what each neighbour is to it (``Relation``: customer,
provider, peer, sibling); both ends of a link are kept consistent (if B is A's customer,
A is B's provider).

Formats:

- **CAIDA AS relationships** (serial-1/serial-2 ``*.as-rel.txt``): ``as1|as2|rel``,
  optionally a fourth ``|source`` field; ``rel`` -1 means as1 is the provider of as2,
  0 that they are peers. Lines starting with ``#`` are comments.
- **SNAP as-caida** (``as-caidaYYYYMMDD.txt``): ``from<TAB>to<TAB>rel`` (any whitespace);
  ``rel`` -1 means *from* is a customer of *to*, 1 its provider, 0 a peer, 2 a sibling;
  each link is listed from both ends. Lines starting with ``#`` are comments (the real
  files also hold a header line that does not start with ``#``: it is refused like any
  other bad line).

A bad line never stops a read: it is refused with a reason (``fields``, ``not-an-asn``,
``asn-out-of-range``, ``self-link``, ``unknown-relationship``, ``not-utf8``), counted in
``report.refused`` and logged with its line number (the first ``LOGGED_PROBLEMS`` of them;
all are kept in ``report.problems``). A link listed again with another relationship
(e.g. both ends claim to be the other's customer) is a **contradiction**: the first
statement is kept and both line numbers are reported. The same link stated again the same
way (SNAP's second direction) is counted in ``report.repeated``.

Invariants: no AS is its own neighbour; ``relation(a, b)`` is ``relation(b, a).reverse``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from marketplace.routing.domain_policy import DomainConfig, Relation
from marketplace.routing.domain_values import MAX_ASN, Neighbor
from marketplace.routing.domains import DomainRouter
from marketplace.routing.errors import InvalidTopology, TopologyFileError

log = logging.getLogger(__name__)

#: refused lines logged one by one; the rest are only counted (and kept in the report)
LOGGED_PROBLEMS = 20

#: CAIDA: rel -> what as2 is to as1
_CAIDA = {-1: Relation.CUSTOMER, 0: Relation.PEER}
#: SNAP: rel -> what "to" is to "from"
_SNAP = {-1: Relation.PROVIDER, 1: Relation.CUSTOMER, 0: Relation.PEER, 2: Relation.SIBLING}


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class Contradiction:
    """``a``-``b`` first said to be ``first`` (what b is to a) on ``first_line``, then ``other`` on ``line``."""

    a: int
    b: int
    first: Relation
    first_line: int
    other: Relation
    line: int


@dataclass
class ReadReport:
    source: str
    fmt: str
    lines: int = 0
    refused: Counter = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    contradictions: list[Contradiction] = field(default_factory=list)
    repeated: int = 0


class AsGraph:
    """ASes and the relationships of their links."""

    def __init__(self) -> None:
        self._rel: dict[int, dict[int, Relation]] = {}
        self._line: dict[tuple[int, int], int] = {}
        self.report: ReadReport | None = None

    @classmethod
    def from_links(cls, links: Iterable[tuple[int, int, Relation]]) -> "AsGraph":
        """``(a, b, what b is to a)`` triples; a contradiction raises ``InvalidTopology``."""
        g = cls()
        for i, (a, b, rel) in enumerate(links):
            if a == b:
                raise InvalidTopology(f"AS{a} linked to itself", asn=a)
            c = g.add(int(a), int(b), Relation(rel), line=i + 1)
            if c is not None:
                raise InvalidTopology(f"AS{a}-AS{b} is both {c.first.value} and {c.other.value}", a=a, b=b)
        return g

    def add(self, a: int, b: int, rel: Relation, *, line: int = 0) -> Contradiction | None:
        """Add the link ``a``-``b`` where ``b`` is ``rel`` to ``a``. Returns the contradiction if
        the link was already known with another relationship (the first one is kept)."""
        known = self._rel.get(a, {}).get(b)
        if known is None:
            self._rel.setdefault(a, {})[b] = rel
            self._rel.setdefault(b, {})[a] = rel.reverse
            self._line[(min(a, b), max(a, b))] = line
            return None
        if known is rel:
            return None
        return Contradiction(a, b, known, self._line[(min(a, b), max(a, b))], rel, line)

    # ------------------------------------------------------------------ queries

    def has_link(self, a: int, b: int) -> bool:
        return b in self._rel.get(a, ())

    def __len__(self) -> int:
        return len(self._rel)

    def __contains__(self, asn: object) -> bool:
        return asn in self._rel

    @property
    def ases(self) -> list[int]:
        return sorted(self._rel)

    def neighbors(self, asn: int) -> dict[int, Relation]:
        return dict(self._rel[asn])

    def relation(self, a: int, b: int) -> Relation:
        """What ``b`` is to ``a``."""
        return self._rel[a][b]

    def degree(self, asn: int) -> int:
        return len(self._rel[asn])

    def links(self) -> Iterator[tuple[int, int, Relation]]:
        """Each link once, as ``(a, b, what b is to a)`` with ``a < b``."""
        for a, nbrs in self._rel.items():
            for b, rel in nbrs.items():
                if a < b:
                    yield a, b, rel

    def number_of_links(self) -> int:
        return sum(len(n) for n in self._rel.values()) // 2

    def highest_degree(self) -> int:
        """The AS with the most neighbours (the lowest AS number among equals)."""
        if not self._rel:
            raise InvalidTopology("empty AS graph")
        return min(self._rel, key=lambda a: (-len(self._rel[a]), a))

    def routers(self, *, config: DomainConfig | None = None, latency_ms: float = 10.0,
                transit_latency_ms: float = 0.0) -> dict[int, DomainRouter]:
        """One ``DomainRouter`` per AS, every link ``latency_ms`` long, relationships as read."""
        cfg = config or DomainConfig()
        return {a: DomainRouter(a, {b: Neighbor(latency_ms, rel) for b, rel in nbrs.items()}, config=cfg,
                                transit_latency_ms=transit_latency_ms)
                for a, nbrs in self._rel.items()}


# ---------------------------------------------------------------------- readers


def read_as_graph(path: str | Path, fmt: str | None = None) -> AsGraph:
    """Read a CAIDA (``fmt="caida"``) or SNAP (``fmt="snap"``) file; ``None`` guesses from the
    first data line (``|`` separators: CAIDA)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise TopologyFileError(f"cannot read AS graph: {e.strerror or e}", file=str(p)) from None
    lines = raw.splitlines()
    if fmt is None:
        first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith(b"#")), b"")
        fmt = "caida" if b"|" in first else "snap"
    return parse_as_graph(lines, fmt, source=str(p))


def parse_as_graph(lines: Iterable[bytes | str], fmt: str, *, source: str = "<text>") -> AsGraph:
    if fmt not in ("caida", "snap"):
        raise TopologyFileError(f"unknown AS graph format {fmt!r} (caida or snap)", file=source)
    table, sep, width = (_CAIDA, "|", (3, 4)) if fmt == "caida" else (_SNAP, None, (3,))
    g = AsGraph()
    rep = g.report = ReadReport(source, fmt)
    for number, raw in enumerate(lines, 1):
        rep.lines = number
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            _refuse(rep, number, "not-utf8", repr(raw[:60]))
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parsed = _parse_line(stripped, sep, width, table)
        if isinstance(parsed, str):
            _refuse(rep, number, parsed, stripped)
            continue
        a, b, rel = parsed
        existed = g.has_link(a, b)
        clash = g.add(a, b, rel, line=number)
        if clash is not None:
            rep.contradictions.append(clash)
            log.warning("%s:%d: AS%d-AS%d said to be %s on line %d, now %s: kept the first", source, number, a, b,
                        clash.first.value, clash.first_line, rel.value)
        elif existed:
            rep.repeated += 1
    if rep.problems or rep.contradictions:
        log.warning("%s: %d lines, %d refused (%s), %d contradictory links", source, rep.lines,
                    len(rep.problems), dict(rep.refused), len(rep.contradictions))
    return g


def _parse_line(text: str, sep: str | None, width: tuple[int, ...],
                table: dict[int, Relation]) -> tuple[int, int, Relation] | str:
    """``(a, b, what b is to a)`` or the reason the line is refused."""
    fields = text.split(sep)
    if len(fields) not in width:
        return "fields"
    try:
        a, b, r = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return "not-an-asn"
    if not (0 < a <= MAX_ASN and 0 < b <= MAX_ASN):
        return "asn-out-of-range"
    if a == b:
        return "self-link"
    rel = table.get(r)
    if rel is None:
        return "unknown-relationship"
    return a, b, rel


def _refuse(rep: ReadReport, number: int, reason: str, text: str) -> None:
    rep.refused[reason] += 1
    rep.problems.append(LineProblem(number, reason, text[:120]))
    if len(rep.problems) <= LOGGED_PROBLEMS:
        log.warning("%s:%d: refused (%s): %r", rep.source, number, reason, text[:120])
