"""Routing in CONA's convergence layer: topology, shortest paths, compute-aware selection, domains.

- ``topology``: ``Topology`` (immutable multigraph), ``TopologyBuilder``, Topology Zoo loaders;
- ``spf``: ``RoutingTable`` (latency shortest paths cached per source, incremental updates);
- ``select``: choose the provider and the path together, with load-balancing weights;
- ``domains``: path-vector exchange of per-device-class summaries between ASes (``DomainRouter``);
- ``domain_values``: the summaries, withdrawals and UPDATE messages it exchanges;
- ``domain_policy``: AS relationships, Gao-Rexford export rules, MRAI and flap damping settings;
- ``domain_sim``: ``DomainNetwork``, routers run by a discrete-event scheduler in simulated time;
- ``domain_wire``: the bytes of one UPDATE between engines, decoded item by item;
- ``asgraph``: AS graphs with relationships, read from CAIDA and SNAP files;
- ``generate``: large topologies from replicated real ones (benchmarks, scale tests).

Pure core: no I/O beyond reading a topology file, no network, no chain.
"""

from marketplace.routing.domain_policy import DampingConfig, DomainConfig, Relation, RouteClass
from marketplace.routing.domain_sim import Convergence, DomainNetwork
from marketplace.routing.domain_wire import decode_update, encode_update, receive_wire
from marketplace.routing.domain_values import DomainSummary, Message, Neighbor, ProviderCapacity, Route, Withdrawal
from marketplace.routing.domains import DomainRouter
from marketplace.routing.select import Candidate, Choice, Rejection, evaluate, pick_balanced, select
from marketplace.routing.spf import LinkChange, NodeChange, RoutingTable, ShortestPaths
from marketplace.routing.topology import Link, Topology, TopologyBuilder, load_gml, load_graphml, load_topology

__all__ = [
    "Candidate", "Choice", "Convergence", "DampingConfig", "DomainConfig", "DomainNetwork", "DomainRouter",
    "DomainSummary", "Link", "LinkChange", "Message", "Neighbor", "NodeChange", "ProviderCapacity", "Rejection",
    "Relation", "Route", "RouteClass", "RoutingTable", "ShortestPaths", "Topology", "TopologyBuilder", "Withdrawal",
    "decode_update", "encode_update", "evaluate", "load_gml", "load_graphml", "load_topology", "pick_balanced",
    "receive_wire", "select",
]
