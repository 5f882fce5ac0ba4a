"""The market feed: the chain's events as the read views see them, folded into an order book and a provider book.

A ``Snapshot`` is what the feed knows at one index cursor: every market and registry event in
chain order, each order folded through the contracts' state machine
(``marketplace.chain.lifecycle.fold_order``: the one transition table every consumer of the
chain uses) and the registry's providers (``ProviderBook``). ``MarketFeed`` keeps the latest
snapshot over one ``EventIndexer`` and refreshes it at most every ``MIN_REFRESH_S``, however
many clients poll: the order book, the topology's providers and every server-sent event stream
share it.

Chain reads block: ``refresh`` runs in the thread pool (``peek`` never blocks, so the event loop
may call it). The indexer may be shared with other readers of the same process (the auditor,
later the engine): the feed compares the head with its own snapshot's block, never with the
indexer's cursor, so a sync done by someone else still rebuilds the snapshot.

Invariants: an event's id is ``<block>-<log index>``, its position in chain order, so a resumed
stream neither repeats nor skips an event of the canonical chain; a snapshot is immutable once
published, so threads share it without a lock.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from marketplace.chain.audit import MARKET, REGISTRY
from marketplace.chain.indexer import EventIndexer, IndexedEvent
from marketplace.chain.lifecycle import (ORDER_EVENTS, LifecycleViolation, OrderFold, OrderState, ProviderBook,
                                         fold_order, state_after)
from marketplace.errors import InputError

log = logging.getLogger(__name__)

#: a feed re-reads the chain at most this often, however many clients poll it (seconds)
MIN_REFRESH_S = 0.2


def event_id(ev: IndexedEvent) -> str:
    return f"{ev.block_number}-{ev.log_index}"


def parse_event_id(raw: str, name: str = "Last-Event-ID") -> tuple[int, int]:
    """The position (block, log index) an event id names; faults name ``name``."""
    try:
        block, index = raw.strip().split("-")
        pos = (int(block), int(index))
    except ValueError:
        raise InputError(f"{name} must be <block>-<log index> as sent in an event's id, got {raw!r}",
                         field=name) from None
    if pos[0] < 0 or pos[1] < 0:
        raise InputError(f"{name} must not be negative, got {raw!r}", field=name)
    return pos


def _fold(fold: OrderFold | None, ev: IndexedEvent) -> OrderFold:
    try:
        return fold_order(fold, ev.name, ev.args, block=ev.block_number, timestamp=ev.timestamp, tx=ev.tx_hash)
    except LifecycleViolation as exc:
        # the contract did it, so the book shows it; the auditor is the one to report the contradiction
        assert fold is not None  # an OrderPlaced never contradicts a fold
        log.warning("order %d: %s at block %d: %s", fold.id, ev.name, ev.block_number, exc)
        state = state_after(ev.name, ev.args, fold.state)
        return replace(fold, state=state, updated_block=ev.block_number, updated_at=ev.timestamp,
                       timeline=fold.timeline + ((state, ev.timestamp),))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the feed knows at one index cursor: every event in chain order, the order and provider books."""

    block: int
    events: tuple[IndexedEvent, ...] = ()
    #: the order's state after each event that moved an order, keyed by event id
    states: dict[str, OrderState] = field(default_factory=dict)
    orders: dict[int, OrderFold] = field(default_factory=dict)
    order_events: dict[int, tuple[IndexedEvent, ...]] = field(default_factory=dict)
    positions: tuple[tuple[int, int], ...] = ()
    providers: ProviderBook = field(default_factory=ProviderBook)

    def since(self, pos: tuple[int, int]) -> tuple[IndexedEvent, ...]:
        """The events after position ``pos`` (block, log index), in chain order."""
        return self.events[bisect.bisect_right(self.positions, pos):]

    @classmethod
    def build(cls, block: int, events: list[IndexedEvent]) -> "Snapshot":
        orders: dict[int, OrderFold] = {}
        states: dict[str, OrderState] = {}
        by_order: dict[int, list[IndexedEvent]] = {}
        for ev in events:
            if ev.contract != MARKET or ev.name not in ORDER_EVENTS:
                continue
            oid = int(ev.args["order"])
            fold = orders.get(oid)
            if fold is None and ev.name != "OrderPlaced":
                log.warning("event %s of order %d at block %d precedes its OrderPlaced in the index",
                            ev.name, oid, ev.block_number)
                continue
            fold = orders[oid] = _fold(fold, ev)
            states[event_id(ev)] = fold.state
            by_order.setdefault(oid, []).append(ev)
        return cls(block, tuple(events), states, orders, {k: tuple(v) for k, v in by_order.items()},
                   tuple(ev.position for ev in events),
                   ProviderBook.of(ev for ev in events if ev.contract == REGISTRY))

    def describe(self, ev: IndexedEvent) -> dict[str, Any]:
        """An event as the streams send it."""
        out = ev.to_dict()
        out["id"] = event_id(ev)
        for key in ("order", "provider", "account"):
            if key in ev.args:
                out[key] = int(ev.args[key]) if key == "order" else ev.args[key]
        state = self.states.get(out["id"])
        if state is not None:
            out["state"] = state.label
            out["final"] = state.final
        return out


class MarketFeed:
    """The market's events for the read views: one event index, refreshed at most every ``MIN_REFRESH_S``.

    Thread-safe: ``refresh`` and ``snapshot`` may be called from any thread (the thread pool
    and every SSE stream share one feed); a snapshot is immutable once published. ``lock`` is
    held around each refresh; pass the one other readers of the same indexer hold (the audit
    routes do) so that none of them sees the index move in the middle of a read.
    """

    def __init__(self, indexer: EventIndexer, market: str, *, lock: threading.Lock | None = None) -> None:
        self.indexer = indexer
        self.market = market
        self._lock = lock or threading.Lock()
        self._snapshot = Snapshot(indexer.cursor)
        self._refreshed = 0.0
        self._version: tuple[int, int] | None = None

    def refresh(self, *, max_age: float = MIN_REFRESH_S) -> Snapshot:
        """Bring the index to the head (blocking: call from a worker thread) and return the snapshot.

        A snapshot younger than ``max_age`` seconds is returned as it is (SSE polls share one
        refresh); otherwise one ``eth_blockNumber`` decides whether there is anything to index,
        so a request handler (``max_age=0``) reads its own writes at the price of one call."""
        asked = time.monotonic()
        with self._lock:
            # a refresh that began no earlier than max_age before we asked (max_age=0: after we asked,
            # while we waited for the lock) saw every write that preceded this call: share its result
            if self._version is not None and self._refreshed >= asked - max_age:
                return self._snapshot
            self._refreshed = time.monotonic()
            if self._version is not None and self.indexer.backend.block_number() == self._snapshot.block:
                return self._snapshot
            self.indexer.sync()
            # the number of stored events and the cursor change on new events and on a reorg alike
            count = self.indexer.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            version = (self.indexer.cursor, count)
            if version != self._version:
                self._snapshot = Snapshot.build(self.indexer.cursor, self.indexer.events())
                if self._version is None or count != self._version[1]:
                    log.debug("views feed of %s at block %d: %d events, %d orders", self.market,
                              self.indexer.cursor, count, len(self._snapshot.orders))
                self._version = version
            else:
                self._snapshot = replace(self._snapshot, block=self.indexer.cursor)
            return self._snapshot

    def peek(self, max_age: float) -> Snapshot | None:
        """The snapshot if a refresh began less than ``max_age`` seconds ago, else None. Never blocks
        (the event loop may call it); a refresh in progress leaves the previous snapshot served."""
        if self._version is not None and time.monotonic() - self._refreshed < max_age:
            return self._snapshot
        return None

    def local_head(self) -> int | None:
        """The chain's head number when it can be read without I/O or a lock (the embedded chain in
        this process), else None: the event loop may call it."""
        head = getattr(getattr(self.indexer.backend, "rpc", None), "head_number", None)  # EmbeddedRpc's
        return head() if callable(head) else None
