"""The order book (``GET /v1/orders``): pages of the feed's orders, newest first, behind an opaque cursor.

A row is an order as its events leave it (``OrderFold``), never the engine's memory. A page is
built once per snapshot (which only a new event replaces) and query, validated against
``OrdersPage`` and kept as encoded bytes (``OrderPages``, at most ``MAX_PAGES``, the oldest
dropped first), so a repeated read costs only the freshness check of its snapshot.

Invariant: the cursor is the id of the last order returned, and since pages walk ids
downwards, orders placed while a client pages never shift the pages it has yet to read: a walk
returns every order that existed when it started exactly once.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import Any

from marketplace.api.feed import Snapshot
from marketplace.api.schemas import OrdersPage
from marketplace.chain.lifecycle import OrderFold, OrderState, is_zero
from marketplace.errors import InputError
from marketplace.resources.model import DeviceClass

MAX_LIMIT = 200
#: encoded order-book pages kept (one per query; the oldest dropped first)
MAX_PAGES = 256
STATE_NAMES = [s.label for s in OrderState if s is not OrderState.NONE]
_CURSOR_PREFIX = "order:"


def encode_cursor(order_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{order_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> int:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        oid = int(text[len(_CURSOR_PREFIX):])
        if oid < 1:
            raise ValueError(text)
        return oid
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"cursor {raw!r} is not one this API returned (pass next_cursor as it came)",
                         field="cursor") from None


def parse_state(raw: str) -> OrderState:
    if raw.lower() not in STATE_NAMES:
        raise InputError(f"state must be one of {', '.join(STATE_NAMES)}, got {raw!r}", field="state")
    return OrderState[raw.upper()]


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page's question: the cursor (orders below this id), size and filters (addresses checksummed)."""

    before: int | None
    limit: int
    buyer: str | None
    provider: str | None
    state: OrderState | None

    def wants(self, row: OrderFold) -> bool:
        return not ((self.buyer and row.buyer != self.buyer) or (self.provider and row.provider != self.provider)
                    or (self.state and row.state is not self.state))


def order_row(row: OrderFold) -> dict[str, Any]:
    """An order as the book shows it (``OrderOut``); ``escrow`` is what was placed in escrow."""
    try:
        dc = DeviceClass(row.device_class).name
    except ValueError:
        dc = str(row.device_class)
    placed = row.escrow + row.paid + row.refunded  # the fold's escrow is what remains of it
    return {
        "id": row.id, "buyer": row.buyer, "state": row.state.label, "final": row.state.final,
        "device_class": dc, "units": row.units, "duration": row.duration, "tier": row.tier,
        "max_price": str(row.max_price), "escrow": str(placed),
        "provider": None if is_zero(row.provider) else row.provider,
        "price": str(row.price), "placed_block": row.placed_block, "placed_at": row.placed_at,
        "placed_tx": row.placed_tx, "updated_block": row.updated_block, "updated_at": row.updated_at,
        "timeline": [{"state": s.label, "at": t} for s, t in row.timeline],
    }


def build_page(snap: Snapshot, q: PageQuery) -> bytes:
    page: list[OrderFold] = []
    more = False
    for oid in sorted(snap.orders, reverse=True):
        if q.before is not None and oid >= q.before:
            continue
        row = snap.orders[oid]
        if not q.wants(row):
            continue
        if len(page) == q.limit:
            more = True
            break
        page.append(row)
    doc = {"orders": [order_row(r) for r in page], "next_cursor": encode_cursor(page[-1].id) if more else None,
           "block": snap.block}
    return OrdersPage.model_validate(doc).model_dump_json().encode()


class OrderPages:
    """Encoded pages, each with the snapshot it was built from. Reads take no lock (a dict read is
    atomic); writes do, to keep the bound."""

    def __init__(self, limit: int = MAX_PAGES) -> None:
        self.limit = limit
        self._pages: dict[PageQuery, tuple[Snapshot, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, q: PageQuery, snap: Snapshot | None) -> bytes | None:
        """The kept page of ``q`` if it was built from ``snap`` itself."""
        kept = self._pages.get(q)
        return kept[1] if kept is not None and kept[0] is snap else None

    def page(self, snap: Snapshot, q: PageQuery) -> bytes:
        """The page of ``q`` in ``snap``: kept, or built (blocking: call from a worker thread) and kept."""
        body = self.get(q, snap)
        if body is None:
            body = build_page(snap, q)
            with self._lock:
                if len(self._pages) >= self.limit:
                    self._pages.pop(next(iter(self._pages)), None)
                self._pages[q] = (snap, body)
        return body
