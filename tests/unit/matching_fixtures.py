"""Shared builders for the matching tests: real trace nodes, the Cogentco topology."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from marketplace.matching import Order, Provider, WorkloadDistribution
from marketplace.matching import trace
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement
from marketplace.routing.spf import RoutingTable
from marketplace.routing.topology import load_topology

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TRACES = FIXTURES / "traces"


@lru_cache(maxsize=1)
def nodes():
    return trace.load_nodes(TRACES / "openb_node_list_gpu_node.csv")


@lru_cache(maxsize=1)
def pods():
    return trace.load_pods(TRACES / "openb_pod_list_default.csv")


@lru_cache(maxsize=1)
def routing() -> RoutingTable:
    return RoutingTable(load_topology(FIXTURES / "topologies" / "Cogentco.gml"))


def workload(top: int | None = 40) -> WorkloadDistribution:
    return WorkloadDistribution.from_requirements([p.requirement for p in pods()], top=top)


def node(sn: str):
    return next(n for n in nodes() if n.sn == sn)


def provider(sn: str, pid: str | None = None, **kw) -> Provider:
    pid = pid or sn
    return Provider(pid, node(sn).descriptor(pid), **kw)


def gpu(count=1, share=1000, **kw) -> Requirement:
    return Requirement(DeviceClass.GPU, count=count, share_milli=share, **kw)


def order(oid: str, req: Requirement, tier=0, at=0.0, buyer=None) -> Order:
    return Order(oid, req, tier, buyer, at)
