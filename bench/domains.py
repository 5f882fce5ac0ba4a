"""``cona bench domains``: one origin announces a compute summary across an AS graph, then withdraws it.

Graph: ``networkx.random_internet_as_graph(10000)`` with a fixed seed (Elmokashfi et al.'s
model; its edges carry ``type`` transit/peer and, for transit, the ``customer``), or an AS
graph file (``--as-graph``: CAIDA ``as1|as2|rel`` or SNAP as-caida). Every AS runs a real
``DomainRouter`` with the default ``DomainConfig`` (MRAI 30 s with jitter, RFC 7196
damping, Gao-Rexford policy from the relationships); ``DomainNetwork`` runs them in
simulated time with 10 ms per inter-AS link and 1 ms of processing per message.

The origin is the AS of highest degree. Figures:

- ``announce_msgs`` / ``announce_s`` / ``announce_sim_s``: UPDATE messages, wall seconds and
  simulated seconds (origination to the last delivery) for the summary to reach everyone
  it can reach under the policy (``reached`` ASes);
- ``withdraw_msgs`` / ``withdraw_s`` / ``withdraw_sim_s``: the same for the withdrawal;
- ``stale_after_withdraw``: ASes still holding a route to the origin afterwards (must be 0);
- ``msgs_per_s``: messages processed per wall second over both phases; ``announce_msgs_per_as``;
- ``announce_cpu_s`` / ``withdraw_cpu_s``: process CPU time of the same phases (wall time
  inflates when other jobs share the cores; CPU time shows the cost of the work itself).

Beside them, ``load_cv`` and ``load_cv_best_first`` (``bench/balance.py``): how evenly the
convergence layer spreads 1,000 orders over the providers of GEANT 2012 with the demo profiles,
spread by load and latency versus best first, with the figures that go with them (``load_*``).

The run checks what it measures: after the announcement every route is loop-free and
valley-free (customer-to-provider hops, at most one peer hop, then provider-to-customer),
and the ASes holding a route are exactly those with a valley-free path to the origin
(computed from the graph alone); a violation raises instead of reporting.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from bench import balance
from marketplace.resources.model import DeviceClass
from marketplace.routing.asgraph import AsGraph, read_as_graph
from marketplace.routing.domain_policy import DomainConfig, Relation
from marketplace.routing.domain_sim import DomainNetwork
from marketplace.routing.domain_values import ProviderCapacity
from marketplace.routing.domains import DomainRouter

SEED = 20240611
ASES = 10_000
QUICK_ASES = 1_000
LINK_MS = 10.0
PROCESSING_S = 0.001
GPU = DeviceClass.GPU


def internet_graph(n: int, seed: int = SEED) -> AsGraph:
    """``networkx.random_internet_as_graph`` as an ``AsGraph`` (node k becomes AS k+1: 0 is reserved)."""
    import networkx as nx

    g = nx.random_internet_as_graph(n, seed=seed)
    links = []
    for u, v, d in g.edges(data=True):
        if d["type"] == "peer":
            links.append((u + 1, v + 1, Relation.PEER))
        else:
            customer = int(d["customer"])
            if customer not in (u, v):
                raise ValueError(f"edge {u}-{v}: customer {customer} is neither end")
            provider = v if customer == u else u
            links.append((provider + 1, customer + 1, Relation.CUSTOMER))
    return AsGraph.from_links(links)


def _valley_free(graph: AsGraph, asn: int, path: tuple[int, ...]) -> bool:
    """``asn`` holds a route along ``path`` (first hop ... origin): valley-free from the origin?"""
    hops = (asn,) + path
    phase = 0  # 0: climbing (learned from customers), 1: after the peer hop or descending
    for i in range(len(hops) - 1, 0, -1):
        rel = graph.relation(hops[i - 1], hops[i])  # what the sender is to the receiver
        if rel is Relation.SIBLING:
            continue
        if rel is Relation.CUSTOMER:
            if phase:
                return False
        elif rel is Relation.PEER:
            if phase:
                return False
            phase = 1
        else:
            phase = 1
    return True


def valley_free_reach(graph: AsGraph, origin: int) -> set[int]:
    """The ASes with at least one valley-free path to ``origin``, by search over (AS, may the
    route still go up or sideways): computed from the graph alone, without any router."""
    best = {origin: 0}  # 0: a customer-class route (exported to everyone); 1: only to customers
    frontier = [origin]
    while frontier:
        nxt = []
        for x in frontier:
            phase = best[x]
            for y, rel in graph.neighbors(x).items():  # rel: what y is to x
                if rel is Relation.SIBLING:
                    p = phase
                elif rel is Relation.PROVIDER:  # y learns the route from its customer x
                    if phase:
                        continue
                    p = 0
                elif rel is Relation.PEER:
                    if phase:
                        continue
                    p = 1
                else:  # y is x's customer
                    p = 1
                if p < best.get(y, 2):
                    best[y] = p
                    nxt.append(y)
        frontier = nxt
    return set(best)


def _check_routes(graph: AsGraph, routers: dict[int, DomainRouter], origin: int) -> int:
    reached = 0
    expected = valley_free_reach(graph, origin)
    for asn, r in routers.items():
        route = r.best(origin, GPU)
        if route is None:
            if asn in expected:
                raise AssertionError(f"AS{asn} has a valley-free path to AS{origin} but no route")
            continue
        reached += 1
        path = route.summary.as_path
        if asn != origin:
            if asn in path or len(set(path)) != len(path):
                raise AssertionError(f"AS{asn}: looping path {path}")
            if not _valley_free(graph, asn, path):
                raise AssertionError(f"AS{asn}: path {path} is not valley-free")
    return reached


def measure(graph: AsGraph, *, name: str, config: DomainConfig | None = None) -> dict:
    """Announce from the AS of highest degree, then withdraw; ``config`` for every router (default:
    ``DomainConfig()``)."""
    t = time.perf_counter()
    routers = graph.routers(latency_ms=LINK_MS, config=config)
    build_s = time.perf_counter() - t
    net = DomainNetwork(routers, processing_s=PROCESSING_S)
    origin = graph.highest_degree()
    offer = [ProviderCapacity(f"as{origin}-gpu", GPU, 64, 48, 2.5, 1.0)]

    t, c = time.perf_counter(), time.process_time()
    net.originate(origin, offer)
    ann = net.run()
    announce_s, announce_cpu_s = time.perf_counter() - t, time.process_time() - c
    reached = _check_routes(graph, routers, origin)

    t, c = time.perf_counter(), time.process_time()
    net.originate(origin, [])
    wd = net.run()
    withdraw_s, withdraw_cpu_s = time.perf_counter() - t, time.process_time() - c
    stale = sum(1 for r in routers.values() if r.best(origin, GPU) is not None)
    rejected = sum(sum(r.rejected.values()) for r in routers.values())
    n = len(graph)
    out = {
        "graph": name,
        "ases": n,
        "links": graph.number_of_links(),
        "origin": origin,
        "origin_degree": graph.degree(origin),
        "reached": reached,
        "announce_msgs": ann.messages,
        "announce_s": round(announce_s, 3),
        "announce_cpu_s": round(announce_cpu_s, 3),
        "announce_sim_s": round(ann.sim_s, 3),
        "announce_msgs_per_as": round(ann.messages / n, 2),
        "withdraw_msgs": wd.messages,
        "withdraw_s": round(withdraw_s, 3),
        "withdraw_cpu_s": round(withdraw_cpu_s, 3),
        "withdraw_sim_s": round(wd.sim_s, 3),
        "stale_after_withdraw": stale,
        "msgs_per_s": round((ann.messages + wd.messages) / (announce_s + withdraw_s)),
        "build_s": round(build_s, 3),
        "refused_by_routers": rejected,
        "mrai_s": next(iter(routers.values())).config.mrai_s,
    }
    return out


def run(quick: bool = False, as_graph: str | Path | None = None, seed: int = SEED) -> dict:
    routing_log = logging.getLogger("marketplace.routing")
    level = routing_log.level
    routing_log.setLevel(logging.ERROR)  # refused lines are counted in the figures, not logged one by one
    try:
        return {**_run(quick, as_graph, seed), **balance.run(quick=quick)}
    finally:
        routing_log.setLevel(level)


def _run(quick: bool, as_graph: str | Path | None, seed: int) -> dict:
    if as_graph is not None:
        graph = read_as_graph(as_graph)
        out = measure(graph, name=Path(as_graph).name)
        rep = graph.report
        out["file_lines"] = rep.lines
        out["refused_lines"] = sum(rep.refused.values())
        out["contradictions"] = len(rep.contradictions)
        return out
    n = QUICK_ASES if quick else ASES
    t = time.perf_counter()
    graph = internet_graph(n, seed)
    generate_s = time.perf_counter() - t
    out = measure(graph, name=f"random_internet_as_graph({n}, seed={seed})")
    out["generate_s"] = round(generate_s, 3)
    return out


def bench_domains(as_json: bool = typer.Option(False, "--json", help="print JSON (the default output)"),
                  quick: bool = typer.Option(False, "--quick", help=f"{QUICK_ASES} ASes instead of {ASES}"),
                  as_graph: Optional[Path] = typer.Option(None, "--as-graph", exists=True, dir_okay=False,
                                                          help="a CAIDA as-rel or SNAP as-caida file")) -> None:
    """Inter-domain summaries: one origin announces, then withdraws, across an AS graph (MRAI timers in
    simulated time); messages, wall and simulated seconds, stale routes left."""
    sys.stdout.write(json.dumps(run(quick=quick, as_graph=as_graph), indent=1) + "\n")


if __name__ == "__main__":
    typer.run(bench_domains)
