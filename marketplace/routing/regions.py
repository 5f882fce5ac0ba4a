"""Domains over one topology: N regions around home nodes, and the links between regions.

A multi-domain market (one engine per domain, ``cona up --domains N``) needs, for each domain,
a place in the network and its neighbours: which engines peer with which, and how far apart
they are. ``plan_domains`` derives both from a real topology:

- **homes**: domain ``d`` (numbered from 1) has the home node ``homes[d - 1]``: first the
  ``seeds`` given (e.g. the nodes the demo providers attach to, in order, repeats skipped), then,
  as long as more domains are asked for, the node farthest by latency from every home chosen so
  far (farthest-point sampling, the lowest node index on a tie), so homes spread over the map;
- **regions**: every node belongs to the domain of its nearest home by path latency (ties to the
  lower domain), a Voronoi partition of the graph; a node no home reaches belongs to none;
- **links**: two domains are neighbours when a link of the topology joins their regions; the
  link's latency is the path latency between their homes (what a summary adds per domain hop).

A domain is administrative (a provider declares it when it registers): the region says where a
domain's home is and which domains peer, not where its providers may attach.

Invariants: deterministic for a topology, ``n`` and ``seeds``; ``homes`` are distinct nodes;
every link joins two different domains, listed once with ``a < b``; when the topology is
connected, so is the graph of domains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from marketplace.routing.errors import InvalidTopology, UnknownNode
from marketplace.routing.spf import RoutingTable


@dataclass(frozen=True, slots=True)
class DomainLink:
    """Domains ``a < b`` are neighbours, ``latency_ms`` apart (between their homes)."""

    a: int
    b: int
    latency_ms: float


@dataclass(frozen=True, slots=True)
class DomainPlan:
    """The homes, regions and inter-domain links of ``n`` domains over one topology."""

    homes: tuple[str, ...]
    region: dict[str, int]
    links: tuple[DomainLink, ...]

    @property
    def domains(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.homes) + 1))

    def home(self, domain: int) -> str:
        if not 1 <= domain <= len(self.homes):
            raise InvalidTopology(f"no domain {domain} in a plan of {len(self.homes)}", field="domain")
        return self.homes[domain - 1]

    def neighbours(self, domain: int) -> dict[int, float]:
        """Neighbour domain -> link latency (ms)."""
        out: dict[int, float] = {}
        for link in self.links:
            if link.a == domain:
                out[link.b] = link.latency_ms
            elif link.b == domain:
                out[link.a] = link.latency_ms
        return out


def plan_domains(table: RoutingTable, n: int, seeds: Iterable[str] = ()) -> DomainPlan:
    """``n`` domains over ``table``'s topology (see the module docstring)."""
    topo = table.topology
    if not 1 <= n <= len(topo.nodes):
        raise InvalidTopology(f"{n} domains asked of {topo.name!r}, which has {len(topo.nodes)} nodes",
                              field="domains", hint="between 1 and the number of nodes")
    homes: list[str] = []
    for node in seeds:
        if node not in topo.node_index:
            raise UnknownNode(node, hint=f"a seed must be a node of {topo.name}")
        if node not in homes and len(homes) < n:
            homes.append(node)
    if not homes:
        homes.append(topo.nodes[0])
    nearest = np.minimum.reduce([table.distances_from(h) for h in homes])
    while len(homes) < n:
        far = np.where(np.isfinite(nearest), nearest, -1.0)
        for h in homes:
            far[topo.index(h)] = -1.0
        pick = int(np.argmax(far))  # argmax: the lowest index among equals
        if far[pick] < 0:
            raise InvalidTopology(f"{topo.name!r} has no node left for domain {len(homes) + 1}", field="domains")
        homes.append(topo.nodes[pick])
        nearest = np.minimum(nearest, table.distances_from(topo.nodes[pick]))
    dist = np.vstack([table.distances_from(h) for h in homes])
    region: dict[str, int] = {}
    for i, node in enumerate(topo.nodes):
        col = dist[:, i]
        if math.isfinite(float(col.min())):
            region[node] = int(np.argmin(col)) + 1
    pairs: set[tuple[int, int]] = set()
    for link in topo.links:
        a, b = region.get(link.u), region.get(link.v)
        if a is not None and b is not None and a != b:
            pairs.add((min(a, b), max(a, b)))
    links = tuple(DomainLink(a, b, round(float(table.latency(homes[a - 1], homes[b - 1])), 3))
                  for a, b in sorted(pairs))
    return DomainPlan(tuple(homes), region, links)
