"""The federation document: which engines run which domains, where they listen, who they peer with.

One JSON file, written by ``cona up --domains N`` (``launch``) and read by every engine
(``cona serve --domain D --federation FILE``), the way BGP speakers are configured with their
neighbours' addresses and AS numbers:

    {"version": 1, "chain_id": 31337, "market": "0x...",
     "domains": {"1": {"api": "http://127.0.0.1:8000", "peer": "127.0.0.1:7101",
                       "orchestrator": "0x...", "home": "4"}, ...},
     "links": [[1, 2, 2.345], ...],
     "timers": {"hello_interval": 0.2, "hold_time": 1.0, ...}}

- ``api``: the engine's web API (handovers go to ``<api>/v1/handovers``, agents attach to it);
- ``peer``: its flooding peer's TCP address (``host:port``);
- ``orchestrator``: the address of the key it signs with; the contract must list it as an
  orchestrator (``Market.set_orchestrator``, through the timelock), and every other engine checks
  that the engine speaking for this domain holds that key (``session``);
- ``home``: its home node in the topology (``routing.regions``);
- ``links``: the peerings, each with its latency in ms; ``timers``: the peering timers.

Invariants: domains are numbered from 1; every link joins two listed domains, once; addresses are
checksummed; a malformed document raises ``FederationError`` naming the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from marketplace.errors import ConfigError

VERSION = 1
#: the peering timers of a market whose heartbeats are 0.2 s: an engine that dies leaves the
#: others' tables within the hold time (its TCP sessions usually close at once)
DEFAULT_TIMERS = {"hello_interval": 0.2, "hold_time": 1.0, "retransmit_interval": 0.5, "csnp_interval": 2.0,
                  "tick_interval": 0.5, "min_arrival_interval": 0.2}


class FederationError(ConfigError):
    code = "federation"


@dataclass(frozen=True, slots=True)
class DomainEntry:
    domain: int
    api: str
    peer_host: str
    peer_port: int
    orchestrator: str
    home: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"api": self.api, "peer": f"{self.peer_host}:{self.peer_port}", "orchestrator": self.orchestrator,
                "home": self.home}


@dataclass(frozen=True)
class Federation:
    chain_id: int
    market: str
    domains: dict[int, DomainEntry]
    links: tuple[tuple[int, int, float], ...]
    timers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMERS))

    def entry(self, domain: int) -> DomainEntry:
        if domain not in self.domains:
            raise FederationError(f"domain {domain} is not in the federation ({sorted(self.domains)})",
                                  field="domain")
        return self.domains[domain]

    def neighbours(self, domain: int) -> dict[int, float]:
        """Neighbour domain -> link latency (ms)."""
        out: dict[int, float] = {}
        for a, b, ms in self.links:
            if a == domain:
                out[b] = ms
            elif b == domain:
                out[a] = ms
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "chain_id": self.chain_id, "market": self.market,
                "domains": {str(d): e.to_dict() for d, e in sorted(self.domains.items())},
                "links": [list(link) for link in self.links], "timers": dict(self.timers)}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> "Federation":
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FederationError(f"no federation document at {path}", field="federation",
                                  hint="`cona up --domains N` writes one") from None
        except (OSError, ValueError) as exc:
            raise FederationError(f"{path}: not a JSON document ({exc})", field="federation") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> "Federation":
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise FederationError(f"a federation document of version {VERSION} is an object with "
                                  f"\"version\": {VERSION}", field="version")
        domains = {}
        raw = doc.get("domains")
        if not isinstance(raw, dict) or not raw:
            raise FederationError("domains must be a non-empty object", field="domains")
        for key, value in raw.items():
            entry = _entry(key, value)
            domains[entry.domain] = entry
        links = []
        seen: set[tuple[int, int]] = set()
        for i, link in enumerate(doc.get("links") or []):
            where = f"links[{i}]"
            if not (isinstance(link, list) and len(link) == 3 and all(isinstance(x, (int, float)) for x in link)):
                raise FederationError(f"{where} must be [domain, domain, latency_ms]", field=where)
            a, b, ms = int(link[0]), int(link[1]), float(link[2])
            if a == b or a not in domains or b not in domains or not ms >= 0:
                raise FederationError(f"{where} must join two different listed domains with a latency >= 0",
                                      field=where)
            pair = (min(a, b), max(a, b))
            if pair in seen:
                raise FederationError(f"{where} repeats the link {pair}", field=where)
            seen.add(pair)
            links.append((pair[0], pair[1], ms))
        timers = doc.get("timers") or {}
        if not isinstance(timers, dict) or not all(isinstance(v, (int, float)) for v in timers.values()):
            raise FederationError("timers must map names to numbers of seconds", field="timers")
        market = doc.get("market")
        if not (isinstance(market, str) and is_address(market)):
            raise FederationError("market must be the ComputeMarket address", field="market")
        chain_id = doc.get("chain_id")
        if not isinstance(chain_id, int) or chain_id <= 0:
            raise FederationError("chain_id must be a positive integer", field="chain_id")
        return cls(chain_id, to_checksum_address(market), domains, tuple(links), {**DEFAULT_TIMERS, **timers})


def _entry(key: Any, value: Any) -> DomainEntry:
    where = f"domains.{key}"
    if not (isinstance(key, str) and key.isdigit() and int(key) >= 1):
        raise FederationError(f"{where}: domains are numbered from 1", field=where)
    if not isinstance(value, dict):
        raise FederationError(f"{where} must be an object", field=where)
    api, peer, who = value.get("api"), value.get("peer"), value.get("orchestrator")
    if not (isinstance(api, str) and api.startswith(("http://", "https://"))):
        raise FederationError(f"{where}.api must be an http(s) URL", field=f"{where}.api")
    host, sep, port = str(peer).rpartition(":")
    if not (isinstance(peer, str) and sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise FederationError(f"{where}.peer must be HOST:PORT", field=f"{where}.peer")
    if not (isinstance(who, str) and is_address(who)):
        raise FederationError(f"{where}.orchestrator must be an address", field=f"{where}.orchestrator")
    home = value.get("home")
    if home is not None and not isinstance(home, str):
        raise FederationError(f"{where}.home must be a node id", field=f"{where}.home")
    return DomainEntry(int(key), api.rstrip("/"), host, int(port), to_checksum_address(who), home)
