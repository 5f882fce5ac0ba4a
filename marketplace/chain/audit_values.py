"""What an audit reports: frozen values for order, provider, batch and escrow audits, and the checks
of the identifiers an auditor is asked about.

The ``Auditor`` (``marketplace.chain.audit``) builds these from chain data alone; the API and
the CLI serialise them with ``to_dict``. Amounts are ints here and decimal strings in
``to_dict`` (wei do not fit a JSON double); a value is ``consistent`` (``balanced`` for escrow)
when its ``mismatches`` are empty, and each mismatch names the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address

from marketplace.chain.client import EscrowCheck
from marketplace.chain.deploy import ZERO
from marketplace.chain.indexer import IndexedEvent
from marketplace.chain.lifecycle import OrderState, ProviderStatus
from marketplace.chain.market import Order
from marketplace.errors import InputError

MARKET = "ComputeMarket"
REGISTRY = "ProviderRegistry"

#: event arguments that are amounts of the payment asset (or metered usage), shown as amounts
AMOUNT_ARGS = ("escrow", "price", "maxPrice", "paid", "fee", "refund", "slashed", "compensation", "amount", "balance", "stake",
               "released", "usage", "served")


def as_int(value: Any) -> int:
    """Indexed arguments above 2^53 are stored as decimal strings; both forms read back as int."""
    return int(value)


def as_address(value: Any) -> str:
    return to_checksum_address(value)


def check_address(value: str, name: str = "address") -> str:
    if not isinstance(value, str) or not is_address(value):
        raise InputError(f"{name} is not an Ethereum address: {value!r}", field=name)
    return to_checksum_address(value)


ZERO_BATCH = "0x" + "00" * 32


def check_batch_id(value: Any, name: str = "batch_id") -> str:
    """A batch id as ``0x`` + 64 lowercase hex digits (bytes or hex text in)."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str):
        text = value[2:] if value[:2] in ("0x", "0X") else value
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else b""
        except ValueError:
            raw = b""
    else:
        raw = b""
    if len(raw) != 32:
        raise InputError(f"{name} must be 32 bytes as 0x + 64 hex digits, got {value!r}", field=name)
    return "0x" + raw.hex()


def hex32(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value).lower()


def escrow_check_dict(check: EscrowCheck) -> dict[str, Any]:
    return {"contract": check.contract, "held": str(check.held), "owed": str(check.owed),
            "balanced": check.balanced, "parts": {k: str(v) for k, v in check.parts.items()}}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event in a history: where it is on chain, what it says, and (for orders) the state after it."""

    contract: str
    event: str
    block: int
    timestamp: int
    tx_hash: str
    log_index: int
    args: dict[str, Any]
    state: str | None = None

    @classmethod
    def of(cls, ev: IndexedEvent, state: OrderState | None = None) -> "HistoryEntry":
        return cls(ev.contract, ev.name, ev.block_number, ev.timestamp, ev.tx_hash, ev.log_index, dict(ev.args),
                   state.name if state is not None else None)

    @property
    def amounts(self) -> dict[str, int]:
        return {k: as_int(v) for k, v in self.args.items() if k in AMOUNT_ARGS}

    def to_dict(self) -> dict[str, Any]:
        out = {"contract": self.contract, "event": self.event, "block": self.block, "timestamp": self.timestamp,
               "tx_hash": self.tx_hash, "log_index": self.log_index,
               # amounts as decimal strings: wei do not fit a JSON double
               "args": {k: (str(as_int(v)) if k in AMOUNT_ARGS else v) for k, v in self.args.items()}}
        if self.state is not None:
            out["state"] = self.state
        return out


@dataclass(frozen=True, slots=True)
class OrderMoney:
    """Where an order's escrow went, from its events: escrow == paid + refunded + remaining."""

    escrow: int
    paid: int  # gross, out of escrow, to the provider(s) (fee included)
    fees: int  # the operator's part of ``paid``
    refunded: int  # escrow returned to the buyer
    compensated: int  # slashed provider stake credited to the buyer (never above ``paid``; not escrow)
    burned: int  # slashed provider stake beyond the buyer's loss, burned
    remaining: int  # escrow still reserved

    def to_dict(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class OrderHistory:
    order_id: int
    market: str
    block: int  # the block the history and the state were read at
    transitions: tuple[HistoryEntry, ...]
    slashes: tuple[HistoryEntry, ...]
    state: OrderState  # what the contract says
    replayed_state: OrderState  # what the events say
    order: Order
    money: OrderMoney
    mismatches: tuple[str, ...]
    #: the matching batch named by the order's first ``Assigned`` (None: never assigned, or by hand)
    batch_id: str | None = None

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        o = self.order
        return {
            "order": self.order_id, "market": self.market, "block": self.block, "batch": self.batch_id,
            "state": self.state.name,
            "replayed_state": self.replayed_state.name, "consistent": self.consistent,
            "mismatches": list(self.mismatches),
            "buyer": o.buyer, "provider": o.provider if o.provider != ZERO else None,
            "device_class": o.device_class, "units": o.units, "duration": o.duration, "tier": o.tier,
            "max_price": str(o.max_price), "price": str(o.price), "served": o.served, "usage": str(o.usage),
            "backups": list(o.backups), "digest": "0x" + o.digest.hex(), "result": "0x" + o.result.hex(),
            "money": self.money.to_dict(),
            "transitions": [t.to_dict() for t in self.transitions],
            "slashes": [s.to_dict() for s in self.slashes],
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """One order as a provider saw it: how its part ended and what it earned from it."""

    order_id: int
    assigned_block: int
    outcome: str  # the event that ended this provider's part, or the live state
    paid: int  # gross, out of escrow
    fee: int
    slashed: int

    @property
    def earned(self) -> int:
        return self.paid - self.fee

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order_id, "assigned_block": self.assigned_block, "outcome": self.outcome,
                "paid": str(self.paid), "fee": str(self.fee), "earned": str(self.earned), "slashed": str(self.slashed)}


@dataclass(frozen=True, slots=True)
class ProviderHistory:
    address: str
    block: int
    status: ProviderStatus
    stake: int
    live_leases: int
    replayed_status: ProviderStatus
    replayed_stake: int
    events: tuple[HistoryEntry, ...]  # registry events, in chain order
    slashes: tuple[HistoryEntry, ...]
    leases: tuple[Lease, ...]
    earned: int  # credited to its market balance by leases, net of fees
    market_balance: int  # withdrawable now in the market
    withdrawn: int  # withdrawn from the market
    mismatches: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    @property
    def slashed(self) -> int:
        return sum(as_int(s.args["amount"]) for s in self.slashes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.address, "block": self.block, "status": self.status.name, "stake": str(self.stake),
            "live_leases": self.live_leases, "replayed_status": self.replayed_status.name,
            "replayed_stake": str(self.replayed_stake), "consistent": self.consistent,
            "mismatches": list(self.mismatches), "slashed": str(self.slashed), "earned": str(self.earned),
            "market_balance": str(self.market_balance), "withdrawn": str(self.withdrawn),
            "events": [e.to_dict() for e in self.events], "slashes": [s.to_dict() for s in self.slashes],
            "leases": [lease.to_dict() for lease in self.leases],
        }


@dataclass(frozen=True, slots=True)
class BatchAssignment:
    """One order a batch assigned, as its ``Assigned`` event says."""

    order_id: int
    provider: str
    price: int
    backups: tuple[str, ...]
    accept_deadline: int
    log_index: int

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order_id, "provider": self.provider, "price": str(self.price),
                "backups": list(self.backups), "accept_deadline": self.accept_deadline, "log_index": self.log_index}


@dataclass(frozen=True, slots=True)
class BatchAudit:
    """One matching batch: where the chain recorded it, its hashes, and what it assigned."""

    batch_id: str
    market: str
    block: int  # the block of the assignBatch transaction
    timestamp: int
    tx_hash: str
    log_index: int
    inputs_hash: str
    decisions_hash: str
    orders: int  # what BatchCommitted says it assigned
    assignments: tuple[BatchAssignment, ...]  # what the transaction's Assigned events say, in log order
    as_of: int  # the block the audit read the contract at
    mismatches: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch_id, "market": self.market, "block": self.block, "timestamp": self.timestamp,
            "tx_hash": self.tx_hash, "log_index": self.log_index, "inputs_hash": self.inputs_hash,
            "decisions_hash": self.decisions_hash, "orders": self.orders, "as_of": self.as_of,
            "consistent": self.consistent, "mismatches": list(self.mismatches),
            "assignments": [a.to_dict() for a in self.assignments],
        }


@dataclass(frozen=True, slots=True)
class EscrowAudit:
    """The books of both contracts, as they say and as their events add up."""

    block: int
    market: EscrowCheck
    registry: EscrowCheck
    # recomputed from events
    free_from_events: int
    escrow_from_events: int
    held_from_events: int  # deposits - withdrawals + slashed stake received - burns flushed
    burn_backlog_from_events: int  # slashed stake set aside for burning, not yet flushed
    staked_from_events: int
    released_from_events: int
    owed_by_role: dict[str, int]  # buyers, providers, operator (free balances), escrow (live orders)
    accounts: int  # accounts with a balance history
    live_orders: int
    mismatches: tuple[str, ...]

    @property
    def owed_from_events(self) -> int:
        """What the market owes or must burn, by its events (its ``held`` should equal it)."""
        return self.free_from_events + self.escrow_from_events + self.burn_backlog_from_events

    @property
    def balanced(self) -> bool:
        return self.market.balanced and self.registry.balanced and not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.block, "balanced": self.balanced, "mismatches": list(self.mismatches),
            "market": escrow_check_dict(self.market), "registry": escrow_check_dict(self.registry),
            "from_events": {
                "owed": str(self.owed_from_events), "free": str(self.free_from_events),
                "escrow": str(self.escrow_from_events), "held": str(self.held_from_events),
                "burn_backlog": str(self.burn_backlog_from_events),
                "staked": str(self.staked_from_events), "released": str(self.released_from_events),
            },
            "owed_by_role": {k: str(v) for k, v in self.owed_by_role.items()},
            "accounts": self.accounts, "live_orders": self.live_orders,
        }
