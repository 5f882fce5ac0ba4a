"""The topology document (``GET /v1/topology``): the network, its providers and their load, as JSON or GeoJSON.

Nodes (with coordinates where the topology has them), links (latency, bandwidth, cost, state)
and the providers attached to the network: the engine's when this process runs one (source
``engine``: attachment node, load 0..1, hostname, devices, price), else the registry's from
its events (source ``chain``: status and domain, no attachment). GeoJSON is a
FeatureCollection of ``Point`` features (nodes, ``[lon, lat]``, with the providers attached
and their highest load) and ``LineString`` features (links whose two ends are located).

``TopologyDocs`` keeps each format's encoded document until the topology, the providers or
the block change (a ``Topology`` is immutable, so identity compares it), so a repeated read
skips the rebuild and the response model's validation (done once, when built).

Pure rendering: no I/O; the route decides where providers and the block come from.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eth_utils import to_checksum_address

from marketplace.api.schemas import TopologyOut
from marketplace.chain.lifecycle import ProviderBook

if TYPE_CHECKING:
    from marketplace.routing import Topology

JSON, GEOJSON = "application/json", "application/geo+json"


def chain_providers(book: ProviderBook) -> list[dict[str, Any]]:
    """The registry's providers (status replayed from its events), for a process without an engine."""
    folds = sorted((to_checksum_address(f.address), f) for f in book.providers.values())
    return [{"address": who, "attachment": None, "load": None, "status": f.status.label, "domain": f.domain,
             "source": "chain"} for who, f in folds]


def engine_providers(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine's providers (``Engine.providers()``) as the topology shows them."""
    return [{"address": p["address"], "attachment": p.get("attachment"), "load": p.get("load"),
             "status": str(p.get("status")), "domain": p.get("domain"), "hostname": p.get("hostname"),
             "devices": p.get("devices", []), "price": p.get("price"), "source": "engine"} for p in listed]


def geojson(topo: Topology, providers: list[dict[str, Any]]) -> dict[str, Any]:
    at: dict[str, list[dict[str, Any]]] = {}
    for p in providers:
        if p.get("attachment") is not None:
            at.setdefault(str(p["attachment"]), []).append(p)
    features = []
    for nid in topo.nodes:
        n = topo.node_info.get(nid)
        if n is None or n.lat is None or n.lon is None:
            continue
        here = at.get(nid, [])
        loads = [p["load"] for p in here if p.get("load") is not None]
        features.append({"type": "Feature", "id": nid,
                         "geometry": {"type": "Point", "coordinates": [n.lon, n.lat]},  # GeoJSON is lon, lat
                         "properties": {"kind": "node", "id": nid, "label": n.label,
                                        "providers": [p["address"] for p in here],
                                        "load": max(loads) if loads else None}})
    for link in topo.links:
        a, b = topo.node_info.get(link.u), topo.node_info.get(link.v)
        if a is None or b is None or None in (a.lat, a.lon, b.lat, b.lon):
            continue
        features.append({"type": "Feature", "id": f"{link.u}-{link.v}-{link.key}",
                         "geometry": {"type": "LineString", "coordinates": [[a.lon, a.lat], [b.lon, b.lat]]},
                         "properties": {"kind": "link", "u": link.u, "v": link.v, "latency_ms": link.latency_ms,
                                        "bandwidth_mbps": link.bandwidth_mbps, "up": link.up}})
    return {"type": "FeatureCollection", "name": topo.name, "features": features}


def document(topo: Topology, providers: list[dict[str, Any]], block: int) -> dict[str, Any]:
    nodes = []
    for nid in topo.nodes:
        n = topo.node_info.get(nid)
        nodes.append({"id": nid, "label": n.label if n else "", "lat": n.lat if n else None,
                      "lon": n.lon if n else None, "internal": n.internal if n else True})
    links = [{"u": lk.u, "v": lk.v, "key": lk.key, "latency_ms": lk.latency_ms, "bandwidth_mbps": lk.bandwidth_mbps,
              "cost": lk.cost, "up": lk.up, "latency_source": lk.latency_source} for lk in topo.links]
    return {"name": topo.name, "nodes": nodes, "links": links, "providers": providers, "block": block}


def render(topo: Topology, providers: list[dict[str, Any]], block: int, format: str) -> tuple[bytes, str]:
    """The encoded document and its media type (blocking for a large topology: a worker thread's job)."""
    if format == "geojson":
        body = json.dumps(geojson(topo, providers), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return body.encode(), GEOJSON
    return TopologyOut.model_validate(document(topo, providers, block)).model_dump_json().encode(), JSON


class TopologyDocs:
    """The last document built per format, with what it was built from. Two first requests may both
    build one: either will do (a dict write is atomic)."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[Topology, object, bytes, str]] = {}

    def get(self, format: str, topo: Topology, key: object) -> tuple[bytes, str] | None:
        got = self._docs.get(format)
        if got is not None and got[0] is topo and got[1] == key:
            return got[2], got[3]
        return None

    def put(self, format: str, topo: Topology, key: object, body: bytes, media: str) -> None:
        self._docs[format] = (topo, key, body, media)
