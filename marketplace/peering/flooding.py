"""Reliable flooding over point-to-point adjacencies: SRM and SSN flags as in ISO 10589.

For every neighbour with an adjacency UP and every LSA key, a peer keeps two flags:

- **SRM** (send routing message): this LSA must go to that neighbour. Set when the LSA is
  installed from elsewhere or originated here, when the neighbour's summary shows an older
  copy, or when its CSNP range omits the LSA. Cleared only by an acknowledgement: a PSNP
  entry or an LSA of the same instance from that neighbour. While set, the LSA is resent
  every ``retransmit_interval`` seconds.
- **SSN** (send sequence numbers): a PSNP entry must go to that neighbour, either to
  acknowledge an LSA it sent us or to request one it has and we lack (a request names the
  copy we hold, or sequence 0 when we hold none). SSN flags are flushed in one PSNP per
  neighbour per round and never retransmitted: a lost request is repaired by the next CSNP.

Receiving an LSA follows ISO 10589 7.3.15.1: the LSDB decides (``install``), and its
``InstallResult`` says whether to flood (SRM on every other neighbour) and whether to
acknowledge. A rejected LSA changes nothing but counters: the LSDB never stores it, and the
reason is counted under ``rejected[reason]`` and logged with the neighbour's id.

Receiving a CSNP or PSNP follows 7.3.15.2: per listed entry, an equal copy clears SRM, a
newer copy of ours sets SRM, a newer copy of theirs sets SSN (a request); and for a CSNP,
every LSA of ours inside its key range that it does not list sets SRM. Both ends send a CSNP
when the adjacency comes up, so after one exchange each side has asked for what it lacks.

The class is pure: no sockets, no clock of its own. Callers pass ``now``, feed received
messages to ``receive`` and send what ``poll`` returns. Invariants: SRM and SSN exist only
for neighbours that are UP; an LSA is never sent back to the neighbour it just came from.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from marketplace.peering.wire import MAX_ENTRIES, Csnp, Key, LsaFrame, Message, Psnp, SnpEntry, chunk_csnp

log = logging.getLogger(__name__)


class LinkStateDb(Protocol):
    """What flooding needs from ``marketplace.convergence.lsdb.Lsdb``."""

    def install(self, raw: bytes): ...
    def headers(self): ...
    def tick(self) -> list[bytes]: ...
    def digest(self) -> bytes: ...
    def __len__(self) -> int: ...


class LsdbAccess(Protocol):
    """The few per-key views flooding needs, adapted from the LSDB's own API in ``node``."""

    def summary(self, key: Key) -> SnpEntry | None: ...
    def summaries(self) -> list[SnpEntry]: ...
    def raw_now(self, key: Key) -> bytes | None: ...
    def key_of(self, raw: bytes) -> Key: ...


def compare(a: SnpEntry, b: SnpEntry) -> int:
    """1 if ``a`` is the newer instance, -1 if ``b`` is, 0 if the same (ISO 10589 7.3.16).

    The same order as ``marketplace.convergence.lsa.newer`` (a test holds them equal): a
    higher sequence number is newer, then a higher checksum, then a purge (remaining
    lifetime 0) over a live copy, so a purge overtakes the copy it retires.
    """
    if a.sequence != b.sequence:
        return 1 if a.sequence > b.sequence else -1
    if a.checksum != b.checksum:
        return 1 if a.checksum > b.checksum else -1
    a_purged, b_purged = a.lifetime == 0, b.lifetime == 0
    if a_purged != b_purged:
        return 1 if a_purged else -1
    return 0


@dataclass
class Neighbour:
    circuit: str
    peer_id: int
    #: key -> time last sent (None: not sent yet)
    srm: dict[Key, float | None] = field(default_factory=dict)
    ssn: set[Key] = field(default_factory=set)
    csnp_due: float = 0.0


class Flooder:
    def __init__(self, db: LsdbAccess, lsdb: LinkStateDb, node_id: int, *, retransmit_interval: float = 5.0,
                 csnp_interval: float = 10.0) -> None:
        self.db = db
        self.lsdb = lsdb
        self.node_id = node_id
        self.retransmit_interval = retransmit_interval
        self.csnp_interval = csnp_interval
        self.neighbours: dict[str, Neighbour] = {}
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()

    # -- adjacencies -------------------------------------------------------------------------
    def adjacency_up(self, circuit: str, peer_id: int, now: float) -> None:
        self.neighbours[circuit] = Neighbour(circuit, peer_id, csnp_due=now)
        self.counters["adjacency_up"] += 1

    def adjacency_down(self, circuit: str) -> None:
        if self.neighbours.pop(circuit, None) is not None:
            self.counters["adjacency_down"] += 1

    # -- local events ------------------------------------------------------------------------
    def _flood(self, key: Key, *, except_circuit: str | None = None) -> None:
        for nb in self.neighbours.values():
            if nb.circuit != except_circuit:
                nb.srm[key] = None
                nb.ssn.discard(key)

    def originate(self, raw: bytes):
        """Install an LSA originated here (or handed to us by a provider) and flood it."""
        result = self.lsdb.install(raw)
        self._count(result, "local")
        if result.flood:
            self._flood(self.db.key_of(raw))
        return result

    def age(self) -> int:
        """Run LSDB ageing; purges of LSAs that reached max age are flooded to everyone."""
        purges = self.lsdb.tick()
        for raw in purges:
            self._flood(self.db.key_of(raw))
        self.counters["purged"] += len(purges)
        return len(purges)

    # -- received messages -------------------------------------------------------------------
    def receive(self, circuit: str, msg: Message, now: float):
        """Process one message from a neighbour; for an LSA, return the LSDB's ``InstallResult``."""
        nb = self.neighbours.get(circuit)
        if nb is None:
            self.counters["ignored_not_up"] += 1
            return None
        if isinstance(msg, LsaFrame):
            return self._receive_lsa(nb, msg.raw)
        elif isinstance(msg, Psnp):
            self.counters["rx_psnp"] += 1
            self._receive_entries(nb, msg.entries)
        elif isinstance(msg, Csnp):
            self.counters["rx_csnp"] += 1
            self._receive_entries(nb, msg.entries)
            listed = {e.key for e in msg.entries}
            for entry in self.db.summaries():
                if msg.start <= entry.key <= msg.end and entry.key not in listed and entry.lifetime > 0:
                    nb.srm.setdefault(entry.key, None)
        return None

    def _count(self, result, source: str) -> None:
        outcome = result.outcome.name.lower()
        self.counters[f"lsa_{outcome}"] += 1
        if outcome == "rejected":
            self.rejected[result.reason or outcome] += 1
            log.warning("node %d: LSA from %s rejected: %s", self.node_id, source, result.reason)
        elif outcome == "too_soon":  # not a fault: the sender retransmits once MinLSArrival has passed
            log.debug("node %d: LSA from %s too soon after the previous instance", self.node_id, source)

    def _receive_lsa(self, nb: Neighbour, raw: bytes):
        self.counters["rx_lsa"] += 1
        result = self.lsdb.install(raw)
        self._count(result, f"neighbour {nb.peer_id}")
        outcome = result.outcome.name
        if outcome in ("REJECTED", "TOO_SOON"):
            # nothing about the key can be trusted if the bytes did not decode; the LSDB did
            # not change, so there is no flag to set (the sender retransmits if it must)
            return result
        key = self.db.key_of(raw)
        if outcome in ("INSTALLED", "DUPLICATE"):
            nb.srm.pop(key, None)  # its copy equals ours now: an implicit acknowledgement
            if result.ack:
                nb.ssn.add(key)
            if result.flood:
                self._flood(key, except_circuit=nb.circuit)
        elif outcome == "OLDER":
            nb.srm[key] = None  # it sent an older copy: answer with ours
            nb.ssn.discard(key)
        return result

    def _receive_entries(self, nb: Neighbour, entries: Iterable[SnpEntry]) -> None:
        for entry in entries:
            ours = self.db.summary(entry.key)
            if ours is None:
                if entry.sequence != 0 and entry.lifetime > 0:
                    nb.ssn.add(entry.key)  # they hold one we lack: request it
                continue
            order = compare(ours, entry)
            if order == 0:
                if nb.srm.pop(entry.key, 0) != 0:
                    self.counters["acked"] += 1
            elif order > 0:
                nb.srm.setdefault(entry.key, None)
                nb.ssn.discard(entry.key)
            else:
                nb.ssn.add(entry.key)
                nb.srm.pop(entry.key, None)

    # -- output ------------------------------------------------------------------------------
    def poll(self, now: float) -> list[tuple[str, Message]]:
        """Everything due now: CSNPs, LSAs flagged SRM (new or to retransmit), PSNPs for SSN."""
        out: list[tuple[str, Message]] = []
        for nb in self.neighbours.values():
            if now >= nb.csnp_due:
                for csnp in chunk_csnp(self.db.summaries()):
                    out.append((nb.circuit, csnp))
                    self.counters["tx_csnp"] += 1
                nb.csnp_due = now + self.csnp_interval
            for key, sent in list(nb.srm.items()):
                if sent is not None and now - sent < self.retransmit_interval:
                    continue
                raw = self.db.raw_now(key)
                if raw is None:  # aged out and removed since the flag was set
                    del nb.srm[key]
                    continue
                out.append((nb.circuit, LsaFrame(raw)))
                nb.srm[key] = now
                self.counters["tx_lsa"] += 1
                if sent is not None:
                    self.counters["retransmitted"] += 1
            if nb.ssn:
                entries = []
                for key in nb.ssn:
                    ours = self.db.summary(key)
                    entries.append(ours if ours is not None else SnpEntry.request(key))
                nb.ssn.clear()
                for i in range(0, len(entries), MAX_ENTRIES):
                    out.append((nb.circuit, Psnp(tuple(entries[i:i + MAX_ENTRIES]))))
                    self.counters["tx_psnp"] += 1
        return out

    def next_deadline(self) -> float | None:
        """The earliest time ``poll`` will have something to do without a new message."""
        times: list[float] = []
        for nb in self.neighbours.values():
            times.append(nb.csnp_due)
            if nb.ssn:
                return 0.0
            for sent in nb.srm.values():
                if sent is None:
                    return 0.0
                times.append(sent + self.retransmit_interval)
        return min(times) if times else None

    def pending(self) -> int:
        """LSAs not yet acknowledged, summed over neighbours."""
        return sum(len(nb.srm) for nb in self.neighbours.values())
