"""Large topologies built from real ones: replicated regional domains, interconnected.

Pure random graphs have neither the degree distribution nor the latency spread of real
backbones, so benchmarks and scale tests use this generator instead:

1. copies of real Topology Zoo graphs (e.g. Cogentco and Geant2012, taken in turn) are
   made until the node count reaches ``target_nodes``; copy ``k`` prefixes its node ids
   with ``r<k>:`` and keeps every intra-copy link with its real (great-circle) latency;
2. the copies ("regions") are joined in a ring, copy ``k`` to copy ``k+1`` by
   ``ring_links`` links, plus ``chords`` links from each copy to uniformly random other
   copies, so the diameter stays logarithmic-ish as in real inter-AS meshes;
3. each inter-region link joins two random nodes that have coordinates, and its latency is
   drawn from the real intra-copy link latencies, multiplied by ``long_haul_factor``
   (default 3: inter-regional hops are longer than the median backbone hop).

The result is deterministic for a given ``seed``.
"""

from __future__ import annotations

import logging
import random
from typing import Sequence

from marketplace.routing.errors import InvalidTopology
from marketplace.routing.topology import Link, Node, Topology

log = logging.getLogger(__name__)


def regional_topology(bases: Sequence[Topology], target_nodes: int, *, seed: int = 0, ring_links: int = 2,
                      chords: int = 1, long_haul_factor: float = 3.0) -> Topology:
    """Replicate ``bases`` in turn until ``target_nodes`` is reached, then interconnect the copies."""
    if not bases or any(not b.nodes for b in bases):
        raise InvalidTopology("regional_topology needs at least one non-empty base topology")
    rng = random.Random(seed)
    nodes: list[str] = []
    info: dict[str, Node] = {}
    links: list[Link] = []
    regions: list[list[str]] = []
    pool = [link.latency_ms for b in bases for link in b.links]
    k = 0
    while len(nodes) < target_nodes:
        base = bases[k % len(bases)]
        prefix = f"r{k}:"
        ids = [prefix + n for n in base.nodes]
        nodes.extend(ids)
        for n in base.nodes:
            src = base.node_info[n]
            info[prefix + n] = Node(prefix + n, src.label, src.lat, src.lon, src.internal)
        for link in base.links:
            links.append(Link(prefix + link.u, prefix + link.v, link.latency_ms, link.bandwidth_mbps, link.cost,
                              link.key, True, link.latency_source))
        regions.append([prefix + n for n in base.nodes if base.node_info[n].lat is not None] or ids)
        k += 1
    keys: dict[tuple[str, str], int] = {}

    def join(a: int, b: int) -> None:
        u, v = rng.choice(regions[a]), rng.choice(regions[b])
        pair = (u, v) if u < v else (v, u)
        key = keys.get(pair, 1000)  # above any key a copied file uses
        keys[pair] = key + 1
        links.append(Link(u, v, rng.choice(pool) * long_haul_factor, None, 1.0, key, True, "generated"))

    r = len(regions)
    if r > 1:
        for a in range(r):
            for _ in range(ring_links if r > 2 or a == 0 else 0):
                join(a, (a + 1) % r)
            for _ in range(chords if r > 2 else 0):
                b = rng.randrange(r - 1)
                join(a, b if b < a else b + 1)
    topo = Topology(f"regional-{len(nodes)}", tuple(nodes), tuple(links), info)
    log.info("generated %s from %s: %d regions, %d links", topo.name, ",".join(b.name for b in bases), r,
             len(links))
    return topo
