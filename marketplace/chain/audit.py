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
  replayed balance equals ``balances(account)``. ``MarketBooks`` and ``StakeBooks`` replay
  the two contracts' books; the escrow left in each order is ``lifecycle.fold_order``'s.

The values (``OrderHistory``, ``EscrowAudit``, ...) and the id checks live in
``marketplace.chain.audit_values`` and are re-exported here; what the events mean for an order
or a provider is ``marketplace.chain.lifecycle``'s, so the auditor's own work is comparing
those folds with the contracts' views.

Invariant: for a deployment indexed from its first block, on a chain without a bug in
the contracts, every ``consistent``/``balanced`` flag here is true; a false one names
the field (``mismatches``) so that an auditor can point at the discrepancy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from marketplace.chain.audit_values import (AMOUNT_ARGS, MARKET, REGISTRY, ZERO_BATCH, BatchAssignment, BatchAudit,
                                            EscrowAudit, HistoryEntry, Lease, OrderHistory, OrderMoney,
                                            ProviderHistory, as_address, as_int, check_address, check_batch_id,
                                            escrow_check_dict, hex32)
from marketplace.chain.audit_governance import GovernanceAudit, governance
from marketplace.chain.client import EscrowCheck
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment
from marketplace.chain.indexer import EventIndexer, IndexedEvent
from marketplace.chain.lifecycle import (LEASE_ENDINGS, MONEY_EVENTS, ORDER_EVENTS, PAYING_EVENTS, PROVIDER_EVENTS,
                                         LifecycleViolation, OrderFold, ProviderFold, ProviderStatus, fold_order,
                                         fold_provider, replay_order)
from marketplace.chain.market import Market, Order
from marketplace.chain.registry import Registry
from marketplace.chain.writer import Receipt
from marketplace.errors import InputError, NotFound

log = logging.getLogger(__name__)


def _compare_order(r: OrderFold, o: Order) -> list[str]:
    out = []
    pairs: list[tuple[str, Any, Any]] = [
        ("state", r.state.name, o.state.name), ("buyer", r.buyer, o.buyer), ("provider", r.provider, o.provider),
        ("price", r.price, o.price), ("escrow", r.escrow, o.escrow), ("served", r.served, o.served),
        ("usage", r.usage, o.usage), ("result", r.result, "0x" + o.result.hex()),
        ("accept_deadline", r.accept_deadline, o.accept_deadline), ("started_at", r.started_at, o.started_at),
        ("completed_at", r.completed_at, o.completed_at), ("next_backup", r.next_backup, o.next_backup),
        ("backups", r.backups, o.backups), ("disputed_at", r.disputed_at, o.disputed_at),
        ("paid", r.paid, o.paid), ("compensated", r.compensated, o.compensated),
    ]
    if r.placed_tx:
        pairs += [
            ("units", r.units, o.units), ("duration", r.duration, o.duration), ("max_price", r.max_price, o.max_price),
            ("tier", r.tier, o.tier), ("device_class", r.device_class, o.device_class), ("terms", r.terms, o.terms),
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

    def _events(self, contract: str | None = None, name: str | None = None, **where: Any) -> list[IndexedEvent]:
        """The index's events up to the block the auditor reads the contracts at (``self.block``): an index
        shared with another reader (the engine) may have been synced further since."""
        return self.indexer.events(contract, name, to_block=self.block, **where)

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
        events = self._events(order=order_id)
        market_events = [e for e in events if e.contract == MARKET and (e.name in ORDER_EVENTS or
                                                                         e.name in MONEY_EVENTS)]
        slashes = [e for e in events if e.contract == REGISTRY and e.name == "Slashed"]
        replay = replay_order(market_events)
        steps, problems = replay.steps, list(replay.problems)
        replayed = replay.fold if replay.fold is not None else OrderFold(order_id)
        if not market_events:
            problems.append("no events for this order in the index (indexed from a later block?)")
        problems += _compare_order(replayed, order)
        taken = sum(as_int(s.args["amount"]) for s in slashes)
        # every slashed unit that arrived is the buyer's compensation or burned (a fee-on-transfer token
        # delivers less than the registry sent, never more)
        if replayed.compensated + replayed.burned > taken:
            problems.append(f"slashed: order events credit {replayed.compensated} and burn {replayed.burned}, "
                            f"registry Slashed events took only {taken}")
        if replayed.compensated > replayed.paid:
            problems.append(f"compensation {replayed.compensated} is above what the buyer paid, {replayed.paid}")
        placed = next((as_int(e.args["escrow"]) for e in market_events if e.name == "OrderPlaced"), 0)
        money = OrderMoney(placed, replayed.paid, replayed.fees, replayed.refunded, replayed.compensated,
                           replayed.burned, replayed.escrow)
        if placed != money.paid + money.refunded + money.remaining:
            problems.append("escrow does not add up: placed != paid + refunded + remaining")
        if problems:
            log.warning("order %d on %s: history disagrees with the contract: %s", order_id, self.market.address,
                        "; ".join(problems))
        market_events = [e for e in market_events if e.name in ORDER_EVENTS]
        first = next((e for e in market_events if e.name == "Assigned"), None)
        batch = hex32(first.args.get("batchId", ZERO_BATCH)) if first is not None else ZERO_BATCH
        return OrderHistory(
            order_id, self.market.address, self.block, tuple(HistoryEntry.of(e, s) for e, s in steps),
            tuple(HistoryEntry.of(s) for s in slashes), order.state, replayed.state, order, money, tuple(problems),
            None if batch == ZERO_BATCH else batch,
        )

    # -- governance ---------------------------------------------------------------

    def governance(self) -> GovernanceAudit:
        """The market's admin and every change of its terms, orchestrators and least stake, checked
        against the contracts (``marketplace.chain.audit_governance``)."""
        self.sync()
        return governance(self.market, self._events, self._call, self.block)

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
        committed = self._events(contract=MARKET, name="BatchCommitted", batchId=bid)
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
            named = hex32(a.args["batchId"])
            if named != bid:
                problems.append(f"Assigned of order {a.args['order']} in the batch's transaction names batch {named}")
                continue
            assignments.append(BatchAssignment(as_int(a.args["order"]), as_address(a.args["provider"]),
                                               as_int(a.args["price"]),
                                               tuple(as_address(b) for b in a.args["backups"]),
                                               as_int(a.args["acceptDeadline"]), a.log_index))
        orders = as_int(ev.args["orders"])
        if orders != len(assignments):
            problems.append(f"BatchCommitted says {orders} orders, its transaction assigned {len(assignments)}")
        elsewhere = [e for e in self._events(contract=MARKET, name="Assigned", batchId=bid)
                     if e.tx_hash != ev.tx_hash]
        for e in elsewhere:
            problems.append(f"order {e.args['order']} names this batch in another transaction {e.tx_hash}")
        ih, dh = hex32(ev.args["inputsHash"]), hex32(ev.args["decisionsHash"])
        rec = self._call(self.market.contract, "batches", bytes.fromhex(bid[2:]))
        for name, event_value, contract_value in (("inputs_hash", ih, hex32(rec[0])),
                                                  ("decisions_hash", dh, hex32(rec[1])),
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
        reg_events = self._events(contract=REGISTRY, provider=who)
        reg_withdrawals = self._events(contract=REGISTRY, name="Withdrawn", account=who)
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
        withdrawn = sum(as_int(e.args["amount"]) for e in
                        self._events(contract=MARKET, name="Withdrawn", account=who))
        deposited = sum(as_int(e.args["amount"]) for e in
                        self._events(contract=MARKET, name="Deposited", account=who))
        if deposited == 0 and not self._events(contract=MARKET, name="OrderPlaced", buyer=who) \
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
        assigned = self._events(contract=MARKET, name="Assigned", provider=who)
        took_over = (self._events(contract=MARKET, name="AcceptanceTimedOut", next=who)
                     + self._events(contract=MARKET, name="OrderFailed", next=who))
        starts = sorted(assigned + took_over, key=lambda e: (e.block_number, e.log_index))
        leases = []
        for start in starts:
            oid = as_int(start.args["order"])
            outcome, paid, fee, slashed = "live", 0, 0, 0
            for ev in self._events(contract=MARKET, order=oid):
                if (ev.block_number, ev.log_index) <= (start.block_number, start.log_index):
                    continue
                a = ev.args
                ender = a.get("provider", a.get("late"))
                if ev.name == "Cancelled":
                    outcome = "Cancelled"
                elif ev.name in LEASE_ENDINGS and ender is not None and as_address(ender) == who:
                    outcome = ev.name
                    paid, fee = as_int(a.get("paid", 0)), as_int(a.get("fee", 0))
                    slashed = sum(as_int(s.args["amount"]) for s in self._events(
                        contract=REGISTRY, name="Slashed", order=oid, provider=who)
                                  if s.block_number == ev.block_number and s.tx_hash == ev.tx_hash)
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
        burn = self._call(m, "totalBurned")
        market_check = EscrowCheck(MARKET, held, free + escrow + burn,
                                   {"totalFree": free, "totalEscrow": escrow, "totalBurned": burn})
        r_held, staked, released = (self._call(reg, "held"), self._call(reg, "totalStaked"),
                                    self._call(reg, "totalReleased"))
        registry_check = EscrowCheck(REGISTRY, r_held, staked + released,
                                     {"totalStaked": staked, "totalReleased": released})
        operator = as_address(self._call(m, "feeRecipient"))

        books = MarketBooks(operator)
        for ev in self._events(contract=MARKET):
            books.apply(ev)
        problems = list(books.problems)
        for name, from_events, on_chain in (("totalFree", books.free, free), ("totalEscrow", books.escrow, escrow),
                                            ("totalBurned", books.burn_backlog, burn), ("held", books.held, held)):
            if from_events != on_chain:
                problems.append(f"{MARKET}.{name}: events add up to {from_events}, contract says {on_chain}")
        for acct, amount in sorted(books.balances.items()):
            actual = self._call(m, "balances", acct)
            if actual != amount:
                problems.append(f"balance of {acct}: events add up to {amount}, contract says {actual}")

        stakes = StakeBooks.of(self._events(contract=REGISTRY))
        for name, from_events, on_chain in (("totalStaked", stakes.staked, staked),
                                            ("totalReleased", stakes.released, released)):
            if from_events != on_chain:
                problems.append(f"{REGISTRY}.{name}: events add up to {from_events}, contract says {on_chain}")

        by_role = books.owed_by_role(set(stakes.stakes))
        by_role["stakers"] = stakes.staked + stakes.released
        if problems:
            log.warning("escrow audit of %s at block %d: %s", self.market.address, self.block, "; ".join(problems))
        return EscrowAudit(self.block, market_check, registry_check, books.free, books.escrow, books.held,
                           books.burn_backlog, stakes.staked, stakes.released, by_role, len(books.balances), books.live_orders,
                           tuple(problems))


class MarketBooks:
    """The market's books replayed from its events: every account's withdrawable balance, the escrow
    left in each order (``lifecycle.fold_order``), and what the contract holds. Fed in chain order."""

    def __init__(self, operator: str) -> None:
        self.operator = operator
        self.balances: dict[str, int] = {}
        self.reported: dict[str, int] = {}  # the `balance` field Deposited/Withdrawn carry
        self.orders: dict[int, OrderFold] = {}
        self.held = 0  # deposits - withdrawals + slashed stake received - burns flushed
        self.burn_backlog = 0  # slashed stake set aside for burning, not yet sent to the burn address
        self.problems: list[str] = []

    def credit(self, who: Any, amount: int) -> None:
        if amount:
            key = as_address(who)
            self.balances[key] = self.balances.get(key, 0) + amount

    def apply(self, ev: IndexedEvent) -> None:
        a, name = ev.args, ev.name
        if name in ("Deposited", "Withdrawn"):
            sign = 1 if name == "Deposited" else -1
            acct = as_address(a["account"])
            self.credit(acct, sign * as_int(a["amount"]))
            self.held += sign * as_int(a["amount"])
            self.reported[acct] = as_int(a["balance"])
            if self.balances.get(acct, 0) != self.reported[acct]:
                self.problems.append(f"{name} of {acct} at block {ev.block_number} reports balance "
                                     f"{self.reported[acct]}, the events before it add up to "
                                     f"{self.balances.get(acct, 0)}")
        elif name == "OrderPlaced":
            self.credit(a["buyer"], -as_int(a["escrow"]))
        elif name == "Burned":
            self.burn_backlog += as_int(a["amount"])
            self.held += as_int(a["amount"])  # slashed stake arrived from the registry, set aside
        elif name == "BurnFlushed":
            self.burn_backlog -= as_int(a["amount"])
            self.held -= as_int(a["amount"])
        elif name in PAYING_EVENTS:
            oid = as_int(a["order"])
            if oid not in self.orders:
                self.problems.append(f"{name} of order {oid} at block {ev.block_number} before its OrderPlaced")
                return
            paid, fee = as_int(a.get("paid", 0)), as_int(a.get("fee", 0))
            if paid:
                self.credit(a["provider"], paid - fee)
                self.credit(self.operator, fee)
            compensation = as_int(a.get("compensation", 0))
            self.credit(self.orders[oid].buyer, as_int(a.get("refund", 0)) + compensation)
            self.held += compensation  # slashed stake arrives from the registry
        if (name in ORDER_EVENTS or name in MONEY_EVENTS) and (name == "OrderPlaced" or
                                                                as_int(a["order"]) in self.orders):
            self._fold(ev)  # every transition, so a handover finds the backups its Assigned named

    def _fold(self, ev: IndexedEvent) -> None:
        oid = as_int(ev.args["order"])
        fold = self.orders.get(oid)
        try:
            self.orders[oid] = fold_order(fold, ev.name, ev.args, block=ev.block_number, timestamp=ev.timestamp,
                                          tx=ev.tx_hash)
        except LifecycleViolation as exc:
            self.problems.append(f"{ev.name} of order {oid} at block {ev.block_number}: {exc}")
            if fold is not None:  # the money still moved as the event says
                out = as_int(ev.args.get("paid", 0)) + as_int(ev.args.get("refund", 0))
                self.orders[oid] = replace(fold, escrow=fold.escrow - out)

    @property
    def free(self) -> int:
        return sum(self.balances.values())

    @property
    def escrow(self) -> int:
        return sum(o.escrow for o in self.orders.values())

    @property
    def live_orders(self) -> int:
        return sum(1 for o in self.orders.values() if o.escrow > 0)

    def owed_by_role(self, providers: set[str]) -> dict[str, int]:
        by_role = {"buyers": 0, "providers": 0, "operator": 0, "escrow": self.escrow}
        for acct, amount in self.balances.items():
            role = "operator" if acct == self.operator else "providers" if acct in providers else "buyers"
            by_role[role] += amount
        return by_role


@dataclass(frozen=True)
class StakeBooks:
    """The registry's books replayed from its events: stake per provider, and stake released but not
    yet withdrawn."""

    stakes: dict[str, int]
    releases: dict[str, int]

    @classmethod
    def of(cls, events: Iterable[IndexedEvent]) -> "StakeBooks":
        stakes: dict[str, int] = {}
        releases: dict[str, int] = {}
        for ev in events:
            a, name = ev.args, ev.name
            if name == "Registered":
                stakes[as_address(a["provider"])] = as_int(a["stake"])
            elif name == "StakeAdded":
                stakes[as_address(a["provider"])] = stakes.get(as_address(a["provider"]), 0) + as_int(a["amount"])
            elif name == "Slashed":
                stakes[as_address(a["provider"])] = stakes.get(as_address(a["provider"]), 0) - as_int(a["amount"])
            elif name == "ProviderExited":
                who = as_address(a["provider"])
                stakes[who] = stakes.get(who, 0) - as_int(a["released"])
                releases[who] = releases.get(who, 0) + as_int(a["released"])
            elif name == "Withdrawn":
                who = as_address(a["account"])
                releases[who] = releases.get(who, 0) - as_int(a["amount"])
        return cls(stakes, releases)

    @property
    def staked(self) -> int:
        return sum(self.stakes.values())

    @property
    def released(self) -> int:
        return sum(self.releases.values())


def index_path(state_dir: Path, chain_id: int, genesis: str, market: str) -> Path:
    """Where the CLI keeps the audit index of one market on one chain (a cache: safe to delete)."""
    return state_dir / "index" / f"audit-{chain_id}-{genesis[2:14]}-{market[2:14].lower()}.sqlite"


__all__ = [
    "AMOUNT_ARGS", "MARKET", "REGISTRY", "Auditor", "BatchAssignment", "BatchAudit", "EscrowAudit", "HistoryEntry",
    "Lease", "MarketBooks", "OrderHistory", "OrderMoney", "ProviderHistory", "StakeBooks", "check_address",
    "check_batch_id", "escrow_check_dict", "index_path",
]
