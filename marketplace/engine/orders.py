"""The engine's order table, and orders in: signed intents and specs checked, placed on chain.

``OrderRecord`` is the engine's row for one on-chain order: the order as its events describe
it (``fold``, a ``lifecycle.OrderFold``), the digest of its spec, and the engine's own view:
a ``Status`` with its reasons and the history of the events it applied (each with the state
after it). ``OrderDesk`` takes a buyer's order in: ``place_order`` checks the spec against the
signed intent and the intent's signature, keeps the spec and sends ``placeSignedOrders``;
``place_order_tx`` attaches a spec to an order the buyer placed itself. ``IdempotencyStore``
maps an ``Idempotency-Key`` to the order it placed.

Invariants:
- an order's state, provider, backups and deadline are the lifecycle fold's, never set here;
- a spec is kept (``state_dir/specs``) before the transaction that places its order, so an
  order is never on chain with its spec lost by this engine;
- the same ``Idempotency-Key`` with the same request returns the same order id, with another
  request it is a conflict (409); a key is recorded only once its order is on chain;
- every bad input raises an ``InputError`` naming the field (``intent.units``, ``signature``,
  ``spec.attachment``, ...).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable

from eth_utils import keccak, to_checksum_address

from marketplace.chain.indexer import arg_bytes
from marketplace.chain.intents import OrderIntent
from marketplace.chain.lifecycle import OrderFold, OrderState
from marketplace.chain.market import Market
from marketplace.chain.writer import Receipt, Signer
from marketplace.engine.errors import IdempotencyConflict, InvalidSpec, SpecMismatch
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore
from marketplace.errors import InputError, NotFound, TopologyError
from marketplace.routing import RoutingTable

if TYPE_CHECKING:
    from marketplace.engine.matcher import Matcher

log = logging.getLogger(__name__)

# Without a tier proof the gas of placeSignedOrders is bounded and known: about twice the gas
# measured on the embedded chain (262k cold / 228k warm for one intent), so no eth_estimateGas (a
# full extra EVM execution) sits on the order -> lease path; unused gas is not charged.
GAS_PLACE = 500_000


class Status(StrEnum):
    """The engine's view of an order (``OrderRecord.status``); the values are the API's strings."""

    AWAITING_SPEC = "awaiting-spec"  # on chain, its spec not submitted yet
    QUEUED = "queued"  # in the matcher's queue
    PENDING = "pending"  # matched in a round without a lease yet (no fit now, denied, pre-empted)
    REFUSED = "refused"  # no provider can ever satisfy it: Open on chain until the buyer cancels
    HANDED_OVER = "handed-over"  # Open on chain, matched by another domain's engine (multi-domain market)
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    ENDED = "ended"  # settled, cancelled, resolved or refunded


#: the engine's status once an event has moved the order to each state (Disputed changes nothing)
STATUS_AFTER = {
    OrderState.ASSIGNED: Status.ASSIGNED, OrderState.RUNNING: Status.RUNNING,
    OrderState.COMPLETED: Status.COMPLETED, OrderState.SETTLED: Status.ENDED, OrderState.CANCELLED: Status.ENDED,
    OrderState.REFUNDED: Status.ENDED, OrderState.RESOLVED: Status.ENDED,
}


@dataclass
class OrderRecord:
    """The engine's view of one on-chain order (mutable bookkeeping, rebuilt from events)."""

    id: int
    spec_digest: bytes
    fold: OrderFold
    status: Status = Status.AWAITING_SPEC
    reasons: list[Any] = field(default_factory=list)
    #: the events applied, in order: {"event", "block", "tx", "state"[, "batch"]}
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> OrderState:
        return self.fold.state

    @property
    def buyer(self) -> str:
        return self.fold.buyer

    @property
    def provider(self) -> str:
        return self.fold.provider

    @property
    def backups(self) -> tuple[str, ...]:
        return self.fold.backups

    @property
    def accept_deadline(self) -> int:
        return self.fold.accept_deadline

    @property
    def device_class(self) -> int:
        return self.fold.device_class

    @property
    def units(self) -> int:
        return self.fold.units

    @property
    def duration(self) -> int:
        return self.fold.duration

    @property
    def max_price(self) -> int:
        return self.fold.max_price

    @property
    def tier(self) -> int:
        return self.fold.tier

    def seen(self, tx_hash: str, name: str) -> bool:
        """Whether event ``name`` of transaction ``tx_hash`` was applied (from the receipt, then the index)."""
        return any(h["tx"] == tx_hash and h["event"] == name for h in self.history)

    def set(self, status: Status, reasons: list[Any] | None = None) -> None:
        if self.status != status:
            log.info("order %d: %s -> %s", self.id, self.status, status)
        self.status = status
        self.reasons = [] if reasons is None else reasons

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "reasons": self.reasons, "history": self.history}


def parse_intent(raw: Any) -> OrderIntent:
    """An ``OrderIntent`` from its JSON form (``OrderIntent.to_dict``); faults name the field."""
    if isinstance(raw, OrderIntent):
        return raw
    if not isinstance(raw, dict):
        raise InputError("intent must be an object", field="intent")
    names = ("buyer", "requirement", "device_class", "units", "duration", "max_price", "tier", "nonce", "deadline")
    kw: dict[str, Any] = {}
    for name in names:
        if name not in raw:
            raise InputError(f"intent.{name} is required", field=f"intent.{name}")
        v = raw[name]
        if name not in ("buyer", "requirement"):
            if isinstance(v, str) and v.isdigit():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(f"intent.{name} must be an integer", field=f"intent.{name}")
        kw[name] = v
    try:
        return OrderIntent(**kw)
    except InputError as exc:
        raise InputError(exc.message, field=f"intent.{exc.fields.get('field')}") from None


def hexbytes(v: Any, name: str) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    try:
        return bytes.fromhex(str(v).removeprefix("0x"))
    except ValueError:
        raise InputError(f"{name} must be hex bytes", field=name) from None


def check_signature(it: OrderIntent, digest: bytes, sig: bytes) -> None:
    """The buyer's EIP-712 signature, checked here: with a fixed gas limit (no estimation) a bad one
    would otherwise cost the orchestrator a reverted transaction."""
    from eth_keys import keys
    from eth_keys.exceptions import BadSignature, ValidationError

    if len(sig) != 65 or sig[64] not in (27, 28):
        raise InputError("signature must be 65 bytes r || s || v with v 27 or 28", field="signature")
    try:
        who = keys.Signature(sig[:64] + bytes([sig[64] - 27])).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError):
        raise InputError("signature does not recover to any key", field="signature") from None
    if who.to_checksum_address() != to_checksum_address(it.buyer):
        raise InputError(f"the intent is signed by {who.to_checksum_address()}, not its buyer {it.buyer}",
                         field="signature")


def check_spec(it: OrderIntent, s: Spec) -> None:
    """The spec is the one the intent signs (its digest), and agrees with the intent's terms."""
    if s.digest() != it.requirement:
        raise SpecMismatch(f"keccak(canonical spec) is 0x{s.digest().hex()}, the intent's requirement is "
                           f"0x{it.requirement.hex()}", field="spec",
                           hint="put spec_digest(spec) in intent.requirement and sign again")
    req = s.requirement
    for name, want, got in (("device_class", int(req.device_class), it.device_class),
                            ("units", req.count, it.units), ("duration", req.duration_s, it.duration)):
        if want != got:
            raise SpecMismatch(f"intent.{name} is {got} but the spec's requirement says {want}",
                               field=f"intent.{name}")
    if req.max_price is not None and req.max_price > it.max_price:
        raise SpecMismatch(f"spec max_price {req.max_price} is above intent.max_price {it.max_price}",
                           field="intent.max_price")


class IdempotencyStore:
    """``Idempotency-Key`` -> (digest of the request, order id), kept in ``state_dir/idempotency.json``."""

    def __init__(self, store: EngineStore) -> None:
        self.store = store
        self.table: dict[str, list[Any]] = store.load_idempotency()

    def prior(self, key: str, request_digest: str) -> int | None:
        """The order a key placed for this same request, None for a new key; a conflict for another request."""
        prior = self.table.get(key)
        if prior is None:
            return None
        if prior[0] != request_digest:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for another order",
                                      reason="idempotency-key-reused", field="Idempotency-Key")
        return int(prior[1])

    def put(self, key: str, request_digest: str, order_id: int) -> None:
        self.table[key] = [request_digest, order_id]
        self.store.put_idempotency(self.table)


class OrderDesk:
    """Orders in: checks, the spec kept, the order placed on chain, and the receipt applied.

    Collaborators: ``market`` and ``orchestrator`` (the write), ``store`` (specs), ``specs`` (the
    engine's parsed specs by digest), ``orders`` (the table), ``matcher`` (to queue an order whose
    spec arrives after it), ``apply_tx`` (the event fold) and the engine's ``lock``/``wake``."""

    def __init__(self, *, market: Market, orchestrator: Signer, store: EngineStore, specs: dict[bytes, Spec],
                 orders: dict[int, OrderRecord], matcher: Matcher, apply_tx: Callable[[Any], None],
                 routing: RoutingTable | None, topology_name: str, modules: tuple[str, ...],
                 lock: threading.RLock, wake: threading.Event, clock: Callable[[], float]) -> None:
        self.market = market
        self.orchestrator = orchestrator
        self.store = store
        self.specs = specs
        self.orders = orders
        self.matcher = matcher
        self.apply_tx = apply_tx
        self.routing = routing
        self.topology_name = topology_name
        self.modules = modules
        self.lock = lock
        self.wake = wake
        self.clock = clock
        self.idempotency = IdempotencyStore(store)

    def spec(self, raw: Any) -> Spec:
        """A buyer's spec, parsed, with an attachment that is a node of the engine's topology."""
        spec = raw if isinstance(raw, Spec) else Spec.from_dict(raw, modules=self.modules)
        if self.routing is not None:
            try:
                self.routing.index(spec.attachment)
            except TopologyError:
                raise InvalidSpec(f"attachment {spec.attachment!r} is not a node of {self.topology_name}",
                                  field="spec.attachment") from None
        return spec

    def keep_spec(self, spec: Spec) -> bytes:
        """Store the spec, and queue the orders that waited for it."""
        d = self.store.put_spec(spec)
        with self.lock:
            self.specs[d] = spec
            now = self.clock()
            for rec in self.orders.values():
                if rec.spec_digest == d and rec.status == Status.AWAITING_SPEC and rec.state == OrderState.OPEN:
                    rec.set(Status.QUEUED)
                    if self.matcher.current:
                        self.matcher.submit(rec, now)
        return d

    def place_order(self, intent: Any, signature: bytes | str, spec: Any, tier_proof: bytes | str | None = None,
                    idempotency_key: str | None = None) -> int:
        """Place a buyer's EIP-712 signed order on chain (``placeSignedOrders``); returns its id."""
        it = parse_intent(intent)
        sig = hexbytes(signature, "signature")
        proof = hexbytes(tier_proof, "tier_proof") if tier_proof else b""
        s = self.spec(spec)
        check_spec(it, s)
        request_digest = keccak(it.struct_hash() + sig + proof + s.digest()).hex()
        if idempotency_key is not None:
            with self.lock:
                prior = self.idempotency.prior(idempotency_key, request_digest)
            if prior is not None:
                return prior
        digest = self.market.digest(it)
        check_signature(it, digest, sig)
        self.keep_spec(s)
        # without a tier proof the gas is bounded and known (see GAS_PLACE); a proof's verification
        # cost depends on its ring, so it is estimated
        req = self.market.contract.request("placeSignedOrders", [it.as_tuple()], [sig], [proof],
                                           gas=None if proof else GAS_PLACE, key=f"order:{digest.hex()}")
        (tx,) = self.market.send_many(self.orchestrator, [req])
        if tx.receipt.error is not None:
            raise tx.receipt.error
        oid = int(tx.event("OrderPlaced").args["order"])
        with self.lock:
            if idempotency_key is not None:
                self.idempotency.put(idempotency_key, request_digest, oid)
            self.apply_tx(tx)
        self.wake.set()
        log.info("order %d placed for %s (spec 0x%s)", oid, it.buyer, s.digest().hex()[:12])
        return oid

    def place_order_tx(self, tx_hash: str, spec: Any) -> int:
        """Attach the spec to an order the buyer placed with its own transaction."""
        s = self.spec(spec)
        raw = self.market.chain.backend.request("eth_getTransactionReceipt", [tx_hash])
        if not raw:
            raise NotFound(f"no mined transaction {tx_hash}", field="tx_hash")
        tx = self.market.decode(Receipt.from_rpc(raw))
        placed = [e for e in tx.events if e.name == "OrderPlaced" and e.address == self.market.address]
        if len(placed) != 1:
            raise InputError(f"transaction {tx_hash} placed no order on this market", field="tx_hash")
        if arg_bytes(placed[0].args["requirement"]) != s.digest():
            raise SpecMismatch("the spec does not hash to the order's requirement", field="spec",
                               hint="spec_digest(spec) must equal the intent's requirement")
        self.keep_spec(s)
        with self.lock:
            self.apply_tx(tx)
        return int(placed[0].args["order"])
