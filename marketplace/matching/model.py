"""Values of the matching engine: orders, providers, statuses, reservations, decisions.

An ``Order`` is a buyer's ``Requirement`` plus what the engine needs to queue and route
it (tier, buyer attachment node, submission time). A ``Provider`` is one provider node as
the engine sees it: its ``NodeDescriptor`` plus market facts (attachment node, price,
status, stake, latest LSA load, reliability history).

A filter answers with a ``Status`` (``Code.UNSCHEDULABLE``: could fit later, e.g. busy;
``Code.UNRESOLVABLE``: never, e.g. wrong device class), wrapped per provider in a
``Rejection`` that names the plugin, a stable reason code and a message with numbers.

Invariants:
- every value is frozen; collections are tuples;
- every ``Rejection`` has a non-empty reason code and message;
- ``canonical()`` forms contain only JSON scalars and lists, in a fixed key order, so
  digests over them do not depend on dict or set order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from marketplace.matching.errors import InvalidOrder, InvalidProvider
from marketplace.resources.model import DeviceClass, NodeDescriptor
from marketplace.resources.requirement import Requirement
from marketplace.resources.runtimes import RuntimeOffer, WorkloadNeed

#: Tiers run 0 (base) .. MAX_TIER (top VIP tier); a higher tier is served first.
MAX_TIER = 3


class Code(IntEnum):
    """A filter's verdict on one provider, as the Kubernetes framework's status codes."""

    SUCCESS = 0
    #: not now (busy, offline, stake too low): the order may fit this provider later
    UNSCHEDULABLE = 1
    #: never (wrong device class, too little VRAM, over the latency bound or price ceiling)
    UNRESOLVABLE = 2


class ProviderStatus(str, Enum):
    """A provider's registration status as the registry and its LSAs say."""

    ACTIVE = "active"
    DRAINING = "draining"  # takes no new leases until it says otherwise
    OFFLINE = "offline"  # missed heartbeats; may come back
    RETIRED = "retired"  # left the market; will not come back


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one provider was filtered out for one order."""

    provider_id: str
    plugin: str
    code: Code
    reason: str
    message: str

    def canonical(self) -> list[Any]:
        return [self.provider_id, self.plugin, int(self.code), self.reason, self.message]


@dataclass(frozen=True, slots=True)
class Order:
    """An order waiting to be matched.

    ``tier`` 0..3 (3 is the top VIP tier). ``buyer_node`` is the topology node the buyer is
    attached to (``None``: no latency is known, so a latency bound cannot be met).
    ``submitted_at`` is in seconds on the engine's clock (given by the caller, never read).
    ``workload`` is what its workload asks of a provider's runtimes (``None``: a shipped wasm
    module, which every provider runs; the ``RuntimeSupport`` filter reads it).
    """

    order_id: str
    requirement: Requirement
    tier: int = 0
    buyer_node: str | None = None
    submitted_at: float = 0.0
    workload: WorkloadNeed | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.order_id, str) or not self.order_id:
            raise InvalidOrder("order_id must be a non-empty string", field="order_id")
        if not isinstance(self.requirement, Requirement):
            raise InvalidOrder(f"order {self.order_id}: requirement must be a Requirement", field="requirement")
        if isinstance(self.tier, bool) or not isinstance(self.tier, int) or not 0 <= self.tier <= MAX_TIER:
            raise InvalidOrder(f"order {self.order_id}: tier must be within 0..{MAX_TIER}, got {self.tier!r}",
                               field="tier")
        if not math.isfinite(float(self.submitted_at)):
            raise InvalidOrder(f"order {self.order_id}: submitted_at must be finite", field="submitted_at")
        if self.workload is not None and not isinstance(self.workload, WorkloadNeed):
            raise InvalidOrder(f"order {self.order_id}: workload must be a WorkloadNeed", field="workload")

    def canonical(self) -> list[Any]:
        out = [self.order_id, self.requirement.digest().hex(), self.tier, self.buyer_node,
               repr(float(self.submitted_at))]
        return out if self.workload is None else [*out, self.workload.canonical()]


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider node as the matcher sees it.

    ``price`` is what the provider asks per device-hour (whole device), in the market's
    smallest token unit, as ``Requirement.max_price`` counts (``None``: no price published,
    so no order with a price ceiling can use it). ``load`` is the utilisation 0..1 from its
    latest LSA, stamped ``lsa_at`` (engine seconds). ``reliability`` is the share of its past
    leases it completed, 0..1 (1.0 for a newcomer: no history is no evidence of failure).
    ``domain`` is the administrative domain (AS number) it sits in. ``runtimes`` is what its LSA
    says it runs besides the shipped wasm modules (``None``: nothing else).
    """

    provider_id: str
    descriptor: NodeDescriptor
    attach_node: str | None = None
    price: int | None = None
    domain: int | None = None
    status: ProviderStatus = ProviderStatus.ACTIVE
    stake: int = 0
    load: float = 0.0
    lsa_at: float | None = None
    reliability: float = 1.0
    runtimes: RuntimeOffer | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.provider_id, str) or not self.provider_id:
            raise InvalidProvider("provider_id must be a non-empty string", field="provider_id")
        object.__setattr__(self, "status", ProviderStatus(self.status))
        if self.price is not None and (isinstance(self.price, bool) or not isinstance(self.price, int)
                                       or self.price < 0):
            raise InvalidProvider(f"provider {self.provider_id}: price must be an integer >= 0, got {self.price!r}",
                                  field="price")
        if not 0.0 <= float(self.load) <= 1.0:
            raise InvalidProvider(f"provider {self.provider_id}: load must be within 0..1, got {self.load}",
                                  field="load")
        if not 0.0 <= float(self.reliability) <= 1.0:
            raise InvalidProvider(
                f"provider {self.provider_id}: reliability must be within 0..1, got {self.reliability}",
                field="reliability")
        if self.stake < 0:
            raise InvalidProvider(f"provider {self.provider_id}: stake must be >= 0", field="stake")

    def canonical(self) -> list[Any]:
        out = [self.provider_id, self.descriptor.digest().hex(), self.attach_node, self.price, self.domain,
               self.status.value, self.stake, repr(float(self.load)),
               None if self.lsa_at is None else repr(float(self.lsa_at)), repr(float(self.reliability))]
        return out if self.runtimes is None else [*out, self.runtimes.to_dict()]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an order's demand sits on a provider: the device slots and how much of each."""

    provider_id: str
    device_class: DeviceClass
    #: (slot index, milli taken) per device used, slot order
    slots: tuple[tuple[int, int], ...]
    cpu_milli: int
    memory_mib: int

    def canonical(self) -> list[Any]:
        return [self.provider_id, int(self.device_class), [list(s) for s in self.slots], self.cpu_milli,
                self.memory_mib]


class ReservationState(str, Enum):
    RESERVED = "reserved"  # capacity held, not yet bound: a higher tier may pre-empt it
    BOUND = "bound"  # the binder confirmed a lease: never pre-empted
    RELEASED = "released"  # capacity returned (unreserved, pre-empted, failed bind, lease ended)


@dataclass(frozen=True, slots=True)
class Reservation:
    order: Order
    placement: Placement
    round_no: int


class Outcome(str, Enum):
    BOUND = "bound"  # reserved, permitted and bound in this round
    RESERVED = "reserved"  # reserved and handed to the binder, which has not confirmed yet
    PENDING = "pending"  # no provider now; stays queued
    REFUSED = "refused"  # no provider can ever satisfy it; dropped with reasons
    PREEMPTED = "preempted"  # its reservation was taken by a higher tier; requeued
    DENIED = "denied"  # a permit plugin or the binder said no; requeued


@dataclass(frozen=True, slots=True)
class Decision:
    """What one round did with one order (``provider_id`` for BOUND/RESERVED)."""

    order_id: str
    outcome: Outcome
    provider_id: str | None = None
    placement: Placement | None = None
    score: float | None = None
    #: stable reason codes, e.g. ("FreeCapacity:insufficient-free-devices",), counted per provider
    reasons: tuple[tuple[str, int], ...] = ()
    #: order ids pre-empted to make room for this one
    preempted: tuple[str, ...] = ()

    def canonical(self) -> list[Any]:
        return [self.order_id, self.outcome.value, self.provider_id,
                None if self.placement is None else self.placement.canonical(),
                None if self.score is None else repr(round(self.score, 9)),
                [list(r) for r in self.reasons], list(self.preempted)]


@dataclass(frozen=True, slots=True)
class ScoreLine:
    plugin: str
    raw: float
    normalized: float
    weight: float


@dataclass(frozen=True, slots=True)
class ProviderVerdict:
    """``explain``'s answer for one provider: rejections, or scores and their total."""

    provider_id: str
    feasible: bool
    rejections: tuple[Rejection, ...] = ()
    scores: tuple[ScoreLine, ...] = ()
    total: float | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    order_id: str
    verdicts: tuple[ProviderVerdict, ...] = field(default_factory=tuple)
    #: the provider the matcher would pick now (``None`` if none is feasible)
    best: str | None = None

    def by_provider(self) -> dict[str, ProviderVerdict]:
        return {v.provider_id: v for v in self.verdicts}

    def ever_satisfiable(self) -> bool:
        return any(all(r.code != Code.UNRESOLVABLE for r in v.rejections) for v in self.verdicts)
