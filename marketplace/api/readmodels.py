"""The engine's hot reads, kept between requests: the provider list and the chain part of one order's view.

The two hot reads do not go to the chain or wait on the engine's lock on every request
(``cona bench api``: 1,000 reads/s on two cores).

- ``GET /v1/orders/{id}``: the chain part of the view (``getOrder``, an EVM call of ~1.4 ms on
  the embedded chain) is kept per order until the engine has seen a new event of that order
  (its record's history grows); only events change an order on chain, so the kept part is the
  chain as of the engine's index, the same point its status and history describe. The
  engine part (status, reasons, history) is read fresh on every request.
- ``GET /v1/providers`` (and the providers in ``/v1/topology``): the engine's list, kept at most
  ``PROVIDERS_TTL_S``; an LSA or heartbeat posted here drops it, so a provider's own writes
  show at once, while what the engine decides by itself (load, a failed provider) shows within
  the TTL. A request that finds another one reloading the list serves the previous one rather
  than queueing behind the engine's lock.

Reads only ``Engine``'s public methods (``providers``, ``order_view``) and the attributes
``orders`` (a dict of records with ``history``, ``spec_digest``, ``status``, ``reasons``) and
``specs``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi.encoders import jsonable_encoder

if TYPE_CHECKING:
    from marketplace.engine.service import Engine

log = logging.getLogger(__name__)

#: how stale the engine's provider list may be when no LSA or heartbeat arrived here (seconds)
PROVIDERS_TTL_S = 0.25
#: order views kept at most (the oldest are dropped first)
MAX_ORDER_VIEWS = 4096


class ReadModels:
    """The engine's hot reads, kept between requests (see the module docstring). Thread-safe.

    ``peek_*`` never block (the event loop serves a kept answer without a thread-pool hop);
    ``providers`` and ``order_view`` may wait on the engine or the chain (thread pool only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # held only around dict and field updates, never across a call
        self._providers: tuple[list[dict[str, Any]], bytes] | None = None
        self._providers_at = 0.0
        self._providers_gen = 0  # bumped by every write that may change the list
        self._loading = threading.Lock()
        self._orders: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    # -- providers
    def providers_changed(self) -> None:
        with self._lock:
            self._providers_gen += 1
            self._providers = None

    def peek_providers(self) -> tuple[list[dict[str, Any]], bytes] | None:
        """The kept list and its JSON if younger than the TTL, or if another request is reloading it."""
        with self._lock:
            kept = self._providers
            if kept is None:
                return None
            if time.monotonic() - self._providers_at < PROVIDERS_TTL_S or self._loading.locked():
                return kept
        return None

    def providers(self) -> tuple[list[dict[str, Any]], bytes]:
        kept = self.peek_providers()
        if kept is not None:
            return kept
        with self._loading:
            kept = self.peek_providers()  # reloaded while we waited for the lock
            if kept is not None and not self._stale():
                return kept
            with self._lock:
                gen = self._providers_gen
            started = time.monotonic()
            out = self.engine.providers()
            doc = (out, json.dumps(jsonable_encoder(out), separators=(",", ":")).encode())
            with self._lock:
                if self._providers_gen == gen:  # no write arrived while we read: this list is current
                    self._providers, self._providers_at = doc, started
            return doc

    def _stale(self) -> bool:
        with self._lock:
            return self._providers is None or time.monotonic() - self._providers_at >= PROVIDERS_TTL_S

    # -- one order
    def _version(self, rec: Any) -> tuple[Any, ...]:
        # the order changes on chain only by its events; the spec may arrive after the order
        history = rec.history
        return len(history), history[-1]["tx"] if history else None, rec.spec_digest in self.engine.specs

    def peek_order(self, order_id: int) -> dict[str, Any] | None:
        """The view from the kept chain part and the engine's record as it is now, or None on a miss."""
        rec = self.engine.orders.get(order_id)  # a dict read: atomic, no wait on the engine's lock
        if rec is None:
            return None
        with self._lock:
            kept = self._orders.get(order_id)
        if kept is None or kept[0] != self._version(rec):
            return None
        return {**kept[1], "engine": {"status": rec.status, "reasons": list(rec.reasons),
                                      "history": list(rec.history)}}

    def order_view(self, order_id: int) -> dict[str, Any]:
        doc = self.peek_order(order_id)
        if doc is not None:
            return doc
        rec = self.engine.orders.get(order_id)
        version = None if rec is None else self._version(rec)  # taken before the read: never newer than it
        doc = self.engine.order_view(order_id)  # unknown yet: the engine syncs its index or says 404
        if version is not None:
            with self._lock:
                if len(self._orders) >= MAX_ORDER_VIEWS:
                    self._orders.pop(next(iter(self._orders)))
                self._orders[order_id] = (version, doc)
        return doc
