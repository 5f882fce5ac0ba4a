"""The engine's fold of the chain's events: what they mean is ``marketplace.chain.lifecycle``'s, what
the engine does about them is here.

``EventFold`` applies each market and registry event once: from the index, in chain order
(``sync``, following ``EventIndexer.since`` from the position of the last event it applied),
and from the engine's own receipts as soon as they are mined (``apply_tx``; the index then
brings the same event again and it is skipped). For an order event the state, provider,
backups and deadline come from ``lifecycle.fold_order``; the engine's reactions are:

- ``OrderPlaced``: a new ``OrderRecord``; queued in the matcher once its spec is known;
- the order left its provider or matching (a handover to the next backup, completion, or a
  final state): the matcher releases the capacity (or the queue entry);
- Assigned (directly or by a handover): the matcher holds the capacity on the provider;
- Running: the heartbeat monitor watches the provider;
- the engine's ``Status`` follows the state (``orders.STATUS_AFTER``), with a reason for a
  handover; each event is noted in the order's history with the state after it.

Registry events update the ``ProviderTable`` (``lifecycle.fold_provider`` over the index) and
re-project the provider; ``BatchCommitted`` is recorded in ``batches``.

Invariants: an event moves an order at most once (by transaction and name); the engine's table
after ``sync`` is the fold of every indexed event, so a restarted engine rebuilds it from the
chain (``recover``): Open orders queued again, Assigned/Running ones holding their capacity,
Running providers watched.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Mapping

from marketplace.chain.indexer import BEFORE_FIRST, EventIndexer, arg_bytes
from marketplace.chain.lifecycle import (ORDER_EVENTS, LifecycleViolation, OrderFold, OrderState, fold_order,
                                         state_after)
from marketplace.convergence.heartbeat import HeartbeatMonitor
from marketplace.engine.matcher import Matcher
from marketplace.engine.orders import STATUS_AFTER, OrderRecord, Status
from marketplace.engine.providers import ProviderTable
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore

log = logging.getLogger(__name__)

MARKET = "ComputeMarket"
REGISTRY = "ProviderRegistry"
ZERO_BATCH = b"\x00" * 32


class EventFold:
    """Applies chain events to the engine's tables and reacts (see the module docstring)."""

    def __init__(self, *, indexer: EventIndexer, orders: dict[int, OrderRecord], specs: dict[bytes, Spec],
                 batches: dict[str, dict[str, Any]], store: EngineStore, table: ProviderTable, matcher: Matcher,
                 monitor: HeartbeatMonitor, clock: Callable[[], float]) -> None:
        self.indexer = indexer
        self.orders = orders
        self.specs = specs
        self.batches = batches
        self.store = store
        self.table = table
        self.matcher = matcher
        self.monitor = monitor
        self.clock = clock
        self.position = BEFORE_FIRST

    def sync(self) -> None:
        """Index to the chain's head and apply every event after the last one applied."""
        self.indexer.sync()
        for ev in self.indexer.since(self.position):
            self.apply(ev.contract, ev.name, ev.args, ev.block_number, ev.tx_hash, indexed=True,
                       timestamp=ev.timestamp)
            self.position = ev.position

    def apply_tx(self, tx: Any) -> None:
        """The events of one of the engine's own transactions, applied before the index has them."""
        for ev in tx.events:
            self.apply(ev.contract, ev.name, ev.args, ev.block_number, ev.tx_hash, indexed=False)

    def recover(self) -> None:
        """Rebuild orders and leases from the chain's events (the index is persisted in state_dir)."""
        self.sync()
        live = sum(1 for r in self.orders.values() if r.state.live)
        opened = sum(1 for r in self.orders.values() if r.state == OrderState.OPEN)
        now = self.clock()
        for r in self.orders.values():
            if r.state == OrderState.RUNNING:
                self.monitor.watch(r.provider, now)
        log.info("engine recovered from chain: %d orders, %d open, %d assigned or running, %d batches",
                 len(self.orders), opened, live, len(self.batches))

    def apply(self, contract: str, name: str, args: Mapping[str, Any], block: int, tx_hash: str, *,
              indexed: bool, timestamp: int = 0) -> None:
        if contract == REGISTRY:
            addr = self.table.apply(name, args, block=block, indexed=indexed)
            if addr is not None:
                self.matcher.refresh(addr)
        elif name == "BatchCommitted":
            bid = "0x" + arg_bytes(args["batchId"]).hex()
            self.batches[bid] = {"inputs_hash": "0x" + arg_bytes(args["inputsHash"]).hex(),
                                 "decisions_hash": "0x" + arg_bytes(args["decisionsHash"]).hex(), "block": block,
                                 "tx": tx_hash}
        elif "order" in args:
            self._order_event(name, args, block, tx_hash, timestamp)

    # -- orders

    def _order_event(self, name: str, args: Mapping[str, Any], block: int, tx_hash: str, timestamp: int) -> None:
        oid = int(args["order"])
        rec = self.orders.get(oid)
        if name == "OrderPlaced":
            if rec is None:
                self._placed(oid, args, block, tx_hash, timestamp)
            return
        if rec is None or rec.seen(tx_hash, name):
            return  # not an order of ours, or already applied from our own receipt
        before = rec.state
        rec.fold = self._fold(rec.fold, name, args, block, tx_hash, timestamp)
        if name in ORDER_EVENTS:  # the history is the order's transitions; money events only fold
            self._note(rec, name, block, tx_hash, args.get("batchId") if name == "Assigned" else None)
            self._react(rec, name, before)

    def _placed(self, oid: int, args: Mapping[str, Any], block: int, tx_hash: str, timestamp: int) -> None:
        fold = fold_order(None, "OrderPlaced", args, block=block, timestamp=timestamp, tx=tx_hash)
        rec = OrderRecord(oid, arg_bytes(args["requirement"]), fold)
        self.orders[oid] = rec
        self._note(rec, "OrderPlaced", block, tx_hash)
        if rec.spec_digest not in self.specs:
            spec = self.store.load_spec(rec.spec_digest)
            if spec is not None:
                self.specs[rec.spec_digest] = spec
        if rec.spec_digest in self.specs:
            rec.set(Status.QUEUED)
            if self.matcher.current:
                self.matcher.submit(rec, self.clock())
        else:
            log.info("order %d: waiting for its spec 0x%s", oid, rec.spec_digest.hex()[:12])

    @staticmethod
    def _fold(fold: OrderFold, name: str, args: Mapping[str, Any], block: int, tx_hash: str,
              timestamp: int) -> OrderFold:
        try:
            return fold_order(fold, name, args, block=block, timestamp=timestamp, tx=tx_hash)
        except LifecycleViolation as exc:  # the contract never emits this; follow the event regardless
            log.error("order %d: %s at block %d contradicts its events so far: %s", fold.id, name, block, exc)
            after = state_after(name, args, fold.state)
            handed_to = args.get("next") if after == OrderState.ASSIGNED else None
            return replace(fold, state=after, provider=handed_to or fold.provider)

    def _react(self, rec: OrderRecord, name: str, before: OrderState) -> None:
        """The engine's reactions to the order's move from ``before`` to ``rec.state``."""
        after = rec.state
        handover = before.live and after in (OrderState.ASSIGNED, OrderState.REFUNDED)
        if handover or after.final or after == OrderState.COMPLETED:
            self.matcher.release(rec)  # the lease on its provider (or its place in the queue) ended
        status = STATUS_AFTER.get(after)
        if status is not None:
            if not handover:
                rec.set(status)
            elif after == OrderState.ASSIGNED:
                rec.set(status, [[name, "moved to backup " + rec.provider]])
            else:
                rec.set(status, [[name, "no backup left; buyer refunded"]])
        now = self.clock()
        if after == OrderState.ASSIGNED:
            self.matcher.hold(rec, rec.provider, now)
        elif after == OrderState.RUNNING:
            self.monitor.watch(rec.provider, now)

    def _note(self, rec: OrderRecord, name: str, block: int, tx_hash: str, batch: Any = None) -> None:
        entry = {"event": name, "block": block, "tx": tx_hash, "state": rec.state.label}
        if batch is not None and arg_bytes(batch) != ZERO_BATCH:
            entry["batch"] = "0x" + arg_bytes(batch).hex()  # the matching batch that decided this assignment
        rec.history.append(entry)
        log.info("order %d: %s (block %d, tx %s)", rec.id, name, block, tx_hash)

