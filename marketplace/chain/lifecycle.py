"""The contracts' state machines, written once: the order lifecycle and the provider registry fold.

Every consumer of chain events (the engine's order table, the auditor's replay, the API's
order book and streams, the buyer CLI's progress) folds the same events through the same
table here instead of keeping its own copy. The table is ``ComputeMarket``'s: an event moves
an order only from the states listed in ``TRANSITIONS``, and ``state_after`` says where it
goes. ``fold_order`` applies one event to an immutable ``OrderFold``; ``replay_order`` runs
an order's events in chain order and reports every rule the events break. ``fold_provider``
does the same for ``ProviderRegistry``'s events (status, stake, domain, live leases).

Pure: this module imports nothing but the standard library and the error tree. Addresses in
event arguments are compared case-insensitively (the indexer and the receipt decoder both
hand out checksummed strings; nothing here re-checksums them).

Invariants:
- ``TRANSITIONS`` names every event that moves an order and nothing else;
- a fold never mutates its input: each event gives a new value, so a snapshot can be shared
  between threads and kept as history;
- escrow in a fold only goes down after ``OrderPlaced`` (paid to the provider or refunded),
  and ``replay_order`` reports a fold whose escrow goes below zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Iterable, Mapping, Protocol

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32


class OrderState(IntEnum):
    """``ComputeMarket.State``; the integer values are the contract's."""

    NONE = 0
    OPEN = 1
    ASSIGNED = 2
    RUNNING = 3
    COMPLETED = 4
    SETTLED = 5
    CANCELLED = 6
    REFUNDED = 7
    DISPUTED = 8
    RESOLVED = 9

    @property
    def final(self) -> bool:
        return self in FINAL_STATES

    @property
    def live(self) -> bool:
        """A provider holds the lease (assigned to it or running on it)."""
        return self in (OrderState.ASSIGNED, OrderState.RUNNING)

    @property
    def label(self) -> str:
        """The lower-case name the API and the CLI show."""
        return self.name.lower()


FINAL_STATES = frozenset({OrderState.SETTLED, OrderState.CANCELLED, OrderState.REFUNDED, OrderState.RESOLVED})
#: the states an order goes through when all is well, in order
HAPPY_PATH = (OrderState.OPEN, OrderState.ASSIGNED, OrderState.RUNNING, OrderState.COMPLETED, OrderState.SETTLED)


class ProviderStatus(IntEnum):
    """``ProviderRegistry.Status``; the integer values are the contract's."""

    NONE = 0
    ACTIVE = 1
    PAUSED = 2
    UNBONDING = 3
    EXITED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


#: the events that move an order, and the states each may start from (the contract's rules)
TRANSITIONS: Mapping[str, tuple[OrderState, ...]] = {
    "OrderPlaced": (OrderState.NONE,),
    "Assigned": (OrderState.OPEN,),
    "Accepted": (OrderState.ASSIGNED,),
    "Completed": (OrderState.RUNNING,),
    "Settled": (OrderState.COMPLETED,),
    "Cancelled": (OrderState.OPEN, OrderState.ASSIGNED),
    "AcceptanceTimedOut": (OrderState.ASSIGNED,),
    "OrderFailed": (OrderState.RUNNING,),
    "Expired": (OrderState.RUNNING,),
    "Disputed": (OrderState.COMPLETED,),
    "Resolved": (OrderState.DISPUTED,),
    "DisputeLapsed": (OrderState.DISPUTED,),
}
ORDER_EVENTS = tuple(TRANSITIONS)
#: events about an order's money that do not move it: slashed stake set aside for burning
MONEY_EVENTS = ("Burned",)

#: transitions that move money (pay a provider and the fee, refund or compensate the buyer)
PAYING_EVENTS = ("Settled", "Cancelled", "AcceptanceTimedOut", "OrderFailed", "Resolved", "Expired", "DisputeLapsed")
#: transitions that end a provider's hold on a lease (the provider is named by ``provider`` or ``late``)
LEASE_ENDINGS = ("Settled", "OrderFailed", "Resolved", "AcceptanceTimedOut", "Expired", "DisputeLapsed")

#: events whose target state does not depend on their arguments
_FIXED_TARGET: Mapping[str, OrderState] = {
    "OrderPlaced": OrderState.OPEN, "Assigned": OrderState.ASSIGNED, "Accepted": OrderState.RUNNING,
    "Completed": OrderState.COMPLETED, "Settled": OrderState.SETTLED, "Cancelled": OrderState.CANCELLED,
    "Disputed": OrderState.DISPUTED, "Resolved": OrderState.RESOLVED, "Expired": OrderState.REFUNDED,
    "DisputeLapsed": OrderState.RESOLVED,
}
#: events that hand the lease to the next backup, or refund the buyer when none is left
HANDOVERS = ("AcceptanceTimedOut", "OrderFailed")
_HANDOVER = HANDOVERS

#: the registry's status after each event that changes it
PROVIDER_STATUS_AFTER: Mapping[str, ProviderStatus] = {
    "Registered": ProviderStatus.ACTIVE, "ProviderPaused": ProviderStatus.PAUSED,
    "ProviderResumed": ProviderStatus.ACTIVE, "UnbondingStarted": ProviderStatus.UNBONDING,
    "ProviderExited": ProviderStatus.EXITED,
}
PROVIDER_EVENTS = ("Registered", "Updated", "StakeAdded", "ProviderPaused", "ProviderResumed", "UnbondingStarted",
                   "ProviderExited", "Slashed", "LeaseCountChanged")


def is_zero(address: Any) -> bool:
    return str(address).lower() == ZERO_ADDRESS


def amount(value: Any) -> int:
    """An integer event argument (the indexer stores those above 2^53 as decimal strings)."""
    return int(value)


def state_after(name: str, args: Mapping[str, Any], before: OrderState) -> OrderState:
    """The order's state after event ``name`` (``before`` for an event that does not move it)."""
    target = _FIXED_TARGET.get(name)
    if target is not None:
        return target
    if name in _HANDOVER:
        return OrderState.REFUNDED if is_zero(args["next"]) else OrderState.ASSIGNED
    return before


def allowed(name: str, before: OrderState) -> bool:
    """Whether the contract lets event ``name`` happen to an order in state ``before``."""
    return before in TRANSITIONS.get(name, ())


class EventLike(Protocol):
    """What a fold reads of an event (``IndexedEvent`` has it; so has a receipt's decoded event
    once given a timestamp)."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    timestamp: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True, slots=True)
class OrderFold:
    """An order as its events describe it: what the contract's ``getOrder`` should say, plus the
    money that moved (paid, fees, refunded, compensated, burned) and its timeline."""

    id: int
    state: OrderState = OrderState.NONE
    buyer: str = ZERO_ADDRESS
    provider: str = ZERO_ADDRESS
    #: the OrderPlaced terms
    digest: str = ZERO_HASH
    requirement: str = ZERO_HASH
    device_class: int = 0
    units: int = 0
    duration: int = 0
    max_price: int = 0
    tier: int = 0
    escrow: int = 0
    #: the ``MarketTerms`` version the order runs under
    terms: int = 0
    #: the lease
    price: int = 0
    backups: tuple[str, ...] = ()
    next_backup: int = 0
    batch: str | None = None
    accept_deadline: int = 0
    started_at: int = 0
    served: int = 0
    usage: int = 0
    result: str = ZERO_HASH
    completed_at: int = 0
    disputed_at: int = 0
    #: money moved by the events: paid to providers (fees included), the fees, refunds, slashed stake
    #: credited to the buyer (never above ``paid``), slashed stake set aside for burning
    paid: int = 0
    fees: int = 0
    refunded: int = 0
    compensated: int = 0
    burned: int = 0
    #: where it was placed and last moved
    placed_block: int = 0
    placed_at: int = 0
    placed_tx: str = ""
    updated_block: int = 0
    updated_at: int = 0
    #: (state, block time) after each event, in chain order
    timeline: tuple[tuple[OrderState, int], ...] = ()


class LifecycleViolation(ValueError):
    """An event the contract's rules do not allow at this point of an order's life (a replay finding,
    not an input fault: it is reported by ``replay_order``, never raised out of this module)."""


def _next_backup(fold: OrderFold, nxt: str) -> int:
    """The contract walks the backup list from its pointer, skipping ineligible ones."""
    if is_zero(nxt):
        return len(fold.backups)
    low = nxt.lower()
    for i in range(fold.next_backup, len(fold.backups)):
        if fold.backups[i].lower() == low:
            return i + 1
    raise LifecycleViolation(f"next provider {nxt} is not among the remaining backups")


def fold_order(fold: OrderFold | None, name: str, args: Mapping[str, Any], *, block: int = 0, timestamp: int = 0,
               tx: str = "") -> OrderFold:
    """``fold`` after event ``name`` (``None`` before the order's ``OrderPlaced``). An event that does
    not move orders returns ``fold`` unchanged. Raises ``LifecycleViolation`` only where the event
    contradicts the fold's own data (a handover to a provider that is not a remaining backup)."""
    if name not in TRANSITIONS:
        if fold is None:
            raise LifecycleViolation(f"{name} does not move orders")
        if name == "Burned":
            return replace(fold, burned=fold.burned + amount(args["amount"]))
        return fold
    a = args
    if fold is None:
        fold = OrderFold(int(a["order"]))
    state = state_after(name, a, fold.state)
    ch: dict[str, Any] = {"state": state, "updated_block": block, "updated_at": timestamp,
                          "timeline": fold.timeline + ((state, timestamp),)}
    if name == "OrderPlaced":
        ch.update(buyer=a["buyer"], digest=a["digest"], requirement=a["requirement"],
                  device_class=amount(a["deviceClass"]), units=amount(a["units"]), duration=amount(a["duration"]),
                  max_price=amount(a["maxPrice"]), tier=amount(a["tier"]), escrow=amount(a["escrow"]),
                  terms=amount(a.get("terms", 0)), placed_block=block, placed_at=timestamp, placed_tx=tx)
    elif name == "Assigned":
        batch = a.get("batchId")
        ch.update(provider=a["provider"], price=amount(a["price"]), backups=tuple(a["backups"]), next_backup=0,
                  accept_deadline=amount(a["acceptDeadline"]), batch=None if batch in (None, ZERO_HASH) else batch)
    elif name == "Accepted":
        ch.update(started_at=amount(a["startedAt"]))
    elif name == "Completed":
        ch.update(result=a["result"], usage=amount(a["usage"]), completed_at=timestamp)
    elif name in ("Settled", "Resolved", "DisputeLapsed"):
        ch.update(_paid(fold, a))
        ch.update(_refund(ch["escrow"], fold, a))
        if name == "Resolved":
            ch["compensated"] = fold.compensated + amount(a["compensation"])
    elif name == "Disputed":
        ch["disputed_at"] = timestamp
    elif name == "Cancelled":
        ch.update(_refund(fold.escrow, fold, a))
    elif name == "Expired":
        ch.update(_refund(fold.escrow, fold, a), compensated=fold.compensated + amount(a["compensation"]))
    elif name in _HANDOVER:
        if name == "OrderFailed":
            ch.update(_paid(fold, a))
            ch["served"] = fold.served + amount(a["served"])
        ch["compensated"] = fold.compensated + amount(a["compensation"])
        ch["next_backup"] = _next_backup(fold, a["next"])
        if state is OrderState.REFUNDED:
            ch.update(_refund(ch.get("escrow", fold.escrow), fold, a))
        else:
            # the backup holds the lease at its own ask (the contract reads it at the handover)
            ch.update(provider=a["next"], accept_deadline=amount(a["acceptDeadline"]), price=amount(a["price"]))
    return replace(fold, **ch)


def _refund(escrow: int, fold: OrderFold, a: Mapping[str, Any]) -> dict[str, int]:
    """The escrow left (``escrow`` before it) returned to the buyer."""
    return {"refunded": fold.refunded + amount(a["refund"]), "escrow": escrow - amount(a["refund"])}


def _paid(fold: OrderFold, a: Mapping[str, Any]) -> dict[str, int]:
    return {"paid": fold.paid + amount(a["paid"]), "fees": fold.fees + amount(a["fee"]),
            "escrow": fold.escrow - amount(a["paid"])}


@dataclass(frozen=True)
class OrderReplay:
    """An order's events run through the state machine: the fold, each event with the state after
    it, and every rule the events break (empty for a chain without a contract bug)."""

    fold: OrderFold | None
    steps: tuple[tuple[Any, OrderState], ...]
    problems: tuple[str, ...]


def replay_order(events: Iterable[EventLike]) -> OrderReplay:
    """Run an order's market events (chain order) through the state machine, checking that each is
    a legal transition from the state before it, that one transaction moved the order at most once
    and that escrow never goes below zero. ``MONEY_EVENTS`` are folded without a transition; other
    events that do not move orders are skipped."""
    fold: OrderFold | None = None
    steps: list[tuple[Any, OrderState]] = []
    problems: list[str] = []
    seen_tx: set[str] = set()
    for ev in events:
        if ev.name not in TRANSITIONS:
            if ev.name in MONEY_EVENTS and fold is not None:
                fold = fold_order(fold, ev.name, ev.args, block=ev.block_number, timestamp=ev.timestamp, tx=ev.tx_hash)
            continue
        before = fold.state if fold is not None else OrderState.NONE
        where = f"{ev.name} at block {ev.block_number} log {ev.log_index}"
        if not allowed(ev.name, before):
            problems.append(f"illegal transition: {where} from {before.name}")
        if ev.tx_hash in seen_tx:
            problems.append(f"two transitions in one transaction {ev.tx_hash}: {where}")
        seen_tx.add(ev.tx_hash)
        try:
            fold = fold_order(fold, ev.name, ev.args, block=ev.block_number, timestamp=ev.timestamp, tx=ev.tx_hash)
        except LifecycleViolation as exc:
            problems.append(f"{where}: {exc}")
            fold = replace(fold, state=state_after(ev.name, ev.args, before)) if fold is not None else fold
        if fold is not None and fold.escrow < 0:
            problems.append(f"escrow below zero after {where}")
        steps.append((ev, fold.state if fold is not None else before))
    return OrderReplay(fold, tuple(steps), tuple(problems))


# ---------------------------------------------------------------------------- providers


@dataclass(frozen=True, slots=True)
class ProviderFold:
    """A provider as the registry's events describe it."""

    address: str
    status: ProviderStatus = ProviderStatus.NONE
    stake: int = 0
    domain: int = 0
    live_leases: int = 0
    hardware: str = ZERO_HASH
    metadata: str = ZERO_HASH
    prices: tuple[int, ...] = ()
    slashed: int = 0
    unbond_at: int = 0
    #: the event that last changed it
    updated_block: int = 0


def fold_provider(fold: ProviderFold | None, name: str, args: Mapping[str, Any], *,
                  block: int = 0) -> tuple[ProviderFold, str | None]:
    """``fold`` after registry event ``name``, and a problem where an event's own ``stake`` figure
    disagrees with the stake the events before it add up to (``None`` when it agrees)."""
    a = args
    if fold is None:
        fold = ProviderFold(a["provider"])
    ch: dict[str, Any] = {"updated_block": block}
    status = PROVIDER_STATUS_AFTER.get(name)
    if status is not None:
        ch["status"] = status
    if name in ("Registered", "Updated"):
        ch.update(hardware=a.get("hardware", fold.hardware), metadata=a.get("metadata", fold.metadata),
                  domain=amount(a.get("domain", fold.domain)))
        if "prices" in a:
            ch["prices"] = tuple(amount(p) for p in a["prices"])
        if name == "Registered":
            ch["stake"] = amount(a["stake"])
    elif name == "StakeAdded":
        ch["stake"] = fold.stake + amount(a["amount"])
    elif name == "UnbondingStarted":
        ch["unbond_at"] = amount(a["unbondAt"])
    elif name == "ProviderExited":
        ch["stake"] = fold.stake - amount(a["released"])
    elif name == "Slashed":
        ch.update(stake=fold.stake - amount(a["amount"]), slashed=fold.slashed + amount(a["amount"]))
    elif name == "LeaseCountChanged":
        ch["live_leases"] = amount(a["liveLeases"])
    new = replace(fold, **ch)
    problem = None
    if "stake" in a and name != "Registered" and amount(a["stake"]) != new.stake:
        problem = (f"{name} at block {block} reports stake {a['stake']}, the events before it add up to "
                   f"{new.stake}")
    return new, problem


@dataclass(frozen=True)
class ProviderBook:
    """Every provider the registry's events name, folded (a read model for a process without an engine)."""

    providers: Mapping[str, ProviderFold] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, events: Iterable[EventLike]) -> "ProviderBook":
        folds: dict[str, ProviderFold] = {}
        problems: list[str] = []
        for ev in events:
            if ev.name not in PROVIDER_EVENTS or "provider" not in ev.args:
                continue
            key = str(ev.args["provider"])
            folds[key], problem = fold_provider(folds.get(key), ev.name, ev.args, block=ev.block_number)
            if problem:
                problems.append(problem)
        return cls(folds, tuple(problems))
