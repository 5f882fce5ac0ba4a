"""The values of inter-domain routing: what an AS offers, what travels between ASes, what is selected.

- ``ProviderCapacity``: one provider's share of its domain's offer for one device class;
- ``DomainSummary``: a domain's aggregated offer of one device class as seen along an AS path,
  with the origin's sequence number and the route's class at the sender;
- ``Withdrawal``: a route that is gone; with ``seq``, the origin's own withdrawal (root cause);
- ``Message``: one UPDATE from one AS to a neighbour, a batch of the two;
- ``Neighbor``: a neighbour's link latency and relationship; ``Route``: a selected route.

Invariants (checked when a value is built from outside data): ``as_path`` is non-empty and ends at
the origin; AS numbers are in 1..2^32-1; ``0 <= free <= total``; price and latency are finite and
non-negative; sequence numbers are non-negative integers. The router derives new summaries from
validated ones without checking again (``domains``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

from marketplace.resources.model import DeviceClass
from marketplace.routing.domain_policy import Relation, RouteClass
from marketplace.routing.errors import DomainError

MAX_ASN = 2**32 - 1


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
    """Aggregated capacity of one device class in ``origin_as``, as seen along ``as_path``.

    ``seq`` is the origin's sequence number for this class (higher is newer);
    ``sender_class`` is the route's class at the AS that sent it (read across sibling links).
    """

    origin_as: int
    device_class: DeviceClass
    total: float
    free: float
    min_price: float
    as_path: tuple[int, ...]
    min_latency_ms: float
    seq: int = 0
    sender_class: RouteClass = RouteClass.LOCAL

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))
        object.__setattr__(self, "as_path", tuple(int(a) for a in self.as_path))
        object.__setattr__(self, "sender_class", RouteClass(self.sender_class))
        if not self.as_path or self.as_path[-1] != self.origin_as:
            raise DomainError(f"summary from AS{self.origin_as}: AS path {self.as_path} must end at the origin",
                              origin_as=self.origin_as)
        if not all(0 < a <= MAX_ASN for a in self.as_path):
            raise DomainError(f"summary from AS{self.origin_as}: AS numbers must be in 1..{MAX_ASN}",
                              origin_as=self.origin_as)
        if not (0 <= self.free <= self.total) or not math.isfinite(self.total):
            raise DomainError(f"summary from AS{self.origin_as}: need 0 <= free <= total, "
                              f"got free={self.free} total={self.total}", origin_as=self.origin_as)
        if not (0 <= self.min_price < math.inf and 0 <= self.min_latency_ms < math.inf):
            raise DomainError(f"summary from AS{self.origin_as}: price and latency must be finite and >= 0",
                              origin_as=self.origin_as)
        if not (isinstance(self.seq, int) and self.seq >= 0):
            raise DomainError(f"summary from AS{self.origin_as}: seq must be an integer >= 0",
                              origin_as=self.origin_as)

    @property
    def key(self) -> tuple[int, DeviceClass]:
        return (self.origin_as, self.device_class)


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """The route to (origin, device class) through the sender is gone.

    With ``seq`` set it is a root-cause withdrawal: the origin itself withdrew every summary
    of that class up to sequence ``seq``, so no path to it is left anywhere."""

    origin_as: int
    device_class: DeviceClass
    seq: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device_class", DeviceClass.parse(self.device_class))
        if self.seq is not None and not (isinstance(self.seq, int) and self.seq >= 0):
            raise DomainError(f"withdrawal of AS{self.origin_as}: seq must be an integer >= 0",
                              origin_as=self.origin_as)

    @property
    def key(self) -> tuple[int, DeviceClass]:
        return (self.origin_as, self.device_class)


Item = Union[DomainSummary, Withdrawal]


@dataclass(frozen=True, slots=True)
class Message:
    """One UPDATE from ``sender`` to ``receiver``: a batch of withdrawals, then summaries.
    A single item is accepted in place of the tuple."""

    sender: int
    receiver: int
    body: tuple[Item, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.body, tuple):
            object.__setattr__(self, "body", (self.body,))


@dataclass(frozen=True, slots=True)
class Neighbor:
    """A neighbour AS: the link latency to it (ms) and what it is to this AS."""

    latency_ms: float = 0.0
    relation: Relation = Relation.SIBLING

    def __post_init__(self) -> None:
        object.__setattr__(self, "relation", Relation(self.relation))
        if not (0 <= self.latency_ms < math.inf):
            raise DomainError(f"neighbour latency must be finite and >= 0, got {self.latency_ms}",
                              field="latency_ms")


@dataclass(frozen=True, slots=True)
class Route:
    """A selected route: the summary as seen at this AS (link latency added), the neighbour it
    came via (None: originated here) and its class here."""

    summary: DomainSummary
    via: int | None
    route_class: RouteClass = RouteClass.LOCAL

    def rank(self) -> tuple:
        s = self.summary
        return (self.route_class, len(s.as_path), s.min_latency_ms, s.min_price, s.origin_as,
                -1 if self.via is None else self.via)


Key = tuple[int, DeviceClass]
