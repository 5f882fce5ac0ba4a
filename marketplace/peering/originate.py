"""LSAs a peer originates on behalf of providers: the origination file, sequence numbers, refresh.

An engine peer floods LSAs signed by provider keys. The origination file names each
provider's secp256k1 secret and what its LSA says; the peer numbers, signs and installs
them, and re-originates each one every ``refresh_interval`` seconds with the next sequence
number, so that it never reaches max age while the peer lives. A peer that dies stops
refreshing, and its LSAs age out everywhere else: that is how the network forgets it.

File format (JSON)::

    {"lsas": [{"key": "0x<32-byte secret>",
               "descriptor": <NodeDescriptor.canonical()>,
               "availability": [["CPU", 64000, 0], ["GPU", 2000, 0]],
               "prices": [["GPU", 1200]], "domain": 0, "attachment": "", "location": null}]}

Sequence numbers follow ISO 10589 7.3.16.1: a restarted peer starts again at 1, and when
it hears a copy of one of its own LSAs that is newer than what it holds (the old life's
copy, or a purge of it, still in the network), it re-originates above that sequence number.

Invariants: one ``Originator`` per provider key; every LSA this module returns is freshly
signed with lifetime ``max_age``; sequence numbers only grow within a process (until the
``Originator``'s own wrap procedure).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from marketplace.convergence.errors import SequenceWrapPending
from marketplace.convergence.lsa import COMPUTE_LSA, Availability, LsaContent, LsaHeader, address_of
from marketplace.convergence.lsdb import Originator
from marketplace.peering.errors import PeeringConfigError
from marketplace.resources.model import DeviceCapability, DeviceClass, NodeDescriptor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Origination:
    key: bytes
    content: LsaContent

    @property
    def originator(self) -> bytes:
        return address_of(self.key)


def descriptor_from_canonical(data: dict[str, Any]) -> NodeDescriptor:
    """The inverse of ``NodeDescriptor.canonical()``."""
    devices = []
    for d in data.get("devices", ()):
        devices.append(DeviceCapability(
            device_class=DeviceClass.parse(d["class"]), model=d["model"], vendor=d.get("vendor"),
            count=d.get("count", 1), compute_units=d.get("compute_units"), clock_mhz=d.get("clock_mhz"),
            flops=tuple((p, v) for p, v in d.get("flops", ())), memory_mib=d.get("memory_mib"),
            memory_bandwidth_gbps=d.get("memory_bandwidth_gbps"), interconnect=d.get("interconnect"),
            features=frozenset(d.get("features", ())), share_milli=d.get("share_milli", 1000)))
    return NodeDescriptor(hostname=data["hostname"], devices=tuple(devices), memory_mib=data.get("memory_mib"),
                          disk_gib=data.get("disk_gib"), numa_nodes=data.get("numa_nodes"), arch=data.get("arch"))


def content_to_json(content: LsaContent) -> dict[str, Any]:
    return {
        "descriptor": content.descriptor.canonical(),
        "availability": [[a.device_class.name, a.free_milli, a.load_bp] for a in content.availability],
        "prices": [[c.name, p] for c, p in content.prices],
        "domain": content.domain,
        "attachment": content.attachment,
        "location": list(content.location) if content.location is not None else None,
    }


def content_from_json(data: dict[str, Any]) -> LsaContent:
    loc = data.get("location")
    return LsaContent(
        descriptor=descriptor_from_canonical(data["descriptor"]),
        availability=tuple(Availability(DeviceClass.parse(c), int(free), int(load))
                           for c, free, load in data.get("availability", ())),
        prices=tuple((DeviceClass.parse(c), int(p)) for c, p in data.get("prices", ())),
        domain=int(data.get("domain", 0)),
        attachment=str(data.get("attachment", "")),
        location=(float(loc[0]), float(loc[1])) if loc is not None else None,
    )


def dump_file(path: Path, originations: list[Origination]) -> None:
    path.write_text(json.dumps({"lsas": [{"key": "0x" + o.key.hex(), **content_to_json(o.content)}
                                         for o in originations]}))


def load_file(path: Path) -> list[Origination]:
    try:
        data = json.loads(Path(path).read_text())
        out = []
        for i, item in enumerate(data["lsas"]):
            key = bytes.fromhex(item["key"].removeprefix("0x"))
            if len(key) != 32:
                raise PeeringConfigError(f"{path}: lsas[{i}].key must be 32 bytes, got {len(key)}", field="key")
            out.append(Origination(key, content_from_json(item)))
    except PeeringConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise PeeringConfigError(f"cannot read origination file {path}: {exc}", field="originate_from") from exc
    return out


class Originations:
    """The LSAs this peer originates: one ``convergence.lsdb.Originator`` per provider key.

    The ``Originator`` numbers, signs and times refreshes; this class adds what a peer
    needs around it: many providers, and a retry for an instance its own LSDB refused as
    arriving too soon after the previous one (RFC 2328 MinLSArrival applies to us too).
    """

    def __init__(self, *, max_age: int, zero_age_lifetime: int, refresh_interval: float,
                 retry_interval: float, clock: Callable[[], float]) -> None:
        self.max_age = max_age
        self.zero_age_lifetime = zero_age_lifetime
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.clock = clock
        self._originators: dict[bytes, Originator] = {}  # by originator address
        self._by_key: dict[bytes, Originator] = {}
        self._content: dict[bytes, LsaContent] = {}
        self._retry_at: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._originators)

    def owns(self, key: tuple[int, bytes]) -> bool:
        return key[0] == COMPUTE_LSA and key[1] in self._originators

    def sequence(self, originator: bytes) -> int:
        return self._originators[originator].sequence

    def add(self, originations: list[Origination]) -> list[bytes]:
        """Take these over (new content for a known originator) and issue the next instance of each."""
        out = []
        for o in originations:
            orig = self._by_key.get(o.key)
            if orig is None:  # deriving the address costs a public key and a keccak: once per key
                orig = Originator(o.key, self.clock, max_age=self.max_age, zero_age_lifetime=self.zero_age_lifetime,
                                  refresh_interval=self.refresh_interval)
                self._by_key[o.key] = self._originators[orig.address] = orig
            self._content[orig.address] = o.content
            out.append(self._issue(orig.address))
        return out

    def load(self, path: Path) -> list[bytes]:
        return self.add(load_file(path))

    def _issue(self, address: bytes) -> bytes:
        self._retry_at.pop(address, None)
        return self._originators[address].next(self._content[address])

    def due(self) -> list[bytes]:
        """Refreshes (and retries) that are due now, each a new instance."""
        now = self.clock()
        out = []
        for address, orig in self._originators.items():
            retry = self._retry_at.get(address)
            if (retry is not None and now >= retry) or orig.refresh_due(now):
                try:
                    out.append(self._issue(address))
                except SequenceWrapPending:
                    pass  # the Originator purged its last instance and waits for the network to forget it
        return out

    def refused(self, address: bytes) -> None:
        """Our own LSDB refused the instance just issued (too soon): issue another later."""
        self._retry_at[address] = self.clock() + self.retry_interval

    def heard(self, header: LsaHeader) -> bytes | None:
        """A neighbour's copy of one of our own LSAs was installed over ours (ISO 10589 7.3.16.1).

        It is newer than what we hold: the previous life's copy, or a purge of it. Either way
        we issue an instance above it, so our content wins again everywhere.
        """
        orig = self._originators.get(header.originator)
        if orig is None:
            return None
        orig.observe(header)
        log.info("own LSA %s heard with sequence %d (lifetime %d); re-originating", header.originator.hex(),
                 header.sequence, header.lifetime)
        return self._issue(header.originator)
