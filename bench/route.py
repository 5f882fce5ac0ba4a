"""``cona bench route``: shortest-path recomputation on large graphs built from real topologies.

Graphs: ``marketplace.routing.generate.regional_topology`` replicates Cogentco and
Geant2012 (Topology Zoo) in turn as regional domains, keeping their real great-circle link
latencies, and joins the copies in a ring with random chords (see ``docs/routing.md``).

- ``spf_10k_ms_p50`` / ``spf_10k_ms_p99``: full single-source recomputation (scipy
  ``csgraph.dijkstra`` over the CSR matrix, predecessors included) on ~10,000 nodes,
  over varied sources;
- ``spf_100k_ms_p50`` / ``spf_100k_ms_p99``: the same on ~100,000 nodes;
- ``spf_{10k,100k}_cpu_ms_p50``: process CPU time of the same runs (wall time inflates when
  other jobs share the two cores; CPU time shows the cost of the work itself);
- ``incremental_10k_ms_p50`` / ``incremental_10k_ms_p99``: one random link change (cost up,
  cost down, failure or repair, uniformly) applied to a table holding that source's tree,
  including the fallback to a full run when the change touches too much;
- ``incremental_100k_ms_p50``: the same on 100k nodes;
- ``networkx_spf_10k_ms``: ``networkx.single_source_dijkstra`` (distances and paths) on the
  same 10k graph in the same run: the baseline.

Each incremental result is checked against a full recomputation at the end of the run, so
a benchmark that produced wrong distances fails rather than reports.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import networkx as nx
import numpy as np

from bench.stats import percentile, rnd
from marketplace.routing.generate import regional_topology
from marketplace.routing.spf import LinkChange, RoutingTable
from marketplace.routing.topology import Topology, load_topology

#: the Topology Zoo files as committed with the project (tests/fixtures/topologies/SOURCES.md)
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "topologies"


def _bases() -> list[Topology]:
    return [load_topology(FIXTURES / "Cogentco.graphml"), load_topology(FIXTURES / "Geant2012.graphml")]


def _full_runs(table: RoutingTable, sources: list[str]) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per full run (CPU time shows the cost when other jobs share the cores)."""
    wall, cpu = [], []
    for s in sources:
        t, c = time.perf_counter(), time.process_time()
        table.recompute(s)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return wall, cpu


def _incremental_runs(topo: Topology, table: RoutingTable, source: str, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    table.distances_from(source)
    out = []
    for _ in range(n):
        link = rng.choice(topo.links)
        kind = rng.randrange(4)
        if kind == 0:
            change = LinkChange(link.u, link.v, latency_ms=link.latency_ms * rng.uniform(1.5, 5.0))
        elif kind == 1:
            change = LinkChange(link.u, link.v, latency_ms=link.latency_ms * rng.uniform(0.2, 0.9))
        else:
            change = LinkChange(link.u, link.v, up=kind == 3)
        t = time.perf_counter()
        table.apply(change)
        out.append((time.perf_counter() - t) * 1000)
    after = table.distances_from(source).copy()
    if not np.allclose(after, table.recompute(source), rtol=1e-9):
        raise AssertionError("incremental distances differ from a full recomputation")
    return out


def _networkx_ms(topo: Topology, source: str, runs: int) -> float:
    g = nx.Graph()
    for link in topo.links:
        if link.up and (not g.has_edge(link.u, link.v) or g[link.u][link.v]["w"] > link.latency_ms):
            g.add_edge(link.u, link.v, w=link.latency_ms)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        nx.single_source_dijkstra(g, source, weight="w")
        times.append((time.perf_counter() - t) * 1000)
    return percentile(times, 50)


def run(quick: bool = False) -> dict:
    bases = _bases()
    out: dict = {}
    sizes = {"10k": 10_000, "100k": 100_000}
    full_n = {"10k": 30 if quick else 300, "100k": 3 if quick else 60}
    inc_n = {"10k": 50 if quick else 1000, "100k": 10 if quick else 300}
    for label, size in sizes.items():
        t = time.perf_counter()
        topo = regional_topology(bases, size, seed=1)
        table = RoutingTable(topo)
        out[f"build_{label}_ms"] = rnd((time.perf_counter() - t) * 1000)
        out[f"nodes_{label}"] = len(topo.nodes)
        out[f"links_{label}"] = len(topo.links)
        rng = random.Random(2)
        sources = [rng.choice(topo.nodes) for _ in range(full_n[label])]
        table.recompute(sources[0])  # warm scipy's code paths
        full, cpu = _full_runs(table, sources)
        out[f"spf_{label}_ms_p50"] = rnd(percentile(full, 50))
        out[f"spf_{label}_ms_p99"] = rnd(percentile(full, 99))
        out[f"spf_{label}_cpu_ms_p50"] = rnd(percentile(cpu, 50))
        table.clear_cache()  # time the update of one tree, as a buyer's attachment point holds
        inc = _incremental_runs(topo, table, sources[0], inc_n[label], seed=3)
        out[f"incremental_{label}_ms_p50"] = rnd(percentile(inc, 50))
        out[f"incremental_{label}_ms_p99"] = rnd(percentile(inc, 99))
        if label == "10k":
            out["networkx_spf_10k_ms"] = rnd(_networkx_ms(topo, sources[0], 2 if quick else 10))
    out["workload"] = ("regional_topology(Cogentco, Geant2012), single-source latency SPF with predecessors; "
                       "incremental = one random link change")
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False), indent=2))
