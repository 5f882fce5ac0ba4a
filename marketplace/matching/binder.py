"""Bind: the last extension point, where a reservation becomes a lease.

``Binder`` is the port the edge implements: the chain adapter writes one batched
transaction per round and answers per reservation. The core never talks to a chain.

``InMemoryBinder`` is the binder for tests and benchmarks: no chain, leases kept in a dict.
It binds at once, or (``defer=True``) answers ``PENDING`` so that the reservation stays
unbound until the caller confirms it, as a chain write that has not been mined yet.

``Binder`` is the Bind extension point's protocol; the registry lists ``InMemoryBinder`` as
``InMemory`` (the binder a scheduler uses when the edge gives none).

Invariants: a binder answers exactly one ``BindResult`` per reservation it is given, in the
same order; a reservation is bound at most once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol, Sequence

from marketplace.matching.errors import BindError
from marketplace.matching.model import Reservation

if TYPE_CHECKING:
    from marketplace.matching.config import MatchingConfig

log = logging.getLogger(__name__)


class BindStatus(str, Enum):
    BOUND = "bound"
    PENDING = "pending"  # written, not confirmed yet: the capacity stays reserved (pre-emptible)
    FAILED = "failed"  # not bound: the reservation is released and the order requeued


@dataclass(frozen=True, slots=True)
class BindResult:
    order_id: str
    status: BindStatus
    lease_id: str | None = None
    reason: str | None = None


class Binder(Protocol):
    def bind(self, round_no: int, batch: Sequence[Reservation]) -> Sequence[BindResult]:
        """Bind a whole round's reservations in one go (one batched chain write)."""
        ...


class InMemoryBinder:
    """Test and benchmark binder: leases in memory, no chain (see module docstring)."""

    name: ClassVar[str] = "InMemory"

    @classmethod
    def new(cls, config: MatchingConfig) -> InMemoryBinder:
        return cls()

    def __init__(self, *, defer: bool = False, refuse: Callable[[Reservation], str | None] | None = None) -> None:
        self.defer = defer
        self.refuse = refuse
        self.leases: dict[str, Reservation] = {}
        self.batches: list[tuple[int, int]] = []

    def bind(self, round_no: int, batch: Sequence[Reservation]) -> list[BindResult]:
        self.batches.append((round_no, len(batch)))
        out = []
        for r in batch:
            oid = r.order.order_id
            if oid in self.leases:
                raise BindError(f"order {oid} is already bound to {self.leases[oid].placement.provider_id}",
                                order_id=oid)
            why = self.refuse(r) if self.refuse is not None else None
            if why is not None:
                out.append(BindResult(oid, BindStatus.FAILED, reason=why))
            elif self.defer:
                out.append(BindResult(oid, BindStatus.PENDING))
            else:
                self.leases[oid] = r
                out.append(BindResult(oid, BindStatus.BOUND, lease_id=f"mem-{round_no}-{oid}"))
        return out
