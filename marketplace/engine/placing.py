"""Placements: buyers' signed orders grouped into ``placeSignedOrders`` transactions, and no
transaction sent that would revert.

The ``OrderDesk`` checks an order (spec, intent, signature) and hands it to ``Placer.place``,
which blocks until the order is on chain or refused. The placer's thread takes every order
waiting (at most ``MAX_GROUP``) as one group:

1. the contract's rules on an intent's own terms are checked here (``terms_refusal``: units,
   duration, device class, an escrow of zero), with no read;
2. the group is **simulated** as the very transaction it would be (``eth_call`` from the
   orchestrator on the pending block; ``eth_estimateGas`` when an order carries a tier proof,
   whose gas depends on the proof) and sent only if that succeeds. On a chain that can refuse a
   failing transaction instead of mining it (``backend.refuses_failed_sends``: the embedded
   chain, ``cona_sendRawTransactionIfSucceeds``) the simulation and the send are one EVM run,
   since py-evm's execution is most of a placement's cost there (measured: about 5 ms per order
   to simulate, 8.5 ms to send, in groups of 20);
3. when the group would revert, the orders at fault are found and answered with the contract's
   error: first **screened** against the market's state (one JSON-RPC batch: the latest block's
   time, ``paused``, ``nonces`` and ``balances`` of each buyer; orders taken by (buyer, nonce), so a
   buyer's consecutive orders pass in turn and their escrows add up), then, if the rest still
   reverts, by bisection over prefixes (a prefix of no order that reverts is a fault of the
   market, not of an order: the whole group is answered with it); the rest is tried again;
4. once the transaction is mined, the ``Keeper`` (the desk) hands the orders and their specs to
   the engine (``landed``) before each order is answered with its id, taken from its own
   ``OrderPlaced`` (by intent digest), and keeps the specs on disk after (``kept``). Before the
   group is tried, its specs are staged (``stage``: one append for the whole group), so an order
   on chain never loses its spec to a crash in between.

An intent whose nonce is already used may be one that landed before (a client retrying after a
lost answer, or after the engine restarted): ``find_placed`` looks its digest up among the
market's ``OrderPlaced`` events, and that order is the answer. A group that reverts anyway when
mined (the state changed between the simulation and the block: a buyer withdrew its deposit) is
screened and tried again.

Invariants: no transaction is sent that a simulation (or the node) found would revert, so an
order the contract refuses costs the orchestrator nothing, and one bad order never fails the
others of its group; every order handed in is answered exactly once (an id or an error); at
most ``MAX_WAITING`` orders wait (more: ``PlacementBusy``, 503), so memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence

from marketplace.chain.backends import RpcError
from marketplace.chain.indexer import arg_bytes
from marketplace.chain.intents import OrderIntent
from marketplace.chain.market import Market, Tx
from marketplace.chain.writer import Signer
from marketplace.engine.errors import PlacementBusy, PlacementRefused
from marketplace.engine.spec import Spec
from marketplace.errors import ChainError, ChainUnavailable, ConaError, TransactionReverted

log = logging.getLogger(__name__)

#: orders in one transaction: ~185k gas each once warm (measured, 20 per transaction: 3.66M), so
#: 64 stay well inside a 30M block with PER_ORDER_GAS each
MAX_GROUP = 64
#: orders waiting for a group at most; beyond, a new one is refused with 503 (retry later)
MAX_WAITING = 2_000
#: attempts at sending one group: each after the orders at fault were found and answered
ATTEMPTS = 3
#: how long a request waits for its order to land before it gives up (the order may still land)
WAIT_S = 120.0
#: the gas of a group without tier proofs: bounded and known, so no ``eth_estimateGas`` (a second EVM
#: run) sits on the path. 268k were measured for one order from a new buyer; unused gas is not charged
BASE_GAS = 100_000
PER_ORDER_GAS = 300_000
#: the contract's bounds on an intent's terms (ComputeMarket.MAX_DURATION, ProviderRegistry.DEVICE_CLASSES)
MAX_DURATION = 366 * 24 * 3600
DEVICE_CLASSES = 4

#: the contract's error -> (HTTP status, the field at fault, what to do)
REFUSALS: dict[str, tuple[int, str, str]] = {
    "BadSignature": (422, "signature", "sign the intent with the buyer's key (EIP-712, this market's domain)"),
    "IntentExpired": (422, "intent.deadline", "sign the intent again with a later deadline"),
    "BadNonce": (409, "intent.nonce", "sign the intent again with the buyer's current nonce (ComputeMarket.nonces)"),
    "InsufficientDeposit": (402, "intent.buyer", "deposit the escrow into the market first (ComputeMarket.deposit)"),
    "InvalidOrder": (422, "intent", "units, duration, device class and max price must be positive and in range"),
    "EnforcedPause": (503, "intent", "the market is paused; try again once it is unpaused"),
    "TiersDisabled": (422, "intent.tier", "this market has no tier gate: place the order with tier 0"),
}
#: the tier gate's errors (``TierGate.sol``): the order's tier proof is at fault
TIER_ERRORS = frozenset((
    "BadProofLength", "UnknownScheme", "RingSizeOutOfRange", "CoordinateNotInField", "PointAtInfinity",
    "PointNotOnCurve", "ScalarNotInGroup", "InvalidRingSignature", "PrecompileFailed", "HashToCurveFailed",
    "WrongEpoch", "EpochPassed", "NoTier", "NoSlots", "NoGroup", "SlotOutOfRange", "RingNotCommitted",
    "NullifierAlreadySpent", "SchemeMismatch"))
#: InvalidOrder's OrderField enum, as the contract numbers it -> the intent's field
ORDER_FIELDS = ("units", "duration", "device_class", "max_price")


@dataclass(frozen=True)
class Placement:
    """One checked order: the intent, its EIP-712 digest and signature, a tier proof, and its spec."""

    intent: OrderIntent
    digest: bytes
    signature: bytes
    proof: bytes
    spec: Spec


@dataclass
class Ticket:
    """A placement waiting for its answer: an order id, or an error."""

    placement: Placement
    done: threading.Event = field(default_factory=threading.Event)
    order_id: int | None = None
    error: ConaError | None = None

    def answer(self, order_id: int | None = None, error: ConaError | None = None) -> None:
        if not self.done.is_set():
            self.order_id, self.error = order_id, error
            self.done.set()


def refused(name: str, args: dict[str, Any], it: OrderIntent, detail: str | None = None) -> PlacementRefused:
    """The refusal the contract's error ``name`` (qualified or not) means for intent ``it``."""
    short = name.rsplit(".", 1)[-1]
    status, fld, hint = REFUSALS.get(short, (422, "intent", "the market contract refuses this order"))
    if short == "InvalidOrder":
        which = int(args.get("field", -1))
        if 0 <= which < len(ORDER_FIELDS):
            fld = f"intent.{ORDER_FIELDS[which]}"
    elif short in TIER_ERRORS:
        fld, hint = "tier_proof", "a fresh tier proof for this order, chain, market and epoch"
    shown = ", ".join(f"{k}={v}" for k, v in args.items())
    message = detail or f"the market would refuse order nonce {it.nonce} of {it.buyer}: {short}({shown})"
    return PlacementRefused(message, error=short, status=status, args=args, field=fld, hint=hint, reason=short)


def terms_refusal(it: OrderIntent, now: int) -> PlacementRefused | None:
    """The contract's checks of an intent's own terms (``ComputeMarket._place``, in its order), or None.
    ``now``: a time the next block carries at least (the latest block's), so only a deadline certainly
    passed is refused here; the simulation, on the pending block, finds the others."""
    if now > it.deadline:
        return refused("IntentExpired", {"deadline": it.deadline}, it,
                       f"intent deadline {it.deadline} has passed (chain time {now})")
    for which, bad in enumerate((it.units == 0, it.duration == 0 or it.duration > MAX_DURATION,
                                 it.device_class == 0 or it.device_class > DEVICE_CLASSES, it.escrow() == 0)):
        if bad:
            return refused("InvalidOrder", {"field": which}, it,
                           f"intent.{ORDER_FIELDS[which]} is out of the contract's range (the escrow would be "
                           f"{it.escrow()} wei)" if which == 3 else None)
    return None


class Keeper(Protocol):
    """Where the placer's orders and their specs go (the ``OrderDesk``). Called on the placer's thread."""

    def stage(self, placements: Sequence[Placement]) -> None:
        """Before a group is tried: keep its specs aside (one write), so none is lost once on chain."""

    def landed(self, placed: list[tuple[Placement, int]]) -> None:
        """Orders are on chain (placed now, or found placed before), before they are answered."""

    def kept(self, placed: list[tuple[Placement, int]], idle: bool) -> None:
        """After a group's orders are answered: keep their specs for good; ``idle``: no group is in
        flight any more, so what was staged can be dropped."""


class Placer:
    """Groups placements into transactions (see the module docstring). Thread-safe; one thread of its own.

    ``keeper`` receives the orders that land (``Keeper``); ``find_placed(digest)`` returns the id of
    an order already on chain for an intent digest, or None."""

    def __init__(self, *, market: Market, orchestrator: Signer, keeper: Keeper,
                 find_placed: Callable[[bytes], int | None], max_group: int = MAX_GROUP,
                 max_waiting: int = MAX_WAITING) -> None:
        self.market = market
        self.orchestrator = orchestrator
        self.keeper = keeper
        self.find_placed = find_placed
        self.max_group = max_group
        self.max_waiting = max_waiting
        self._cv = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._by_digest: dict[bytes, Ticket] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        #: groups between ``stage`` and ``kept`` (the thread's, and ``place_now`` callers')
        self._in_flight = 0
        #: transactions sent and groups whose simulation refused an order (for tests and logs)
        self.sent = 0
        self.refused = 0

    # -- the callers' side

    def place(self, p: Placement, timeout: float = WAIT_S) -> int:
        """Place ``p`` with the next group; its order id, or the error that refused it."""
        with self._cv:
            if self._closed:
                raise ChainUnavailable("the engine is shutting down", hint="retry once it is back")
            ticket = self._by_digest.get(p.digest)
            if ticket is None:  # the same intent twice at once is one order: the second waits for the first
                if len(self._waiting) >= self.max_waiting:
                    raise PlacementBusy(f"{len(self._waiting)} orders are waiting to be placed",
                                        hint="retry in a moment with the same Idempotency-Key")
                ticket = self._by_digest[p.digest] = Ticket(p)
                self._waiting.append(ticket)
                self._start()
                self._cv.notify()
        if not ticket.done.wait(timeout):
            raise ChainUnavailable(f"order nonce {p.intent.nonce} of {p.intent.buyer} was not placed within "
                                   f"{timeout:.0f} s", hint="retry with the same Idempotency-Key: it is placed once")
        if ticket.error is not None:
            raise ticket.error.with_traceback(None)
        assert ticket.order_id is not None
        return ticket.order_id

    def close(self) -> None:
        """Stop the thread after its group; answer every order still waiting with 503."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        with self._cv:
            for t in self._waiting:
                t.answer(error=ChainUnavailable("the engine stopped before placing this order", hint="retry"))
            self._waiting.clear()
            self._by_digest.clear()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cona-placer", daemon=True)
            self._thread.start()

    # -- the placer's thread

    def place_now(self, placements: Sequence[Placement]) -> list[int | ConaError]:
        """Place ``placements`` as one group on the caller's thread (the placer thread's steps): each
        one's order id, or the error that refused it. For callers that have a batch already."""
        tickets = [Ticket(p) for p in placements]
        self._place_safely(tickets)
        return [t.error if t.error is not None else t.order_id for t in tickets]  # type: ignore[misc]

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                group = [self._waiting.popleft() for _ in range(min(self.max_group, len(self._waiting)))]
            try:
                self._place_safely(group)
            finally:
                with self._cv:
                    for t in group:
                        if self._by_digest.get(t.placement.digest) is t:
                            del self._by_digest[t.placement.digest]

    def _place_safely(self, group: list[Ticket]) -> None:
        """``_place_group``, with every order answered whatever happens (the thread outlives a bad group),
        between the keeper's ``stage`` and ``kept``."""
        placed: list[tuple[Placement, int]] = []
        with self._cv:
            self._in_flight += 1
        try:
            self.keeper.stage([t.placement for t in group])
            self._place_group(group, placed)
        except ConaError as exc:
            log.warning("a group of %d orders failed: %s", len(group), exc)
            for t in group:
                t.answer(error=exc)
        except Exception as exc:  # a bug or an unexpected answer: its orders get an error, not a hang
            log.exception("placing a group of %d orders failed", len(group))
            for t in group:
                t.answer(error=ChainError(f"placing the order failed: {type(exc).__name__}: {exc}"))
        for t in group:  # an order the steps above left unanswered would wait forever
            t.answer(error=ChainError("the order was neither placed nor refused (a bug: please report it)"))
        with self._cv:
            self._in_flight -= 1
            idle = self._in_flight == 0
        try:
            self.keeper.kept(placed, idle)
        except Exception:  # the orders are on chain and answered; their specs are still staged
            log.exception("keeping the specs of %d placed orders failed (they stay staged)", len(placed))

    def _place_group(self, group: list[Ticket], placed: list[tuple[Placement, int]]) -> None:
        """Place ``group`` in one transaction. The common case is one attempt: the group simulates
        (or, on a chain that refuses failing sends, is sent) and lands. When it would revert, the
        orders at fault are found (``_screened``, then ``_simulated``) and answered, and the rest tried
        again; a few attempts at most (each needs the state to change under it again)."""
        group = self._within_terms(group)
        simulated = False
        outcome: Tx | TransactionReverted | None = None
        for _ in range(ATTEMPTS):
            if not group:
                return
            outcome = self._attempt(group, simulated)
            if isinstance(outcome, Tx):
                self._answer_landed(outcome, group, placed)
                return
            log.info("a group of %d orders would revert (%s): finding the orders at fault", len(group),
                     outcome.error)
            group = self._simulated(self._screened(group, placed))
            simulated = True
        assert isinstance(outcome, TransactionReverted)
        for t in group:
            t.answer(error=refused(outcome.error or "unknown", outcome.error_args, t.placement.intent,
                                   f"the market refused the order: {outcome.message}"))

    def _within_terms(self, group: list[Ticket]) -> list[Ticket]:
        """The orders whose own terms the contract accepts (no read needed); the others answered."""
        kept = []
        for t in group:
            why = terms_refusal(t.placement.intent, 0)
            if why is None:
                kept.append(t)
            else:
                self.refused += 1
                t.answer(error=why)
        return kept

    def _attempt(self, group: list[Ticket], simulated: bool) -> Tx | TransactionReverted:
        """Send ``group`` as one transaction if it succeeds: the mined ``Tx``, or the revert it would
        (or, in a race, did) meet. A chain that refuses failing sends checks and sends in one step;
        elsewhere the group is simulated first (unless it just was)."""
        atomic = self.market.chain.backend.refuses_failed_sends
        if not atomic and not simulated:
            err = self._simulate(group)
            if err is not None:
                return err
        try:
            tx = self._send(group, if_succeeds=atomic)
        except TransactionReverted as exc:  # refused by the node: nothing was mined or spent
            return exc
        if tx.receipt.error is not None:  # the state changed between the simulation and the block
            log.warning("a group of %d orders reverted when mined in tx %s: %s", len(group), tx.tx_hash,
                        tx.receipt.error.error)
            return tx.receipt.error
        return tx

    def _screened(self, group: list[Ticket], placed: list[tuple[Placement, int]]) -> list[Ticket]:
        """The orders the contract's rules and the market's state let through, in (buyer, nonce) order;
        the others are answered (an intent already placed: with its order)."""
        if not group:
            return group
        buyers = sorted({t.placement.intent.buyer for t in group})
        views = self._views(buyers)
        now = views["time"]
        if views["paused"]:
            for t in group:
                t.answer(error=refused("EnforcedPause", {}, t.placement.intent, "the market is paused"))
            return []
        nonce = {b: views["nonces"][b] for b in buyers}
        free = {b: views["balances"][b] for b in buyers}
        kept: list[Ticket] = []
        for t in sorted(group, key=lambda t: (t.placement.intent.buyer, t.placement.intent.nonce)):
            it = t.placement.intent
            why = terms_refusal(it, now)
            if why is None and it.nonce != nonce[it.buyer]:
                if it.nonce < nonce[it.buyer]:
                    prior = self.find_placed(t.placement.digest)
                    if prior is not None:  # placed before: the answer is that order
                        self.keeper.landed([(t.placement, prior)])
                        placed.append((t.placement, prior))
                        t.answer(prior)
                        continue
                why = refused("BadNonce", {"buyer": it.buyer, "expected": nonce[it.buyer], "got": it.nonce}, it)
            if why is None and free[it.buyer] < it.escrow():
                why = refused("InsufficientDeposit", {"buyer": it.buyer, "needed": it.escrow(),
                                                      "available": free[it.buyer]}, it)
            if why is not None:
                self.refused += 1
                log.info("order nonce %d of %s refused before sending: %s", it.nonce, it.buyer, why.error)
                t.answer(error=why)
                continue
            nonce[it.buyer] += 1
            free[it.buyer] -= it.escrow()
            kept.append(t)
        return kept

    def _views(self, buyers: Sequence[str]) -> dict[str, Any]:
        """In one round trip: the latest block's time (the next block's is no earlier), ``paused()``, and
        ``nonces``/``balances`` of each buyer on the pending block."""
        c = self.market.contract
        calls: list[tuple[str, tuple[Any, ...]]] = [("paused", ())]
        calls += [("nonces", (b,)) for b in buyers] + [("balances", (b,)) for b in buyers]
        answers = self.market.chain.backend.batch([("eth_getBlockByNumber", ["latest", False])] + [
            ("eth_call", [{"to": c.address, "data": "0x" + c.abi.encode_call(fn, args).hex()}, "pending"])
            for fn, args in calls])
        if not isinstance(answers[0], dict):
            raise ChainUnavailable(f"could not read the latest block before placing orders: {answers[0]}")
        out: list[Any] = []
        for (fn, args), ans in zip(calls, answers[1:]):
            if isinstance(ans, Exception):
                raise ChainUnavailable(f"could not read ComputeMarket.{fn} before placing orders: {ans}")
            out.append(c.abi.decode_result(fn, len(args), bytes.fromhex(str(ans).removeprefix("0x"))))
        n = len(buyers)
        return {"time": int(answers[0]["timestamp"], 16), "paused": bool(out[0]),
                "nonces": dict(zip(buyers, out[1:1 + n])), "balances": dict(zip(buyers, out[1 + n:]))}

    def _simulated(self, group: list[Ticket]) -> list[Ticket]:
        """The orders of ``group`` whose transaction simulates without a revert; the others answered."""
        while group:
            err = self._simulate(group)
            if err is None:
                return group
            if self._simulate([]) is not None:  # no order at all reverts too: the market's fault, not an order's
                for t in group:
                    t.answer(error=refused(err.error or "unknown", err.error_args, t.placement.intent,
                                           f"the market refuses every order now: {err.message}"))
                return []
            bad, err = self._first_reverting(group, err)
            self.refused += 1
            log.info("order nonce %d of %s refused by the simulation: %s", group[bad].placement.intent.nonce,
                     group[bad].placement.intent.buyer, err.error)
            group[bad].answer(error=refused(err.error or "unknown", err.error_args, group[bad].placement.intent))
            group = group[:bad] + group[bad + 1:]
        return group

    def _first_reverting(self, group: list[Ticket], err: TransactionReverted) -> tuple[int, TransactionReverted]:
        """The index of the first order whose prefix reverts (the whole group does), and that revert."""
        lo, hi = 0, len(group) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            e = self._simulate(group[:mid + 1])
            if e is None:
                lo = mid + 1
            else:
                hi, err = mid, e
        return lo, err

    def _request(self, group: Sequence[Ticket]) -> Any:
        ps = [t.placement for t in group]
        proofs = any(p.proof for p in ps)
        gas = None if proofs else BASE_GAS + PER_ORDER_GAS * len(ps)
        return self.market.contract.request("placeSignedOrders", [p.intent.as_tuple() for p in ps],
                                            [p.signature for p in ps], [p.proof for p in ps], gas=gas)

    def _simulate(self, group: Sequence[Ticket]) -> TransactionReverted | None:
        """None if the group's transaction would succeed now, else its decoded revert."""
        req = self._request(group)
        writer = self.market.chain.writer
        try:
            if req.gas is None:
                writer.estimate_gas(self.orchestrator.address, req)
            else:
                writer.call(req.to, req.data, sender=self.orchestrator.address, block="pending",
                            label="ComputeMarket.placeSignedOrders")
        except TransactionReverted as exc:
            return exc
        except RpcError as exc:
            raise ChainUnavailable(f"could not simulate placing {len(group)} orders: {exc}") from None
        return None

    def _send(self, group: list[Ticket], *, if_succeeds: bool) -> Tx:
        req = self._request(group)
        if req.gas is None:  # a tier proof's cost depends on its ring: estimated (a revert raises here)
            req = replace(req, gas=self.market.chain.writer.estimate_gas(self.orchestrator.address, req))
        (tx,) = self.market.send_many(self.orchestrator, [req], if_succeeds=if_succeeds)
        self.sent += 1
        return tx

    def _answer_landed(self, tx: Tx, group: list[Ticket], placed: list[tuple[Placement, int]]) -> None:
        ids = {arg_bytes(ev.args["digest"]): int(ev.args["order"]) for ev in tx.events
               if ev.name == "OrderPlaced" and ev.address == self.market.address}
        now = [(t.placement, ids[t.placement.digest]) for t in group if t.placement.digest in ids]
        placed.extend(now)
        try:
            self.keeper.landed(now)
        finally:
            for t in group:
                oid = ids.get(t.placement.digest)
                if oid is None:  # cannot happen: every intent of a mined group emits its OrderPlaced
                    t.answer(error=ChainError(f"transaction {tx.tx_hash} placed no order for intent "
                                              f"0x{t.placement.digest.hex()}"))
                else:
                    t.answer(oid)
        log.info("%d orders placed in tx %s (block %d)", len(now), tx.tx_hash, tx.receipt.block_number)
