"""Routing in CONA's convergence layer: topology, shortest paths, compute-aware selection, domains.

- ``topology``: ``Topology`` (immutable multigraph), ``TopologyBuilder``, Topology Zoo loaders;
- ``spf``: ``RoutingTable`` (latency shortest paths cached per source, incremental updates);
- ``select``: choose the provider and the path together, with load-balancing weights;
- ``domains``: path-vector exchange of per-device-class summaries between ASes;
- ``generate``: large topologies from replicated real ones (benchmarks, scale tests).

Pure core: no I/O beyond reading a topology file, no network, no chain.
"""

from marketplace.routing.domains import DomainRouter, DomainSummary, ProviderCapacity, Withdrawal, exchange
from marketplace.routing.select import Candidate, Choice, Rejection, evaluate, pick_balanced, select
from marketplace.routing.spf import LinkChange, NodeChange, RoutingTable, ShortestPaths
from marketplace.routing.topology import Link, Topology, TopologyBuilder, load_gml, load_graphml, load_topology

__all__ = [
    "Candidate", "Choice", "DomainRouter", "DomainSummary", "Link", "LinkChange", "NodeChange",
    "ProviderCapacity", "Rejection", "RoutingTable", "ShortestPaths", "Topology", "TopologyBuilder",
    "Withdrawal", "evaluate", "exchange", "load_gml", "load_graphml", "load_topology", "pick_balanced", "select",
]
