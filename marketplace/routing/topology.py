"""Network topology: nodes, links with latency, bandwidth and cost, and the Topology Zoo loaders.

A ``Topology`` is an immutable undirected multigraph. Node ids are strings (the ids of
the source file: GraphML string ids, GML integer ids written in decimal); labels are
kept beside them because labels repeat in real files (Uninett2010 has two ``UiO``,
Cogentco several nodes without a label). Parallel links between the same two nodes are
kept as separate ``Link`` values told apart by ``key`` (Cogentco has them without
declaring ``multigraph``); routing uses the lowest-latency link that is up.

Latency model (documented in ``docs/routing.md``):
- a link between two nodes with coordinates has the great-circle (haversine) distance
  between them divided by the speed of light in fibre: ``FIBRE_MS_PER_KM`` = 0.0049 ms/km
  (c / 1.468, the group index of standard single-mode fibre, is 204,200 km/s, i.e.
  4.90 µs/km); real fibre runs longer than the great circle, so this is a lower bound;
- a link with an endpoint without coordinates (external nodes, ``Internal=0``) gets the
  median latency of the links of the same graph that have coordinates;
- a graph with no coordinates at all (Internet2) gets ``FIXED_HOP_LATENCY_MS`` per link;
- every link gets at least ``MIN_LINK_LATENCY_MS`` (two PoPs in one city are not 0 ms
  apart: switching and serialisation), which also keeps weights strictly positive, as
  shortest-path code (and scipy, which drops explicit zeros) needs.

Capacity is ``LinkSpeedRaw`` (bit/s) when present, else ``LinkSpeed`` scaled by
``LinkSpeedUnits``; ``None`` when the file does not say (most files). ``cost`` is the
administrative metric of a link (1.0 per hop unless given); routing minimises latency.

Invariants: node ids are unique; every link joins two known, distinct nodes; latencies
are finite and >= ``MIN_LINK_LATENCY_MS``; ``node_index[nodes[i]] == i``.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from marketplace.routing.errors import InvalidTopology, TopologyFileError, UnknownLink, UnknownNode

log = logging.getLogger(__name__)

#: one-way propagation delay of light in standard single-mode fibre, ms per km (c / 1.468)
FIBRE_MS_PER_KM = 0.0049
#: mean Earth radius (IUGG), km
EARTH_RADIUS_KM = 6371.0088
#: per-link latency when a graph has no coordinates at all (a metro/regional hop)
FIXED_HOP_LATENCY_MS = 1.0
#: floor of every link latency (switching and serialisation; keeps weights > 0)
MIN_LINK_LATENCY_MS = 0.01

_UNIT_TO_MBPS = {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3, "T": 1e6}


@dataclass(frozen=True, slots=True)
class Node:
    """A router or point of presence. ``lat``/``lon`` in degrees, ``None`` when unknown."""

    id: str
    label: str = ""
    lat: float | None = None
    lon: float | None = None
    internal: bool = True


@dataclass(frozen=True, slots=True)
class Link:
    """An undirected link. ``key`` tells parallel links between the same nodes apart.

    ``latency_source`` says where the latency came from: ``geo`` (great circle),
    ``median`` or ``fixed`` (fallbacks), ``given`` (set by a builder or a change)."""

    u: str
    v: str
    latency_ms: float
    bandwidth_mbps: float | None = None
    cost: float = 1.0
    key: int = 0
    up: bool = True
    latency_source: str = "given"

    def joins(self, a: str, b: str) -> bool:
        return (self.u == a and self.v == b) or (self.u == b and self.v == a)


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a sphere of radius ``EARTH_RADIUS_KM``."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def fibre_latency_ms(km: float) -> float:
    return max(MIN_LINK_LATENCY_MS, km * FIBRE_MS_PER_KM)


@dataclass(frozen=True, slots=True)
class Topology:
    """An immutable undirected multigraph. Build it with ``TopologyBuilder`` or a loader."""

    name: str
    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    node_info: Mapping[str, Node] = field(default_factory=dict, compare=False)
    node_index: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        index = {n: i for i, n in enumerate(self.nodes)}
        if len(index) != len(self.nodes):
            seen: set[str] = set()
            dup = next(n for n in self.nodes if n in seen or seen.add(n))  # type: ignore[func-returns-value]
            raise InvalidTopology(f"topology {self.name!r}: duplicate node id {dup!r}", node=dup)
        for link in self.links:
            for end in (link.u, link.v):
                if end not in index:
                    raise InvalidTopology(
                        f"topology {self.name!r}: link {link.u!r}-{link.v!r} names unknown node {end!r}", node=end
                    )
            if link.u == link.v:
                raise InvalidTopology(f"topology {self.name!r}: self-loop on {link.u!r}", node=link.u)
            if not (math.isfinite(link.latency_ms) and link.latency_ms >= MIN_LINK_LATENCY_MS):
                raise InvalidTopology(
                    f"topology {self.name!r}: link {link.u!r}-{link.v!r} has latency {link.latency_ms!r} ms",
                    hint=f"latency must be finite and >= {MIN_LINK_LATENCY_MS} ms",
                )
        object.__setattr__(self, "node_index", index)
        info = dict(self.node_info)
        for n in self.nodes:
            info.setdefault(n, Node(n))
        object.__setattr__(self, "node_info", info)

    def index(self, node: str) -> int:
        try:
            return self.node_index[node]
        except KeyError:
            raise UnknownNode(node, hint=f"topology {self.name!r} has {len(self.nodes)} nodes") from None

    def label(self, node: str) -> str:
        return self.node_info[node].label if node in self.node_info else ""

    def links_between(self, u: str, v: str) -> list[Link]:
        self.index(u), self.index(v)
        return [link for link in self.links if link.joins(u, v)]

    def with_link_change(
        self, u: str, v: str, latency_ms: float | None = None, up: bool = True, key: int | None = None
    ) -> "Topology":
        """A copy with the link(s) ``u``-``v`` changed (all parallel ones unless ``key`` is given)."""
        self.index(u), self.index(v)
        changed = False
        out = []
        for link in self.links:
            if link.joins(u, v) and (key is None or link.key == key):
                changed = True
                link = replace(
                    link,
                    up=up,
                    latency_ms=link.latency_ms if latency_ms is None else max(MIN_LINK_LATENCY_MS, latency_ms),
                    latency_source=link.latency_source if latency_ms is None else "given",
                )
            out.append(link)
        if not changed:
            raise UnknownLink(u, v, key)
        return Topology(self.name, self.nodes, tuple(out), self.node_info)


class TopologyBuilder:
    """Collects nodes and links, then builds a ``Topology``. Parallel links get keys 0, 1, ..."""

    def __init__(self, name: str = "topology") -> None:
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._links: list[Link] = []
        self._keys: dict[tuple[str, str], int] = {}

    def add_node(self, node_id: str, label: str = "", lat: float | None = None, lon: float | None = None,
                 internal: bool = True) -> "TopologyBuilder":
        node_id = str(node_id)
        if node_id in self._nodes:
            raise InvalidTopology(f"topology {self.name!r}: duplicate node id {node_id!r}", node=node_id)
        self._nodes[node_id] = Node(node_id, label, lat, lon, internal)
        return self

    def add_link(self, u: str, v: str, latency_ms: float | None = None, bandwidth_mbps: float | None = None,
                 cost: float = 1.0) -> "TopologyBuilder":
        """Add a link; without ``latency_ms`` it is derived from the coordinates (or the fallback)."""
        u, v = str(u), str(v)
        for end in (u, v):
            if end not in self._nodes:
                raise UnknownNode(end, hint=f"add_node({end!r}) before linking it")
        pair = (u, v) if u <= v else (v, u)
        key = self._keys.get(pair, 0)
        self._keys[pair] = key + 1
        lat = math.nan if latency_ms is None else float(latency_ms)
        self._links.append(Link(u, v, lat, bandwidth_mbps, float(cost), key, True,
                                "pending" if latency_ms is None else "given"))
        return self

    def build(self) -> Topology:
        """Resolve pending latencies (great circle, else median, else fixed) and freeze."""
        geo: list[float] = []
        resolved: list[Link] = []
        for link in self._links:
            if link.latency_source != "pending":
                resolved.append(replace(link, latency_ms=max(MIN_LINK_LATENCY_MS, link.latency_ms))
                                if link.latency_ms >= 0 else link)
                continue
            a, b = self._nodes[link.u], self._nodes[link.v]
            if None not in (a.lat, a.lon, b.lat, b.lon):
                ms = fibre_latency_ms(great_circle_km(a.lat, a.lon, b.lat, b.lon))  # type: ignore[arg-type]
                geo.append(ms)
                resolved.append(replace(link, latency_ms=ms, latency_source="geo"))
            else:
                resolved.append(link)
        if geo:
            fallback, source = statistics.median(geo), "median"
        else:
            fallback, source = FIXED_HOP_LATENCY_MS, "fixed"
        final = [replace(link, latency_ms=fallback, latency_source=source) if link.latency_source == "pending"
                 else link for link in resolved]
        n_fallback = sum(1 for link in final if link.latency_source in ("median", "fixed"))
        if n_fallback:
            log.info("topology %s: %d of %d links without coordinates get the %s latency %.3f ms",
                     self.name, n_fallback, len(final), source, fallback)
        return Topology(self.name, tuple(self._nodes), tuple(final), dict(self._nodes))


# ---------------------------------------------------------------------------- loaders

def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _bandwidth_mbps(attrs: Mapping[str, Any]) -> float | None:
    raw = _float_or_none(attrs.get("LinkSpeedRaw"))
    if raw is not None and raw > 0:
        return raw / 1e6
    speed = _float_or_none(attrs.get("LinkSpeed"))
    unit = str(attrs.get("LinkSpeedUnits", "") or "").strip().upper()[:1]
    if speed is not None and speed > 0 and unit in _UNIT_TO_MBPS:
        return speed * _UNIT_TO_MBPS[unit]
    return None


def _from_records(name: str, nodes: list[tuple[str, dict[str, Any]]],
                  edges: list[tuple[str, str, dict[str, Any], str]], file: str) -> Topology:
    b = TopologyBuilder(name)
    for node_id, attrs in nodes:
        lat, lon = _float_or_none(attrs.get("Latitude")), _float_or_none(attrs.get("Longitude"))
        if lat is None or lon is None:
            lat = lon = None
        internal = attrs.get("Internal")
        try:
            b.add_node(node_id, str(attrs.get("label", "") or ""), lat, lon,
                       internal is None or int(float(internal)) != 0)
        except InvalidTopology as e:
            raise TopologyFileError(e.message, file=file, element=f"node {node_id!r}") from None
    for u, v, attrs, where in edges:
        if u == v:
            log.warning("topology %s: skipping self-loop on %s at %s", name, u, where)
            continue
        try:
            b.add_link(u, v, bandwidth_mbps=_bandwidth_mbps(attrs))
        except UnknownNode as e:
            raise TopologyFileError(f"edge names unknown node {e.node!r}", file=file, element=where) from None
    return b.build()


def load_graphml(path: str | Path) -> Topology:
    """Load a GraphML file (Topology Zoo flavour) with ``xml.etree``."""
    path = Path(path)
    file = str(path)
    try:
        root = ET.parse(path).getroot()
    except OSError as e:
        raise TopologyFileError(f"cannot read: {e.strerror or e}", file=file) from None
    except ET.ParseError as e:
        line, col = e.position
        raise TopologyFileError(f"not well-formed XML at column {col}: {e}", file=file, line=line) from None
    ns_match = re.match(r"\{[^}]*\}", root.tag)
    ns = ns_match.group(0) if ns_match else ""
    if root.tag != f"{ns}graphml":
        raise TopologyFileError(f"root element is <{root.tag}>, not <graphml>", file=file, element="root")
    keys: dict[str, str] = {}
    for k in root.iter(f"{ns}key"):
        if "id" in k.attrib:
            keys[k.attrib["id"]] = k.attrib.get("attr.name", k.attrib["id"])
    graph = root.find(f"{ns}graph")
    if graph is None:
        raise TopologyFileError("no <graph> element", file=file, element="graphml")
    name = path.stem
    for d in graph.findall(f"{ns}data"):
        if keys.get(d.attrib.get("key", "")) == "label" and d.text:
            name = d.text.strip() or name

    def data(el: ET.Element) -> dict[str, Any]:
        return {keys.get(d.attrib.get("key", ""), d.attrib.get("key", "")): (d.text or "").strip()
                for d in el.findall(f"{ns}data")}

    nodes = []
    for i, el in enumerate(graph.findall(f"{ns}node")):
        if "id" not in el.attrib:
            raise TopologyFileError("node without an id attribute", file=file, element=f"node #{i}")
        nodes.append((el.attrib["id"], data(el)))
    edges = []
    for i, el in enumerate(graph.findall(f"{ns}edge")):
        s, t = el.attrib.get("source"), el.attrib.get("target")
        if s is None or t is None:
            raise TopologyFileError("edge without source or target", file=file, element=f"edge #{i}")
        edges.append((s, t, data(el), f"edge #{i} ({s}->{t})"))
    topo = _from_records(name, nodes, edges, file)
    log.info("loaded %s: %d nodes, %d links", file, len(topo.nodes), len(topo.links))
    return topo


_GML_TOKEN = re.compile(r'\s*(?:(\[)|(\])|("(?:[^"]*)")|([A-Za-z_][A-Za-z0-9_]*)|([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?))')


def _parse_gml(text: str, file: str) -> dict[str, Any]:
    """A small GML reader: ``key value`` pairs, values are numbers, "strings" or [lists].

    Returns nested dicts whose values are lists (keys repeat: every ``node`` and ``edge``),
    each item a ``(value, line)`` pair so errors can name the line."""
    pos, line = 0, 1
    stack: list[dict[str, list[Any]]] = [{}]
    key: str | None = None
    key_line = 1
    n = len(text)
    while pos < n:
        m = _GML_TOKEN.match(text, pos)
        if not m:
            rest = text[pos:].lstrip()
            if not rest:
                break
            start = n - len(rest)
            if rest.startswith("#"):  # comment to end of line
                eol = text.find("\n", start)
                line += text.count("\n", pos, n if eol < 0 else eol)
                pos = n if eol < 0 else eol
                continue
            raise TopologyFileError(f"unexpected text {rest[:20]!r}", file=file,
                                    line=line + text.count("\n", pos, start))
        line += text.count("\n", pos, m.start(m.lastindex or 0))
        pos = m.end()
        open_, close, string, ident, number = m.groups()
        if key is None:
            if close:
                if len(stack) == 1:
                    raise TopologyFileError("']' without a matching '['", file=file, line=line)
                stack.pop()
                continue
            if not ident:
                raise TopologyFileError(f"expected a key, found {m.group(0).strip()!r}", file=file, line=line)
            key, key_line = ident, line
            continue
        if open_:
            child: dict[str, list[Any]] = {}
            stack[-1].setdefault(key, []).append((child, key_line))
            stack.append(child)
        elif string is not None:
            stack[-1].setdefault(key, []).append((string[1:-1], key_line))
            line += string.count("\n")
        elif number is not None:
            stack[-1].setdefault(key, []).append((_gml_number(number, key, file, line), key_line))
        else:
            raise TopologyFileError(f"key {key!r} has no value", file=file, line=key_line)
        key = None
    if key is not None:
        raise TopologyFileError(f"key {key!r} has no value at end of file", file=file, line=key_line)
    if len(stack) != 1:
        raise TopologyFileError("unclosed '[' at end of file", file=file, line=line)
    return stack[0]


def _gml_number(number: str, key: str, file: str, line: int) -> int | float:
    """A GML number token: an int when it is one, else a float."""
    try:
        return int(number)
    except ValueError:
        try:
            return float(number)
        except ValueError:
            raise TopologyFileError(f"bad number {number!r} for {key!r}", file=file, line=line) from None


def load_gml(path: str | Path) -> Topology:
    """Load a GML file (Topology Zoo flavour) with a small built-in parser.

    Node ids are the integer ``id`` fields written in decimal; labels may repeat; edges
    may repeat (parallel links), whether or not the file declares ``multigraph``."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise TopologyFileError(f"cannot read: {e.strerror or e}", file=file) from None
    doc = _parse_gml(text, file)
    graphs = doc.get("graph")
    if not graphs or not isinstance(graphs[0][0], dict):
        raise TopologyFileError("no 'graph [ ... ]' block", file=file, line=1)
    graph = graphs[0][0]

    def flat(block: dict[str, list[Any]]) -> dict[str, Any]:
        return {k: v[0][0] for k, v in block.items() if not isinstance(v[0][0], dict)}

    labels = [v for v, _ in graph.get("label", [])]
    name = str(labels[0]) if labels else path.stem
    nodes = []
    for block, line in graph.get("node", []):
        attrs = flat(block)
        if "id" not in attrs:
            raise TopologyFileError("node without an id", file=file, line=line)
        nodes.append((str(attrs["id"]), attrs))
    edges = []
    for block, line in graph.get("edge", []):
        attrs = flat(block)
        if "source" not in attrs or "target" not in attrs:
            raise TopologyFileError("edge without source or target", file=file, line=line)
        edges.append((str(attrs["source"]), str(attrs["target"]), attrs, f"edge at line {line}"))
    topo = _from_records(name, nodes, edges, file)
    log.info("loaded %s: %d nodes, %d links", file, len(topo.nodes), len(topo.links))
    return topo


def load_topology(path: str | Path) -> Topology:
    """Load by extension: ``.graphml`` or ``.gml``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".graphml":
        return load_graphml(path)
    if suffix == ".gml":
        return load_gml(path)
    raise TopologyFileError(f"unknown topology format {suffix!r}", file=str(path),
                            hint="use a .graphml or .gml file")


def from_edges(name: str, edges: Iterable[tuple[str, str, float]]) -> Topology:
    """A topology from ``(u, v, latency_ms)`` triples (nodes in first-seen order)."""
    b = TopologyBuilder(name)
    seen: set[str] = set()
    triples = list(edges)
    for u, v, _ in triples:
        for x in (str(u), str(v)):
            if x not in seen:
                seen.add(x)
                b.add_node(x)
    for u, v, w in triples:
        b.add_link(u, v, latency_ms=w)
    return b.build()
