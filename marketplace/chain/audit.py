"""The auditor: order and provider histories and the escrow check, rebuilt from chain data alone.

Everything here comes from two sources an outsider can check for themselves: the
contracts' event logs (through the ``EventIndexer``) and the contracts' own views, read
at the block the index reached. Nothing comes from the engine's memory, so the auditor
runs in a fresh process with no engine at all (``cona audit ...``, ``/v1/audit/...``).

- ``OrderHistory``: every transition of one order in chain order (block, block time, tx
  hash, log index, amounts), the state the contract reports, and the state reached by
  replaying the events through the contract's state machine. Replay checks that each
  event is a legal transition from the state before it, that each transaction moved the
  order at most once, and that the replayed fields (state, provider, escrow, served
  time, usage, deadlines, backup pointer...) equal the contract's ``getOrder``.
- ``ProviderHistory``: registration, updates, stake changes, status, slashes, the leases
  it was given and how each ended, its earnings; stake, status and live leases replayed
  from events and compared with ``ProviderRegistry.provider``.
- ``BatchAudit``: one matching batch as the chain recorded it: its ``BatchCommitted``
  (block, time, transaction, the hashes of its inputs and decisions) and every order its
  ``assignBatch`` transaction assigned (provider, price, ranked backups), read from the logs
  of that transaction and cross-checked against the index (every ``Assigned`` naming the
  batch is in that transaction, their count is the event's ``orders``) and against the
  contract's ``batches(id)`` record. An order's history names its batch (``batch_id``).
- ``EscrowAudit``: the contracts' books (``held == owed``, the existing ``EscrowCheck``),
  and the same books recomputed from events: every account's withdrawable balance, the
  escrow left in each live order, what came in and went out. It holds when the contract
  holds what it owes, the events add up to the contract's own totals, and each account's
  replayed balance equals ``balances(account)``.

Invariant: for a deployment indexed from its first block, on a chain without a bug in
the contracts, every ``consistent``/``balanced`` flag here is true; a false one names
the field (``mismatches``) so that an auditor can point at the discrepancy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from eth_utils import is_address, to_checksum_address

from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import ZERO, Deployment
from marketplace.chain.indexer import EventIndexer, IndexedEvent
from marketplace.chain.lifecycle import (ORDER_EVENTS, PROVIDER_EVENTS, OrderFold, ProviderFold, fold_provider,
                                         replay_order)
from marketplace.chain.market import EscrowCheck, Market, Order, OrderState, ProviderStatus
from marketplace.chain.writer import Receipt
from marketplace.errors import InputError, NotFound

log = logging.getLogger(__name__)

MARKET = "ComputeMarket"
REGISTRY = "ProviderRegistry"

#: event arguments that are amounts of the payment asset (or metered usage), shown as amounts
AMOUNT_ARGS = ("escrow", "price", "maxPrice", "paid", "fee", "refund", "slashed", "amount", "balance", "stake",
               "released", "usage", "served")


def _int(value: Any) -> int:
    """Indexed arguments above 2^53 are stored as decimal strings; both forms read back as int."""
    return int(value)


def _addr(value: Any) -> str:
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


def _hex32(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value).lower()


def escrow_check_dict(check: EscrowCheck) -> dict[str, Any]:
    return {"contract": check.contract, "held": str(check.held), "owed": str(check.owed),
            "balanced": check.balanced, "parts": {k: str(v) for k, v in check.parts.items()}}


# ---------------------------------------------------------------------------- values


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
        return {k: _int(v) for k, v in self.args.items() if k in AMOUNT_ARGS}

    def to_dict(self) -> dict[str, Any]:
        out = {"contract": self.contract, "event": self.event, "block": self.block, "timestamp": self.timestamp,
               "tx_hash": self.tx_hash, "log_index": self.log_index,
               # amounts as decimal strings: wei do not fit a JSON double
               "args": {k: (str(_int(v)) if k in AMOUNT_ARGS else v) for k, v in self.args.items()}}
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
    slashed_to_buyer: int  # provider stake moved to the buyer (not escrow)
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
        return sum(_int(s.args["amount"]) for s in self.slashes)

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
    held_from_events: int  # deposits - withdrawals + slashed stake received
    staked_from_events: int
    released_from_events: int
    owed_by_role: dict[str, int]  # buyers, providers, operator (free balances), escrow (live orders)
    accounts: int  # accounts with a balance history
    live_orders: int
    mismatches: tuple[str, ...]

    @property
    def owed_from_events(self) -> int:
        return self.free_from_events + self.escrow_from_events

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
                "staked": str(self.staked_from_events), "released": str(self.released_from_events),
            },
            "owed_by_role": {k: str(v) for k, v in self.owed_by_role.items()},
            "accounts": self.accounts, "live_orders": self.live_orders,
        }


# ---------------------------------------------------------------------------- replay


def _compare_order(r: OrderFold, o: Order) -> list[str]:
    out = []
    pairs: list[tuple[str, Any, Any]] = [
        ("state", r.state.name, o.state.name), ("buyer", r.buyer, o.buyer), ("provider", r.provider, o.provider),
        ("price", r.price, o.price), ("escrow", r.escrow, o.escrow), ("served", r.served, o.served),
        ("usage", r.usage, o.usage), ("result", r.result, "0x" + o.result.hex()),
        ("accept_deadline", r.accept_deadline, o.accept_deadline), ("started_at", r.started_at, o.started_at),
        ("completed_at", r.completed_at, o.completed_at), ("next_backup", r.next_backup, o.next_backup),
        ("backups", r.backups, o.backups),
    ]
    if r.placed_tx:
        pairs += [
            ("units", r.units, o.units), ("duration", r.duration, o.duration), ("max_price", r.max_price, o.max_price),
            ("tier", r.tier, o.tier), ("device_class", r.device_class, o.device_class),
            ("digest", r.digest, "0x" + o.digest.hex()), ("requirement", r.requirement, "0x" + o.requirement.hex()),
        ]
    for name, replayed, actual in pairs:
        if replayed != actual:
            out.append(f"{name}: events say {replayed}, contract says {actual}")
    return out


# ---------------------------------------------------------------------------- the auditor


class Auditor:
    """Answers audit questions about one deployment from its logs and its views.

    ``sync()`` brings the index to the chain's head; every query syncs first and then reads
    the contracts at the block the index reached, so history and state are one snapshot.
    """

    def __init__(self, market: Market, indexer: EventIndexer) -> None:
        self.market = market
        self.registry = market.registry
        self.indexer = indexer
        self.block = indexer.cursor

    @classmethod
    def open(cls, chain: Chain, deployment: Deployment | None = None, *, market_address: str | None = None,
             db_path: Path | None = None, start_block: int = 0) -> "Auditor":
        """An auditor for ``deployment`` (or the market at ``market_address``, finding its registry
        through the market's own ``registry()`` view). ``db_path`` persists the index so a later
        audit only reads new blocks; without it the index lives in memory."""
        if market_address is not None:
            address = check_address(market_address, "market")
            market_c = chain.at(MARKET, address)
            registry_c = chain.at(REGISTRY, market_c.call("registry"))
            from marketplace.chain.market import Registry

            market = Market(chain, market_c, Registry(chain, registry_c, None, market_c), None)
        elif deployment is not None:
            market = Market.from_deployment(chain, deployment)
        else:
            raise InputError("an audit needs a deployment or a market address", field="market")
        abis = {MARKET: (market.address, market.contract.abi), REGISTRY: (market.registry.address,
                                                                          market.registry.contract.abi)}
        indexer = EventIndexer(chain.backend, abis, db_path=db_path, start_block=start_block)
        return cls(market, indexer)

    def close(self) -> None:
        self.indexer.close()

    def sync(self) -> int:
        added = self.indexer.sync()
        self.block = self.indexer.cursor
        log.debug("audit index of market %s at block %d (+%d events)", self.market.address, self.block, added)
        return added

    def _call(self, contract: Any, fn: str, *args: Any) -> Any:
        return contract.call(fn, *args, block=hex(self.block))

    # -- orders -----------------------------------------------------------------

    def order(self, order_id: int) -> OrderHistory:
        if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id < 1:
            raise InputError(f"an order id is a positive integer, got {order_id!r}", field="order_id")
        self.sync()
        count = self._call(self.market.contract, "orderCount")
        if order_id > count:
            raise NotFound(f"no order {order_id} on market {self.market.address} (it holds {count})",
                           field="order_id")
        order = Order.from_chain(order_id, self._call(self.market.contract, "getOrder", order_id))
        events = self.indexer.events(order=order_id)
        market_events = [e for e in events if e.contract == MARKET and e.name in ORDER_EVENTS]
        slashes = [e for e in events if e.contract == REGISTRY and e.name == "Slashed"]
        replay = replay_order(market_events)
        steps, problems = replay.steps, list(replay.problems)
        replayed = replay.fold if replay.fold is not None else OrderFold(order_id)
        if not market_events:
            problems.append("no events for this order in the index (indexed from a later block?)")
        problems += _compare_order(replayed, order)
        if replayed.slashed != sum(_int(s.args["amount"]) for s in slashes):
            problems.append(f"slashed: order events say {replayed.slashed}, registry Slashed events say "
                            f"{sum(_int(s.args['amount']) for s in slashes)}")
        placed = next((_int(e.args["escrow"]) for e in market_events if e.name == "OrderPlaced"), 0)
        money = OrderMoney(placed, replayed.paid, replayed.fees, replayed.refunded, replayed.slashed, replayed.escrow)
        if placed != money.paid + money.refunded + money.remaining:
            problems.append("escrow does not add up: placed != paid + refunded + remaining")
        if problems:
            log.warning("order %d on %s: history disagrees with the contract: %s", order_id, self.market.address,
                        "; ".join(problems))
        first = next((e for e in market_events if e.name == "Assigned"), None)
        batch = _hex32(first.args.get("batchId", ZERO_BATCH)) if first is not None else ZERO_BATCH
        return OrderHistory(
            order_id, self.market.address, self.block, tuple(HistoryEntry.of(e, s) for e, s in steps),
            tuple(HistoryEntry.of(s) for s in slashes), order.state, replayed.state, order, money, tuple(problems),
            None if batch == ZERO_BATCH else batch,
        )

    # -- batches ------------------------------------------------------------------

    def batch(self, batch_id: str | bytes) -> BatchAudit:
        """Matching batch ``batch_id``: its ``BatchCommitted`` and every order its transaction assigned.

        The assignments come from the receipt of the ``assignBatch`` transaction (its logs, decoded
        with the market's ABI) and are checked against the index (every ``Assigned`` naming the
        batch, anywhere on chain, must be one of them) and the contract's ``batches(id)`` record."""
        bid = check_batch_id(batch_id)
        if bid == ZERO_BATCH:
            raise InputError("batch 0 is not a batch: it is what a manual assign names", field="batch_id")
        self.sync()
        committed = self.indexer.events(contract=MARKET, name="BatchCommitted", batchId=bid)
        if not committed:
            raise NotFound(f"no batch {bid} on market {self.market.address} (no BatchCommitted names it)",
                           field="batch_id")
        problems: list[str] = []
        if len(committed) > 1:
            problems.append(f"{len(committed)} BatchCommitted events name this batch; the contract records one")
        ev = committed[0]
        raw = self.market.chain.backend.request("eth_getTransactionReceipt", [ev.tx_hash])
        if not raw:
            raise NotFound(f"the transaction {ev.tx_hash} of batch {bid} has no receipt on this chain",
                           field="batch_id")
        logs = [e for e in self.market.contract.decode_logs(Receipt.from_rpc(raw).logs) if e.name == "Assigned"]
        assignments = []
        for a in logs:
            named = _hex32(a.args["batchId"])
            if named != bid:
                problems.append(f"Assigned of order {a.args['order']} in the batch's transaction names batch {named}")
                continue
            assignments.append(BatchAssignment(_int(a.args["order"]), _addr(a.args["provider"]), _int(a.args["price"]),
                                               tuple(_addr(b) for b in a.args["backups"]),
                                               _int(a.args["acceptDeadline"]), a.log_index))
        orders = _int(ev.args["orders"])
        if orders != len(assignments):
            problems.append(f"BatchCommitted says {orders} orders, its transaction assigned {len(assignments)}")
        elsewhere = [e for e in self.indexer.events(contract=MARKET, name="Assigned", batchId=bid)
                     if e.tx_hash != ev.tx_hash]
        for e in elsewhere:
            problems.append(f"order {e.args['order']} names this batch in another transaction {e.tx_hash}")
        ih, dh = _hex32(ev.args["inputsHash"]), _hex32(ev.args["decisionsHash"])
        rec = self._call(self.market.contract, "batches", bytes.fromhex(bid[2:]))
        for name, event_value, contract_value in (("inputs_hash", ih, _hex32(rec[0])),
                                                  ("decisions_hash", dh, _hex32(rec[1])),
                                                  ("block", ev.block_number, rec[2]), ("orders", orders, rec[3])):
            if event_value != contract_value:
                problems.append(f"{name}: BatchCommitted says {event_value}, contract says {contract_value}")
        if problems:
            log.warning("batch %s on %s: %s", bid[:14], self.market.address, "; ".join(problems))
        return BatchAudit(bid, self.market.address, ev.block_number, ev.timestamp, ev.tx_hash, ev.log_index, ih, dh,
                          orders, tuple(assignments), self.block, tuple(problems))

    # -- providers ----------------------------------------------------------------

    def provider(self, address: str) -> ProviderHistory:
        who = check_address(address)
        self.sync()
        raw = self._call(self.registry.contract, "provider", who)
        status, _domain, live, _unbond_at, stake = raw[:5]
        reg_events = self.indexer.events(contract=REGISTRY, provider=who)
        reg_withdrawals = self.indexer.events(contract=REGISTRY, name="Withdrawn", account=who)
        if ProviderStatus(status) is ProviderStatus.NONE and not reg_events:
            raise NotFound(f"{who} never registered with registry {self.registry.address}", field="address")
        registry_events = sorted(reg_events + reg_withdrawals, key=lambda e: (e.block_number, e.log_index))

        problems: list[str] = []
        fold: ProviderFold | None = None
        for ev in registry_events:
            if ev.name in PROVIDER_EVENTS:
                fold, problem = fold_provider(fold, ev.name, ev.args, block=ev.block_number)
                if problem:
                    problems.append(problem)
        slashes = [e for e in registry_events if e.name == "Slashed"]
        r_status, r_stake, r_live = ((fold.status, fold.stake, fold.live_leases) if fold is not None
                                     else (ProviderStatus.NONE, 0, 0))
        if r_status != ProviderStatus(status):
            problems.append(f"status: events say {r_status.name}, contract says {ProviderStatus(status).name}")
        if r_stake != stake:
            problems.append(f"stake: events say {r_stake}, contract says {stake}")
        if r_live != live:
            problems.append(f"live leases: events say {r_live}, contract says {live}")

        leases = self._leases(who)
        earned = sum(lease.earned for lease in leases)
        balance = self._call(self.market.contract, "balances", who)
        withdrawn = sum(_int(e.args["amount"]) for e in
                        self.indexer.events(contract=MARKET, name="Withdrawn", account=who))
        deposited = sum(_int(e.args["amount"]) for e in
                        self.indexer.events(contract=MARKET, name="Deposited", account=who))
        if deposited == 0 and not self.indexer.events(contract=MARKET, name="OrderPlaced", buyer=who) \
                and who != self._call(self.market.contract, "feeRecipient"):
            # a pure provider: what it may withdraw is exactly what leases paid it, less withdrawals
            if earned - withdrawn != balance:
                problems.append(f"market balance: events say {earned - withdrawn}, contract says {balance}")
        return ProviderHistory(
            who, self.block, ProviderStatus(status), stake, live, r_status, r_stake,
            tuple(HistoryEntry.of(e) for e in registry_events), tuple(HistoryEntry.of(e) for e in slashes),
            tuple(leases), earned, balance, withdrawn, tuple(problems),
        )

    def _leases(self, who: str) -> list[Lease]:
        """Every order assigned to ``who`` (directly or as a backup that took over), with its ending."""
        assigned = self.indexer.events(contract=MARKET, name="Assigned", provider=who)
        took_over = (self.indexer.events(contract=MARKET, name="AcceptanceTimedOut", next=who)
                     + self.indexer.events(contract=MARKET, name="OrderFailed", next=who))
        starts = sorted(assigned + took_over, key=lambda e: (e.block_number, e.log_index))
        leases = []
        for start in starts:
            oid = _int(start.args["order"])
            outcome, paid, fee, slashed = "live", 0, 0, 0
            for ev in self.indexer.events(contract=MARKET, order=oid):
                if (ev.block_number, ev.log_index) <= (start.block_number, start.log_index):
                    continue
                a = ev.args
                ender = a.get("provider", a.get("late"))
                if ev.name == "Cancelled":
                    outcome = "Cancelled"
                elif ev.name in ("Settled", "OrderFailed", "Resolved", "AcceptanceTimedOut") and ender is not None \
                        and _addr(ender) == who:
                    outcome = ev.name
                    paid, fee = _int(a.get("paid", 0)), _int(a.get("fee", 0))
                    slashed = _int(a.get("slashed", 0)) if ev.name != "Settled" else 0
                elif ev.name in ("Accepted", "Completed", "Disputed"):
                    outcome = ev.name  # live, as far as it has gone
                    continue
                else:
                    continue
                break
            leases.append(Lease(oid, start.block_number, outcome, paid, fee, slashed))
        return leases

    # -- escrow -------------------------------------------------------------------

    def escrow(self) -> EscrowAudit:
        self.sync()
        m, reg = self.market.contract, self.registry.contract
        held, free, escrow = self._call(m, "held"), self._call(m, "totalFree"), self._call(m, "totalEscrow")
        market_check = EscrowCheck(MARKET, held, free + escrow, {"totalFree": free, "totalEscrow": escrow})
        r_held, staked, released = (self._call(reg, "held"), self._call(reg, "totalStaked"),
                                    self._call(reg, "totalReleased"))
        registry_check = EscrowCheck(REGISTRY, r_held, staked + released,
                                     {"totalStaked": staked, "totalReleased": released})
        operator = _addr(self._call(m, "feeRecipient"))

        balances: dict[str, int] = {}
        reported: dict[str, int] = {}  # the `balance` field Deposited/Withdrawn carry
        orders: dict[int, tuple[str, int]] = {}  # order -> (buyer, escrow left)
        held_events = 0
        problems: list[str] = []

        def credit(who: Any, amount: int) -> None:
            if amount:
                key = _addr(who)
                balances[key] = balances.get(key, 0) + amount

        for ev in self.indexer.events(contract=MARKET):
            a, name = ev.args, ev.name
            if name == "Deposited":
                credit(a["account"], _int(a["amount"]))
                held_events += _int(a["amount"])
                reported[_addr(a["account"])] = _int(a["balance"])
            elif name == "Withdrawn":
                credit(a["account"], -_int(a["amount"]))
                held_events -= _int(a["amount"])
                reported[_addr(a["account"])] = _int(a["balance"])
            elif name == "OrderPlaced":
                credit(a["buyer"], -_int(a["escrow"]))
                orders[_int(a["order"])] = (_addr(a["buyer"]), _int(a["escrow"]))
            elif name in ("Settled", "Cancelled", "AcceptanceTimedOut", "OrderFailed", "Resolved"):
                oid = _int(a["order"])
                if oid not in orders:
                    problems.append(f"{name} of order {oid} at block {ev.block_number} before its OrderPlaced")
                    continue
                buyer, left = orders[oid]
                paid, fee = _int(a.get("paid", 0)), _int(a.get("fee", 0))
                refund, slashed = _int(a.get("refund", 0)), _int(a.get("slashed", 0))
                if paid:
                    credit(a["provider"], paid - fee)
                    credit(operator, fee)
                credit(buyer, refund + slashed)
                held_events += slashed  # slashed stake arrives from the registry
                orders[oid] = (buyer, left - paid - refund)
            if name in ("Deposited", "Withdrawn"):
                acct = _addr(a["account"])
                if balances.get(acct, 0) != reported[acct]:
                    problems.append(f"{name} of {acct} at block {ev.block_number} reports balance {reported[acct]}, "
                                    f"the events before it add up to {balances.get(acct, 0)}")

        free_events = sum(balances.values())
        escrow_events = sum(left for _, left in orders.values())
        for name, from_events, on_chain in (("totalFree", free_events, free), ("totalEscrow", escrow_events, escrow),
                                            ("held", held_events, held)):
            if from_events != on_chain:
                problems.append(f"{MARKET}.{name}: events add up to {from_events}, contract says {on_chain}")
        for acct, amount in sorted(balances.items()):
            actual = self._call(m, "balances", acct)
            if actual != amount:
                problems.append(f"balance of {acct}: events add up to {amount}, contract says {actual}")

        stakes: dict[str, int] = {}
        releases: dict[str, int] = {}
        for ev in self.indexer.events(contract=REGISTRY):
            a, name = ev.args, ev.name
            if name == "Registered":
                stakes[_addr(a["provider"])] = _int(a["stake"])
            elif name == "StakeAdded":
                stakes[_addr(a["provider"])] = stakes.get(_addr(a["provider"]), 0) + _int(a["amount"])
            elif name == "Slashed":
                stakes[_addr(a["provider"])] = stakes.get(_addr(a["provider"]), 0) - _int(a["amount"])
            elif name == "ProviderExited":
                who = _addr(a["provider"])
                stakes[who] = stakes.get(who, 0) - _int(a["released"])
                releases[who] = releases.get(who, 0) + _int(a["released"])
            elif name == "Withdrawn":
                who = _addr(a["account"])
                releases[who] = releases.get(who, 0) - _int(a["amount"])
        staked_events, released_events = sum(stakes.values()), sum(releases.values())
        for name, from_events, on_chain in (("totalStaked", staked_events, staked),
                                            ("totalReleased", released_events, released)):
            if from_events != on_chain:
                problems.append(f"{REGISTRY}.{name}: events add up to {from_events}, contract says {on_chain}")

        providers = set(stakes)
        by_role = {"buyers": 0, "providers": 0, "operator": 0, "escrow": escrow_events}
        for acct, amount in balances.items():
            role = "operator" if acct == operator else "providers" if acct in providers else "buyers"
            by_role[role] += amount
        by_role["stakers"] = staked_events + released_events
        live = sum(1 for _, left in orders.values() if left > 0)
        if problems:
            log.warning("escrow audit of %s at block %d: %s", self.market.address, self.block, "; ".join(problems))
        return EscrowAudit(self.block, market_check, registry_check, free_events, escrow_events, held_events,
                           staked_events, released_events, by_role, len(balances), live, tuple(problems))


def index_path(state_dir: Path, chain_id: int, genesis: str, market: str) -> Path:
    """Where the CLI keeps the audit index of one market on one chain (a cache: safe to delete)."""
    return state_dir / "index" / f"audit-{chain_id}-{genesis[2:14]}-{market[2:14].lower()}.sqlite"


__all__ = [
    "AMOUNT_ARGS", "Auditor", "BatchAssignment", "BatchAudit", "EscrowAudit", "HistoryEntry", "Lease",
    "OrderHistory", "OrderMoney", "ProviderHistory", "check_address", "check_batch_id", "escrow_check_dict", "index_path",
]
