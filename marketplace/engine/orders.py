"""The engine's order table, and orders in: signed intents and specs checked, placed on chain.

``OrderRecord`` is the engine's row for one on-chain order: the order as its events describe
it (``fold``, a ``lifecycle.OrderFold``), the digest of its spec, and the engine's own view:
a ``Status`` with its reasons and the history of the events it applied (each with the state
after it). ``OrderDesk`` takes a buyer's order in: ``place_order`` checks the spec against the
signed intent and the intent's signature, and hands it to the ``placing.Placer``, which groups
concurrent orders into one ``placeSignedOrders`` transaction after screening and simulating
them; ``place_order_tx`` attaches a spec to an order the buyer placed itself.
``IdempotencyStore`` maps a buyer's ``Idempotency-Key`` to the order it placed.

Invariants:
- an order's state, provider, backups and deadline are the lifecycle fold's, never set here;
- a spec is staged (``state_dir/specs/staged.jsonl``, one append per group) before the
  transaction that places its order, and kept (``state_dir/specs``) once the order is on chain;
  the staged copies are dropped once no group is in flight, and a start keeps a staged spec only
  if its intent is on chain. So an order is never on chain with
  its spec lost by this engine, and an order that never landed leaves no file;
- an ``Idempotency-Key`` is scoped to the buyer who signed the intent: the same key with the
  same request returns the same order id, with another request it is a conflict (409), another
  buyer's same key is another key; a key is recorded only once its order is on chain. An intent
  placed before (a retry after a lost answer, with or without a key) answers with its order;
- every bad input raises an ``InputError`` naming the field (``intent.units``, ``signature``,
  ``spec.attachment``, ...).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable, Sequence

from eth_utils import keccak, to_checksum_address

from marketplace.chain.indexer import arg_bytes
from marketplace.chain.intents import OrderIntent
from marketplace.chain.lifecycle import OrderFold, OrderState
from marketplace.chain.market import Market
from marketplace.chain.writer import Receipt, Signer
from marketplace.engine.errors import IdempotencyConflict, InvalidSpec, SpecMismatch
from marketplace.engine.placing import Placement, Placer
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore
from marketplace.errors import InputError, NotFound, TopologyError
from marketplace.routing import RoutingTable

if TYPE_CHECKING:
    from marketplace.engine.matcher import Matcher

log = logging.getLogger(__name__)

class Status(StrEnum):
    """The engine's view of an order (``OrderRecord.status``); the values are the API's strings."""

    AWAITING_SPEC = "awaiting-spec"  # on chain, its spec not submitted yet
    QUEUED = "queued"  # in the matcher's queue
    PENDING = "pending"  # matched in a round without a lease yet (no fit now, denied, pre-empted)
    REFUSED = "refused"  # no provider can ever satisfy it: Open on chain until the buyer cancels
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


#: half the secp256k1 group order: OpenZeppelin's ECDSA refuses a signature with a larger ``s`` (malleable)
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def check_signature(it: OrderIntent, digest: bytes, sig: bytes) -> None:
    """The buyer's EIP-712 signature, checked here as the contract's ``ECDSA.recover`` checks it (65 bytes,
    v 27 or 28, a low ``s``, recovering to the buyer): a bad one is refused before anything is sent."""
    from coincurve import PublicKey

    if len(sig) != 65 or sig[64] not in (27, 28):
        raise InputError("signature must be 65 bytes r || s || v with v 27 or 28", field="signature")
    if int.from_bytes(sig[32:64], "big") > HALF_N:
        raise InputError("signature has a high s (malleable): the contract refuses it; sign with a low s",
                         field="signature")
    try:
        pub = PublicKey.from_signature_and_message(sig[:64] + bytes([sig[64] - 27]), digest, hasher=None)
    except ValueError:
        raise InputError("signature does not recover to any key", field="signature") from None
    who = to_checksum_address(keccak(pub.format(compressed=False)[1:])[-20:])
    if who != to_checksum_address(it.buyer):
        raise InputError(f"the intent is signed by {who}, not its buyer {it.buyer}", field="signature")


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
    """(buyer, ``Idempotency-Key``) -> (digest of the request, order id), kept in ``state_dir/idempotency.jsonl``.

    A key is the buyer's own: the buyer is the intent's signer (checked before a key is looked up),
    so one buyer cannot squat, or learn about, another's keys."""

    def __init__(self, store: EngineStore) -> None:
        self.store = store
        self.table: dict[tuple[str, str], tuple[str, int]] = {
            (e["buyer"], e["key"]): (e["request"], int(e["order"])) for e in store.load_idempotency()}

    def prior(self, buyer: str, key: str, request_digest: str) -> int | None:
        """The order ``buyer``'s key placed for this same request, None for a new key; a conflict for
        another request."""
        prior = self.table.get((buyer, key))
        if prior is None:
            return None
        if prior[0] != request_digest:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for another order of {buyer}",
                                      reason="idempotency-key-reused", field="Idempotency-Key")
        return prior[1]

    def put(self, buyer: str, key: str, request_digest: str, order_id: int) -> None:
        if (buyer, key) in self.table:
            return
        self.table[(buyer, key)] = (request_digest, order_id)
        self.store.add_idempotency({"buyer": buyer, "key": key, "request": request_digest, "order": order_id})


class OrderDesk:
    """Orders in: checks, the placement (grouped with others: ``placing.Placer``), the spec kept once
    the order is on chain, and the receipt applied.

    Collaborators: ``market`` and ``orchestrator`` (the write), ``store`` (specs), ``specs`` (the
    engine's parsed specs by digest), ``orders`` (the table), ``matcher`` (to queue an order whose
    spec arrives after it), ``apply_tx`` (the event fold), ``find_placed`` (an order on chain by its
    intent's digest) and the engine's ``lock``/``wake``."""

    def __init__(self, *, market: Market, orchestrator: Signer, store: EngineStore, specs: dict[bytes, Spec],
                 orders: dict[int, OrderRecord], matcher: Matcher, apply_tx: Callable[[Any], None],
                 find_placed: Callable[[bytes], int | None], routing: RoutingTable | None, topology_name: str,
                 modules: tuple[str, ...], lock: threading.RLock, wake: threading.Event,
                 clock: Callable[[], float],
                 check_artifacts: Callable[..., None] = lambda spec, *, serviceable: None) -> None:
        self.market = market
        self.orchestrator = orchestrator
        self.store = store
        self.specs = specs
        self.orders = orders
        self.matcher = matcher
        self.apply_tx = apply_tx
        self.find_placed = find_placed
        self.routing = routing
        self.topology_name = topology_name
        self.modules = modules
        self.lock = lock
        self.wake = wake
        self.clock = clock
        #: the artifacts a spec names are stored and usable (``ArtifactDesk.check_spec``); ``serviceable``:
        #: also some provider runs its workload (only before escrow moves: the engine places the order)
        self.check_artifacts = check_artifacts
        self.idempotency = IdempotencyStore(store)
        self.placer = Placer(market=market, orchestrator=orchestrator, keeper=self, find_placed=find_placed)
        #: (buyer, key) -> request digest of the keyed requests being placed now; both tables under ``_keys_lock``
        self._keys_in_flight: dict[tuple[str, str], str] = {}
        self._keys_lock = threading.Lock()
        #: orders placed by the placer, for the engine loop to queue (``drain_landed``)
        self._landed: deque[int] = deque()

    def spec(self, raw: Any, *, serviceable: bool = True) -> Spec:
        """A buyer's spec, parsed, with an attachment that is a node of the engine's topology and
        artifacts the market holds."""
        spec = raw if isinstance(raw, Spec) else Spec.from_dict(raw, modules=self.modules)
        self.check_artifacts(spec, serviceable=serviceable)
        if self.routing is not None:
            try:
                self.routing.index(spec.attachment)
            except TopologyError:
                raise InvalidSpec(f"attachment {spec.attachment!r} is not a node of {self.topology_name}",
                                  field="spec.attachment") from None
        return spec

    def keep_spec(self, spec: Spec) -> bytes:
        """Store the spec of an order on chain, and queue the orders that waited for it."""
        d = self.store.put_spec(spec)
        with self.lock:
            self.specs[d] = spec
            now = self.clock()
            for rec in self.orders.values():
                if rec.spec_digest == d:
                    self._queue_if_waiting(rec, now)
        return d

    def _queue_if_waiting(self, rec: OrderRecord, now: float) -> None:
        if rec.status == Status.AWAITING_SPEC and rec.state == OrderState.OPEN:
            rec.set(Status.QUEUED)
            if self.matcher.current:
                self.matcher.submit(rec, now)

    def place_order(self, intent: Any, signature: bytes | str, spec: Any, tier_proof: bytes | str | None = None,
                    idempotency_key: str | None = None) -> int:
        """Place a buyer's EIP-712 signed order on chain (``placeSignedOrders``, grouped); returns its id.

        Checked before anything is kept or sent: the spec and its agreement with the intent, the
        signature (so the buyer is known before its key is looked up), the contract's rules and the
        buyer's state (``placing``). A refused order costs the orchestrator nothing and leaves no file."""
        it = parse_intent(intent)
        sig = hexbytes(signature, "signature")
        proof = hexbytes(tier_proof, "tier_proof") if tier_proof else b""
        s = self.spec(spec)
        check_spec(it, s)
        digest = self.market.digest(it)
        check_signature(it, digest, sig)
        request_digest = keccak(it.struct_hash() + sig + proof + s.digest()).hex()
        keyed = (it.buyer, idempotency_key) if idempotency_key is not None else None
        if keyed is not None:
            with self._keys_lock:
                prior = self.idempotency.prior(*keyed, request_digest)
                if prior is not None:
                    return prior
                busy = self._keys_in_flight.setdefault(keyed, request_digest)
            if busy != request_digest:
                raise IdempotencyConflict(f"Idempotency-Key {idempotency_key!r} is in use for another order of "
                                          f"{it.buyer}", reason="idempotency-key-reused", field="Idempotency-Key")
        try:
            oid = self._place(Placement(it, digest, sig, proof, s))
            if keyed is not None:
                with self._keys_lock:
                    self.idempotency.put(*keyed, request_digest, oid)
        finally:
            if keyed is not None:
                with self._keys_lock:
                    self._keys_in_flight.pop(keyed, None)
        log.info("order %d placed for %s (spec 0x%s)", oid, it.buyer, s.digest().hex()[:12])
        return oid

    def _place(self, p: Placement) -> int:
        return self.placer.place(p)

    # -- the placer's keeper (``placing.Keeper``): on the placer's thread

    def stage(self, placements: Sequence[Placement]) -> None:
        self.store.stage_specs([(p.digest, p.spec) for p in placements])

    def landed(self, placed: list[tuple[Placement, int]]) -> None:
        """Orders are on chain (placed now, or found placed before): their specs join the engine's and
        the orders go to the engine loop, which applies their events from its index and queues them
        (``drain_landed``). Without the engine's lock: a placement never waits for a matching round."""
        for p, oid in placed:
            self.specs[p.spec.digest()] = p.spec  # read with get() only: a plain store is safe here
            self._landed.append(oid)
        self.wake.set()

    def kept(self, placed: list[tuple[Placement, int]], idle: bool) -> None:
        """After the answers: each spec in its file; the staged copies dropped once no group is in flight
        (a refused order's spec was only ever staged)."""
        for p, _ in placed:
            self.store.put_spec(p.spec)
        if idle:
            self.store.clear_staged()

    def drain_landed(self, now: float) -> None:
        """Queue the orders placed since the last turn whose spec the index found missing (they were
        indexed before their spec was kept). Call with the engine's lock held, after a sync."""
        while self._landed:
            rec = self.orders.get(self._landed.popleft())
            if rec is not None:
                self._queue_if_waiting(rec, now)

    def recover_staged(self) -> None:
        """At a start: a staged spec whose intent is on chain is kept (the engine stopped between the
        block and the spec's file); every other staged spec is dropped (its order never landed)."""
        kept = dropped = 0
        for intent_digest, spec in self.store.staged_specs():
            if spec is not None and self.find_placed(intent_digest) is not None:
                self.keep_spec(spec)
                kept += 1
            else:
                dropped += 1
        self.store.clear_staged()
        if kept or dropped:
            log.info("staged specs: %d kept (their orders are on chain), %d dropped", kept, dropped)

    def place_order_tx(self, tx_hash: str, spec: Any) -> int:
        """Attach the spec to an order the buyer placed with its own transaction."""
        s = self.spec(spec, serviceable=False)  # on chain already: an order no provider serves just waits
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
