"""Many ``DomainRouter``s joined by links, run by a discrete-event scheduler in simulated time.

The routers are the real ones (the same objects an engine process drives over its peering
transport); only the transport and the clock are simulated. A message sent at time ``t``
over the link from ``a`` to ``b`` is delivered at ``t + latency(a, b) / 1000 +
processing_s``, and never before a message sent earlier on the same link (links are FIFO,
as a TCP session is). After every event the network asks the router that handled it for
``next_due()`` and schedules its ``poll`` then, so MRAI timers and damping reuse timers
fire in simulated seconds while the run itself takes only the CPU time of the messages.

Convergence is measured as RFC 4098 describes for a BGP device, applied to the whole
network: from the triggering event (an origination, a withdrawal, a session failure) to
the last UPDATE message delivered; ``Convergence`` reports that simulated time with the
number of UPDATE messages and the items (summaries and withdrawals) they carried.

Invariants: simulated time never goes backwards; each directed link delivers in send
order; a run stops with ``DomainError`` rather than loop past ``max_messages``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass
from typing import Iterable, Mapping

from marketplace.routing.domain_values import Message, ProviderCapacity
from marketplace.routing.domains import DomainRouter
from marketplace.routing.errors import DomainError

log = logging.getLogger(__name__)

_DELIVER, _TIMER = 0, 1


@dataclass(frozen=True, slots=True)
class Convergence:
    """One run to quiescence: UPDATE messages delivered, the items they carried, and the
    simulated seconds from the trigger to the last delivery."""

    messages: int
    items: int
    sim_s: float


class DomainNetwork:
    """Routers by AS number; links are the routers' neighbour tables."""

    def __init__(self, routers: Mapping[int, DomainRouter], *, processing_s: float = 0.0,
                 max_messages: int = 5_000_000) -> None:
        if processing_s < 0:
            raise DomainError("processing_s must be >= 0", field="processing_s")
        self.routers = dict(routers)
        self.processing_s = float(processing_s)
        self.max_messages = int(max_messages)
        self.now = 0.0
        self._heap: list[tuple] = []
        self._tie = itertools.count()
        self._link_clear: dict[tuple[int, int], float] = {}
        self._timer_at: dict[int, float] = {}
        for asn, r in self.routers.items():
            self._schedule_timer(asn, r)

    # ------------------------------------------------------------------ triggers

    def send(self, messages: Iterable[Message]) -> None:
        """Put messages on their links at the current time."""
        for m in messages:
            if m.receiver not in self.routers:
                raise DomainError(f"message from AS{m.sender} to unknown AS{m.receiver}", asn=m.receiver)
            sender = self.routers.get(m.sender)
            nb = sender.neighbors.get(m.receiver) if sender is not None else None
            t = self.now + (nb.latency_ms / 1000.0 if nb is not None else 0.0) + self.processing_s
            link = (m.sender, m.receiver)
            t = max(t, self._link_clear.get(link, t))
            self._link_clear[link] = t
            heapq.heappush(self._heap, (t, next(self._tie), _DELIVER, m))

    def originate(self, asn: int, providers: Iterable[ProviderCapacity]) -> None:
        self._handled(asn, self._router(asn).originate(providers, self.now))

    def peer_down(self, a: int, b: int) -> None:
        """The session between ``a`` and ``b`` fails on both sides."""
        self._handled(a, self._router(a).peer_down(b, self.now))
        self._handled(b, self._router(b).peer_down(a, self.now))

    def peer_up(self, a: int, b: int) -> None:
        self._handled(a, self._router(a).peer_up(b, self.now))
        self._handled(b, self._router(b).peer_up(a, self.now))

    # ------------------------------------------------------------------ running

    def run(self, until: float | None = None) -> Convergence:
        """Deliver messages and fire timers (MRAI, damping reuse) until nothing is queued, or
        until simulated time ``until`` (then ``now`` is ``until``); time goes on from where the
        last run stopped."""
        start = self.now
        last = start
        messages = items = 0
        heap = self._heap
        routers = self.routers
        while heap:
            if until is not None and heap[0][0] > until:
                self.now = max(self.now, until)
                break
            t, _, kind, x = heapq.heappop(heap)
            self.now = t
            if kind == _DELIVER:
                messages += 1
                if messages > self.max_messages:
                    raise DomainError(f"no convergence after {self.max_messages} messages")
                items += len(x.body)
                last = t
                self._handled(x.receiver, routers[x.receiver].receive(x, t, peer=x.sender))
            elif self._timer_at.get(x) == t:
                del self._timer_at[x]
                self._handled(x, routers[x].poll(t))
        return Convergence(messages, items, last - start)

    def advance(self, seconds: float) -> None:
        """Let simulated time pass between runs (timers are drained by ``run``, so nothing is due)."""
        if self._heap:
            raise DomainError("advance() with events still queued: run() first")
        if not seconds >= 0:
            raise DomainError("cannot go back in time", field="seconds")
        self.now += seconds

    def _handled(self, asn: int, out: list[Message]) -> None:
        if out:
            self.send(out)
        self._schedule_timer(asn, self.routers[asn])

    def _schedule_timer(self, asn: int, router: DomainRouter) -> None:
        due = router.next_due()
        if due is None:
            return
        due = max(due, self.now)
        current = self._timer_at.get(asn)
        if current is None or due < current:
            self._timer_at[asn] = due
            heapq.heappush(self._heap, (due, next(self._tie), _TIMER, asn))

    def _router(self, asn: int) -> DomainRouter:
        r = self.routers.get(asn)
        if r is None:
            raise DomainError(f"unknown AS{asn}", asn=asn)
        return r
