"""Inter-domain exchange of aggregated compute summaries, by path vector, the way BGP does.

Inside a domain (an autonomous system, AS) every provider floods its link-state
advertisement; across domains only one ``DomainSummary`` per (origin AS, device class)
travels: total and free capacity, the lowest price and the lowest latency from the border,
with the AS path it took. A buyer in one AS can thus be matched to a provider in another
without every LSA crossing the border.

Each ``DomainRouter`` (one per AS):
- originates one summary per device class from its own providers (``originate``), and
  withdraws a class whose free capacity drops to zero or whose providers are gone;
- receives summaries and withdrawals from neighbour ASes (``receive``) and keeps them per
  neighbour (Adj-RIB-In); a summary whose AS path already holds this AS is a loop: it is
  rejected, counted, and treated as a withdrawal of what that neighbour sent before
  (RFC 4271 section 9.1.2, RFC 7606 "treat-as-withdraw");
- selects one best route per (origin, class) by the decision process below (Loc-RIB);
- propagates a changed best to every neighbour, with its own AS prepended and the
  inter-AS link latency (plus its ``transit_latency_ms`` when it is a transit) added;
  an unchanged best is not re-sent (Adj-RIB-Out), which is what makes the exchange
  converge; when no route is left it sends a ``Withdrawal``.

Decision process, first difference wins (documented in ``docs/routing.md``):
1. shortest AS path; 2. lower ``min_latency_ms``; 3. lower ``min_price``;
4. lowest origin AS (orders routes across origins for a buyer, see ``routes``);
5. lowest neighbour AS it was learned from (deterministic tie-break, like BGP's lowest
   router id). A locally originated route always wins for its own origin.

Invariants: ``as_path[0]`` is the AS that sent the summary and ``as_path[-1]`` the
origin; no selected route's AS path holds the router's own AS twice or at all (except a
local route); ``0 <= free <= total``; the exchange is deterministic given the order of
messages, and ``exchange`` delivers them in FIFO order.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from marketplace.resources.model import DeviceClass
from marketplace.routing.errors import DomainError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProviderCapacity:
    """One provider's contribution to its domain's summary for one device class."""

    provider_id: str
    device_class: DeviceClass
    total: float
    free: float
    price: float
    latency_ms: float = 0.0  # from the domain's border to the provider

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))
        if not (0 <= self.free <= self.total) or not math.isfinite(self.total):
            raise DomainError(f"provider {self.provider_id}: need 0 <= free <= total, got free={self.free} "
                              f"total={self.total}", provider=self.provider_id)
        if not (self.price >= 0 and self.latency_ms >= 0):
            raise DomainError(f"provider {self.provider_id}: price and latency must be >= 0",
                              provider=self.provider_id)


@dataclass(frozen=True, slots=True)
class DomainSummary:
    """Aggregated capacity of one device class in ``origin_as``, as seen along ``as_path``."""

    origin_as: int
    device_class: DeviceClass
    total: float
    free: float
    min_price: float
    as_path: tuple[int, ...]
    min_latency_ms: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))
        object.__setattr__(self, "as_path", tuple(int(a) for a in self.as_path))
        if not self.as_path or self.as_path[-1] != self.origin_as:
            raise DomainError(f"summary from AS{self.origin_as}: AS path {self.as_path} must end at the origin",
                              origin_as=self.origin_as)
        if not (0 <= self.free <= self.total):
            raise DomainError(f"summary from AS{self.origin_as}: need 0 <= free <= total, "
                              f"got free={self.free} total={self.total}", origin_as=self.origin_as)
        if not (self.min_price >= 0 and self.min_latency_ms >= 0):
            raise DomainError(f"summary from AS{self.origin_as}: price and latency must be >= 0",
                              origin_as=self.origin_as)

    @property
    def key(self) -> tuple[int, DeviceClass]:
        return (self.origin_as, self.device_class)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """The route to (origin, device class) through the sender is gone."""

    origin_as: int
    device_class: DeviceClass

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))

    @property
    def key(self) -> tuple[int, DeviceClass]:
        return (self.origin_as, self.device_class)


@dataclass(frozen=True, slots=True)
class Message:
    sender: int
    receiver: int
    body: DomainSummary | Withdrawal


@dataclass(frozen=True, slots=True)
class Route:
    """A selected route: the summary as received (or originated) and the neighbour it came via."""

    summary: DomainSummary
    via: int | None  # None: originated here

    def rank(self) -> tuple:
        s = self.summary
        return (len(s.as_path), s.min_latency_ms, s.min_price, s.origin_as, -1 if self.via is None else self.via)


Key = tuple[int, DeviceClass]


class DomainRouter:
    """The path-vector speaker of one AS. ``neighbors`` maps neighbour AS -> inter-AS link latency (ms)."""

    def __init__(self, asn: int, neighbors: Mapping[int, float] | Iterable[int], *,
                 transit_latency_ms: float = 0.0) -> None:
        self.asn = int(asn)
        nb = dict(neighbors) if isinstance(neighbors, Mapping) else {int(n): 0.0 for n in neighbors}
        if self.asn in nb:
            raise DomainError(f"AS{self.asn} cannot be its own neighbour", asn=self.asn)
        self.neighbors: dict[int, float] = {int(k): float(v) for k, v in nb.items()}
        self.transit_latency_ms = float(transit_latency_ms)
        self._local: dict[DeviceClass, DomainSummary] = {}
        self._in: dict[int, dict[Key, DomainSummary]] = {n: {} for n in self.neighbors}
        self._best: dict[Key, Route] = {}
        self._out: dict[int, dict[Key, DomainSummary]] = {n: {} for n in self.neighbors}
        self.loops_rejected = 0

    # ------------------------------------------------------------------ queries

    def best(self, origin_as: int, device_class: DeviceClass) -> Route | None:
        return self._best.get((int(origin_as), DeviceClass.parse(device_class)))

    def routes(self, device_class: DeviceClass, *, min_free: float = 0.0) -> list[DomainSummary]:
        """Best summary per origin offering ``device_class`` with more than ``min_free`` free,
        ranked by the decision process (a buyer's view of where to look)."""
        cls = DeviceClass.parse(device_class)
        found = [r for (o, c), r in self._best.items() if c == cls and r.summary.free > min_free]
        return [r.summary for r in sorted(found, key=Route.rank)]

    def table(self) -> dict[Key, Route]:
        return dict(self._best)

    # ------------------------------------------------------------------ updates

    def originate(self, providers: Iterable[ProviderCapacity]) -> list[Message]:
        """Set this AS's own summaries from its providers; returns the messages to send."""
        by_class: dict[DeviceClass, list[ProviderCapacity]] = {}
        for p in providers:
            by_class.setdefault(p.device_class, []).append(p)
        new: dict[DeviceClass, DomainSummary] = {}
        for cls, ps in by_class.items():
            free = sum(p.free for p in ps)
            if free <= 0:
                continue  # nothing to sell: withdraw rather than advertise an empty summary
            priced = [p for p in ps if p.free > 0]
            new[cls] = DomainSummary(self.asn, cls, sum(p.total for p in ps), free,
                                     min(p.price for p in priced), (self.asn,), min(p.latency_ms for p in priced))
        touched = set(self._local) | set(new)
        self._local = new
        out: list[Message] = []
        for cls in sorted(touched):
            out += self._decide((self.asn, cls))
        return out

    def receive(self, msg: Message) -> list[Message]:
        """Process one message from a neighbour; returns the messages to send in turn."""
        if msg.receiver != self.asn:
            raise DomainError(f"AS{self.asn} got a message for AS{msg.receiver}", asn=self.asn)
        if msg.sender not in self.neighbors:
            raise DomainError(f"AS{self.asn}: AS{msg.sender} is not a neighbour", asn=self.asn, sender=msg.sender)
        body = msg.body
        rib = self._in[msg.sender]
        key = (body.origin_as, DeviceClass.parse(body.device_class))
        if isinstance(body, Withdrawal):
            if rib.pop(key, None) is None:
                return []
            log.debug("AS%d: withdrawal of AS%d/%s from AS%d", self.asn, key[0], key[1].name, msg.sender)
        else:
            if body.as_path[0] != msg.sender:
                raise DomainError(f"AS{self.asn}: summary from AS{msg.sender} has AS path {body.as_path} "
                                  f"not starting with the sender", asn=self.asn, sender=msg.sender)
            if self.asn in body.as_path:
                self.loops_rejected += 1
                log.debug("AS%d: loop, rejected AS%d/%s from AS%d with path %s", self.asn, key[0], key[1].name,
                          msg.sender, body.as_path)
                if rib.pop(key, None) is None:  # treat-as-withdraw
                    return []
            else:
                if rib.get(key) == body:
                    return []
                rib[key] = body
        return self._decide(key)

    def peer_down(self, neighbor: int) -> list[Message]:
        """The session with ``neighbor`` is gone: forget what it sent, and reselect."""
        if neighbor not in self.neighbors:
            raise DomainError(f"AS{self.asn}: AS{neighbor} is not a neighbour", asn=self.asn)
        keys = sorted(self._in[neighbor], key=lambda k: (k[0], k[1]))
        self._in[neighbor] = {}
        self._out[neighbor] = {}
        out: list[Message] = []
        for key in keys:
            out += self._decide(key, skip=neighbor)
        return [m for m in out if m.receiver != neighbor]

    def _decide(self, key: Key, skip: int | None = None) -> list[Message]:
        candidates: list[Route] = []
        if key[0] == self.asn and key[1] in self._local:
            candidates.append(Route(self._local[key[1]], None))
        for n, rib in self._in.items():
            s = rib.get(key)
            if s is not None:
                candidates.append(Route(s, n))
        best = min(candidates, key=Route.rank) if candidates else None
        if best is None:
            self._best.pop(key, None)
        else:
            self._best[key] = best
        out: list[Message] = []
        for n in sorted(self.neighbors):
            if n == skip:
                continue
            sent = self._out[n].get(key)
            if best is None:
                if sent is not None:
                    del self._out[n][key]
                    out.append(Message(self.asn, n, Withdrawal(*key)))
                continue
            s = best.summary
            extra = self.neighbors[n] + (0.0 if best.via is None else self.transit_latency_ms)
            adv = replace(s, as_path=(self.asn,) + (() if best.via is None else s.as_path),
                          min_latency_ms=s.min_latency_ms + extra)
            if sent != adv:
                self._out[n][key] = adv
                out.append(Message(self.asn, n, adv))
        return out


def exchange(routers: Mapping[int, DomainRouter], messages: Iterable[Message], *,
             max_messages: int = 1_000_000) -> int:
    """Deliver messages FIFO (and those they cause) until none is left; returns how many were delivered.

    Raises ``DomainError`` for a message to an unknown AS or if ``max_messages`` is exceeded
    (a sign of a routing oscillation)."""
    queue = deque(messages)
    delivered = 0
    while queue:
        msg = queue.popleft()
        router = routers.get(msg.receiver)
        if router is None:
            raise DomainError(f"message from AS{msg.sender} to unknown AS{msg.receiver}", asn=msg.receiver)
        delivered += 1
        if delivered > max_messages:
            raise DomainError(f"no convergence after {max_messages} messages")
        queue.extend(router.receive(msg))
    return delivered
