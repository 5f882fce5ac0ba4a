"""One engine's ``DomainRouter`` driven over its peering circuits: sessions, OPENs, UPDATEs, timers.

The router is pure; this is its driver in an engine process (``routing/domains.py`` names what a
driver does). A **session** with a neighbour domain exists while at least one peering circuit to
it is UP *and* authenticated:

1. when a circuit's adjacency comes up, this engine sends its signed ``DomainOpen`` on it;
2. an OPEN heard on a circuit is checked (``session.check_open``: the domain the HELLO named, the
   key the federation lists for that domain, registered on chain); a bad one is refused with a
   counted, logged reason and the circuit is closed, so no route is ever installed from an engine
   that lies about its domain;
3. the first authenticated circuit to a neighbour is ``router.peer_up`` (the whole exportable
   table goes to it); losing the last one is ``router.peer_down`` (its routes withdrawn at once),
   which is how the others forget a dead engine's domain within the peering hold time;
4. an UPDATE on a circuit not (yet) authenticated is refused (``unauthenticated``); an
   authenticated one goes to ``receive_wire`` with the session's domain as the authenticated peer,
   so the router's own checks apply (``peer-as-mismatch``, ``first-as-mismatch``, loops,
   malformed items, damping of a flapping neighbour).

Every neighbour starts down: nothing is exported before a session exists. ``originate`` (the
engine's own capacity), ``tick`` (MRAI and damping timers), ``routes`` (a buyer's ranked domains)
may be called from any thread: the router is behind one lock; what it returns is handed to
``send`` (the node's thread-safe ``send_to``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable, Iterable

from marketplace.federation.config import Federation
from marketplace.federation.session import check_open, open_for
from marketplace.peering.wire import DomainOpen, DomainUpdate, Message as PeerMessage
from marketplace.resources.model import DeviceClass
from marketplace.routing import DomainRouter, DomainSummary, Neighbor, ProviderCapacity
from marketplace.routing.domain_policy import DomainConfig, market_config
from marketplace.routing.domain_values import Message
from marketplace.routing.domain_wire import encode_update, receive_wire

log = logging.getLogger(__name__)


class DomainSpeaker:
    """The inter-domain half of an engine's peering (see the module docstring)."""

    def __init__(self, domain: int, fed: Federation, *, key: bytes,
                 send: Callable[[str, list[PeerMessage]], None], close: Callable[[str, str], None],
                 is_orchestrator: Callable[[str], bool], config: DomainConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.domain, self.fed, self.key = domain, fed, key
        self.send, self.close, self.is_orchestrator = send, close, is_orchestrator
        self.clock, self.wall = clock, wall
        neighbours = {n: Neighbor(ms) for n, ms in fed.neighbours(domain).items()}
        # origin sequence numbers from the wall clock (ms): a restarted engine starts above every
        # summary its previous life sent, which its neighbours' tombstones may still remember
        self.router = DomainRouter(domain, neighbours, config=config or market_config(),
                                   seq_base=int(wall() * 1000))
        self.lock = threading.Lock()
        self.circuits: dict[str, int] = {}
        self.authed: dict[str, int] = {}
        self.rejected: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        now = clock()
        for n in neighbours:
            self.router.peer_down(n, now)  # no session until an authenticated circuit exists

    # -- the node's events (its event loop thread)

    def adjacency_up(self, peer: int, circuit: str) -> None:
        with self.lock:
            self.circuits[circuit] = peer
            if peer not in self.router.neighbors:
                self._refuse("not-a-neighbour", peer, circuit, "not configured as a neighbour domain")
                return
        self.send(circuit, [open_for(self.key, self.fed, self.domain, peer, self.wall())])
        self.counters["open_sent"] += 1

    def adjacency_down(self, peer: int, circuit: str) -> None:
        with self.lock:
            self.circuits.pop(circuit, None)
            was = self.authed.pop(circuit, None)
            if was is not None and was not in self.authed.values():
                log.warning("domain %d: session with domain %d down (circuit %s)", self.domain, was, circuit)
                self._emit(self.router.peer_down(was, self.clock()))

    def domain_message(self, peer: int, circuit: str, msg: DomainOpen | DomainUpdate) -> None:
        with self.lock:
            if isinstance(msg, DomainOpen):
                self._on_open(peer, circuit, msg)
            elif circuit not in self.authed:
                self._refuse("unauthenticated", peer, circuit, "UPDATE before a valid OPEN")
            else:
                self.counters["updates_in"] += 1
                self._emit(receive_wire(self.router, msg.raw, self.clock(), peer=self.authed[circuit]))

    def _on_open(self, peer: int, circuit: str, msg: DomainOpen) -> None:
        reason = check_open(msg, fed=self.fed, heard=peer, me=self.domain, now=self.wall(),
                            is_orchestrator=self.is_orchestrator)
        if reason is None and peer not in self.router.neighbors:
            reason = "not-a-neighbour"
        if reason is not None:
            self._refuse(reason, peer, circuit, f"OPEN claims domain {msg.domain}")
            self.close(circuit, f"refused OPEN ({reason})")
            return
        first = peer not in self.authed.values()
        self.authed[circuit] = peer
        self.counters["sessions_up"] += first
        if first:
            log.info("domain %d: session with domain %d up (circuit %s)", self.domain, peer, circuit)
            self._emit(self.router.peer_up(peer, self.clock()))

    def _refuse(self, reason: str, peer: int, circuit: str, detail: str) -> None:
        self.rejected[reason] += 1
        log.warning("domain %d: refused from peer %d on circuit %s (%s): %s", self.domain, peer, circuit, reason,
                    detail)

    # -- the engine's calls (any thread)

    def originate(self, capacities: Iterable[ProviderCapacity]) -> None:
        with self.lock:
            self._emit(self.router.originate(capacities, self.clock()))

    def tick(self) -> None:
        """Fire the router's timers that are due (MRAI batches, damping reuse)."""
        with self.lock:
            due = self.router.next_due()
            now = self.clock()
            if due is not None and due <= now:
                self._emit(self.router.poll(now))

    def routes(self, device_class: DeviceClass) -> list[DomainSummary]:
        with self.lock:
            return self.router.routes(device_class)

    def sessions(self) -> list[int]:
        with self.lock:
            return sorted(set(self.authed.values()))

    def status(self) -> dict[str, object]:
        with self.lock:
            table = [{"origin": s.origin_as, "device_class": s.device_class.name.lower(), "free": s.free,
                      "total": s.total, "min_price": s.min_price, "min_latency_ms": round(s.min_latency_ms, 3),
                      "as_path": list(s.as_path), "seq": s.seq}
                     for (_, _), r in sorted(self.router.table().items()) for s in [r.summary]]
            return {"domain": self.domain, "sessions": sorted(set(self.authed.values())), "routes": table,
                    "rejected": dict(self.rejected) | {f"router:{k}": v for k, v in self.router.rejected.items()},
                    "counters": dict(self.counters) | {f"router:{k}": v for k, v in self.router.counters.items()}}

    def _emit(self, messages: list[Message]) -> None:
        for m in messages:
            circuit = next((c for c, p in self.authed.items() if p == m.receiver), None)
            if circuit is None:
                self.counters["unsent"] += 1  # the session went down meanwhile; peer_up resends all
                continue
            self.counters["updates_out"] += 1
            self.send(circuit, [DomainUpdate(encode_update(m))])
