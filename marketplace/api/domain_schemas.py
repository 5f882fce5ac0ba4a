"""The bodies of the multi-domain routes (``routes/domains.py``): this engine's domain and routes, and handovers.

Kept apart from ``schemas`` (the single-engine API) so each stays small; same conventions: every
field described, errors are problem details.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DomainRoute(BaseModel):
    origin: int = Field(description="the domain (AS) offering the capacity")
    device_class: str
    free: float = Field(description="devices (CPU: slots) free now in that domain")
    total: float
    min_price: float = Field(description="the lowest price per device-hour among its providers with free capacity")
    min_latency_ms: float = Field(description="from this domain's border, along the AS path")
    as_path: list[int] = Field(description="the domains the summary crossed, nearest first, ending at the origin")
    seq: int = Field(description="the origin's sequence number of this summary")


class DomainsOut(BaseModel):
    """What this engine knows of the other domains (``domain`` null: one engine runs the whole market)."""

    domain: int | None = Field(description="this engine's domain")
    home: str | None = Field(None, description="its home node in the topology")
    engines: dict[str, str] = Field(description="domain -> the API of the engine that runs it")
    sessions: list[int] = Field(default_factory=list, description="neighbour domains with an authenticated session")
    routes: list[DomainRoute] = Field(default_factory=list, description="the selected summary per origin and class")
    rejected: dict[str, int] = Field(default_factory=dict, description="refused input from peers, by reason")
    counters: dict[str, int] = Field(default_factory=dict)
    bridge: dict[str, int] = Field(default_factory=dict, description="flooded LSAs handed to the engine, by outcome")
    artifacts: dict[str, int] = Field(default_factory=dict, description="artifacts fetched from other domains' "
                                      "engines, and fetches that failed, by reason")
    ownership: dict[str, Any] = Field(default_factory=dict, description="orders handed over, in flight, taken over")
    peering: dict[str, Any] = Field(default_factory=dict, description="the flooding peer's status")


class HandoverIn(BaseModel):
    """An order one domain's engine hands to another's, signed by the sender's orchestrator key."""

    order: int = Field(ge=0, description="the order id on chain (Open)")
    from_domain: int = Field(ge=0, description="the sender's domain")
    to_domain: int = Field(ge=0, description="this engine's domain")
    timestamp: int = Field(ge=0, description="unix seconds; at most a minute from the receiver's clock")
    signature: str = Field(description="65 bytes, hex: the sender's orchestrator key over the fields and the "
                                       "spec's digest (docs/engine.md, \"Multi-domain markets\")")
    spec: dict[str, Any] = Field(description="the order's document (its digest is the order's requirement)")


class HandoverOut(BaseModel):
    order: int
    accepted: bool
    domain: int = Field(description="the domain that now matches the order")
