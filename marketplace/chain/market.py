"""The typed client of ``ComputeMarket``: deposits, orders and every lease transition.

Everything the engine, the agents, the API and the tests do on the market goes through
``Market`` (and its ``registry``, a ``marketplace.chain.registry.Registry``). It speaks in
frozen values (``Order``, ``BatchRecord``, ``OrderIntent``, ``Tx``), never raw tuples, and
writes only through the transaction writer, so nonces, batching, idempotency keys and revert
decoding are the same everywhere.

A matching round is bound by one transaction, ``assign_batch``: the batch record (its id and
the hashes of its inputs and decisions) and every assignment it decided that still holds when it
lands; each ``Assigned`` event names its ``batchId``, and each assignment that no longer held is
reported by ``AssignmentSkipped`` with its reason (``SKIP_REASONS``) instead of reverting the round.
A manual ``assign`` is a batch of one that raises ``Unassignable`` when it was skipped.

An order's terms (fee, windows, slash rates, arbiter) are the ``MarketTerms`` version in force when
it was placed (``Order.terms``). Terms and orchestrators change only through the deployment's
timelock (``marketplace.chain.timelock``): ``set_terms`` and ``set_orchestrator`` schedule the change
and, where the delay is 0 (a local development chain), apply it at once.

The values the market's methods take and return are defined next door and re-exported here,
so ``from marketplace.chain.market import ...`` keeps working: the wire enums ``OrderState``
and ``ProviderStatus`` (``marketplace.chain.lifecycle``), the EIP-712 intent and ``cost``
(``marketplace.chain.intents``), ``Registry``/``ProviderInfo``/``DEVICE_CLASSES``
(``marketplace.chain.registry``) and ``Tx``/``EscrowCheck`` (``marketplace.chain.client``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterable, Sequence

from eth_utils import to_checksum_address

from eth_utils import keccak

from marketplace.chain.client import ContractClient, EscrowCheck, Tx, b32
from marketplace.chain.contracts import BoundContract, Chain
from marketplace.chain.deploy import ZERO, Deployment
from marketplace.chain.intents import Eip712Domain, OrderIntent, cost, intent_digest, sign_intent
from marketplace.chain.lifecycle import OrderState, ProviderStatus
from marketplace.chain.registry import DEVICE_CLASSES, ProviderInfo, Registry
from marketplace.chain.timelock import Change, Timelock
from marketplace.chain.writer import Receipt, Signer, TxRequest, as_signer
from marketplace.errors import ChainError, InputError

__all__ = [
    "DEVICE_CLASSES", "MAX_BACKUPS", "SKIP_REASONS", "Assignment", "BatchRecord", "EscrowCheck", "Market",
    "MarketTerms", "Order", "OrderIntent", "OrderState", "ProviderInfo", "ProviderStatus", "Registry", "SlashReason",
    "Tx", "Unassignable", "cost", "skip_reason", "wait_until",
]


class SlashReason(IntEnum):
    MISSED_ACCEPTANCE = 0
    FAILURE_MID_LEASE = 1
    LOST_DISPUTE = 2


MAX_BACKUPS = 8
#: ``IComputeMarket.Reason``: why an assignment of a batch was skipped, by the enum's value
SKIP_REASONS = ("none", "order-not-open", "zero-provider", "too-many-backups", "zero-backup", "provider-ineligible",
                "price-above-ceiling", "price-below-ask")


class Unassignable(ChainError):
    """A manual assignment the contract skipped (it does not revert: a batch reports skips)."""

    code = "unassignable"
    http_status = 409


@dataclass(frozen=True)
class MarketTerms:
    """``IComputeMarket.Settings``: the terms orders placed under one version run by."""

    fee_bps: int
    miss_slash_bps: int
    fail_slash_bps: int
    dispute_slash_bps: int
    accept_window: int
    dispute_window: int
    arbitration_window: int
    run_grace: int
    arbiter: str

    @classmethod
    def from_chain(cls, raw: Sequence[Any]) -> "MarketTerms":
        *numbers, arbiter = raw
        return cls(*numbers, to_checksum_address(arbiter))

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.fee_bps, self.miss_slash_bps, self.fail_slash_bps, self.dispute_slash_bps, self.accept_window,
                self.dispute_window, self.arbitration_window, self.run_grace, self.arbiter)


@dataclass(frozen=True)
class Order:
    id: int
    buyer: str
    device_class: int
    tier: int
    state: OrderState
    units: int
    next_backup: int
    provider: str
    duration: int
    terms: int
    served: int
    accept_deadline: int
    started_at: int
    completed_at: int
    disputed_at: int
    paid: int
    compensated: int
    max_price: int
    price: int
    escrow: int
    usage: int
    requirement: bytes
    digest: bytes
    result: bytes
    backups: tuple[str, ...]

    @classmethod
    def from_chain(cls, order_id: int, raw: Sequence[Any]) -> "Order":
        (buyer, dc, tier, state, units, nxt, provider, duration, terms, served, deadline, started, completed,
         disputed, paid, compensated, max_price, price, escrow, usage, requirement, digest, result, backups) = raw
        return cls(order_id, to_checksum_address(buyer), dc, tier, OrderState(state), units, nxt,
                   to_checksum_address(provider), duration, terms, served, deadline, started, completed, disputed,
                   paid, compensated, max_price, price, escrow, usage, bytes(requirement), bytes(digest),
                   bytes(result), tuple(to_checksum_address(b) for b in backups))


@dataclass(frozen=True)
class BatchRecord:
    """``ComputeMarket.batches(batchId)``: a matching round recorded by ``assignBatch``."""

    batch_id: bytes
    inputs_hash: bytes
    decisions_hash: bytes
    block: int  # the block that recorded it
    orders: int  # how many orders it assigned


#: one assignment of a batch: (order id, provider, price, ranked backups)
Assignment = tuple[int, str, int, Sequence[str]]


class Market(ContractClient):
    """ComputeMarket: deposits, orders and every lease transition.

    Each transition method sends one transaction through the writer and returns a ``Tx``
    with the decoded events; a revert raises ``TransactionReverted`` naming the
    contract's custom error (``WrongState``, ``NotOrderOwner``, ...).
    """

    def __init__(self, chain: Chain, contract: BoundContract, registry: Registry,
                 token: BoundContract | None = None) -> None:
        super().__init__(chain, contract, token)
        self.registry = registry
        self.domain = Eip712Domain(chain.backend.chain_id, contract.address)

    def _contracts(self) -> list[BoundContract]:
        return [self.contract, self.registry.contract]

    @classmethod
    def from_deployment(cls, chain: Chain, dep: Deployment) -> "Market":
        token = dep.bind(chain, "DemoToken") if dep.asset != ZERO else None
        reg_c = dep.bind(chain, "ProviderRegistry")
        market_c = dep.bind(chain, "ComputeMarket")
        registry = Registry(chain, reg_c, token, market_c)
        return cls(chain, market_c, registry, token)

    # -- money
    def deposit(self, sender: Any, amount: int) -> Tx:
        signer = as_signer(sender)
        return self._tx(signer, "deposit", amount, value=self._pay(signer, amount))

    def withdraw(self, sender: Any, amount: int | None = None) -> Tx:
        signer = as_signer(sender)
        if amount is None:
            amount = self.balance(signer.address)
        return self._tx(signer, "withdraw", amount)

    def balance(self, address: str) -> int:
        return self.contract.call("balances", address)

    def nonce(self, address: str) -> int:
        return self.contract.call("nonces", address)

    def escrow_check(self) -> EscrowCheck:
        held = self.contract.call("held")
        free = self.contract.call("totalFree")
        escrow = self.contract.call("totalEscrow")
        burned = self.contract.call("totalBurned")
        return EscrowCheck("ComputeMarket", held, free + escrow + burned,
                           {"totalFree": free, "totalEscrow": escrow, "totalBurned": burned})

    def burn(self, sender: Any) -> Tx:
        """Sends the slashed stake set aside for burning to the burn address (anyone may)."""
        return self._tx(sender, "burn")

    def invalidate_nonces(self, buyer: Any, nonce: int) -> Tx:
        """Revokes every signed intent of ``buyer`` with a nonce below ``nonce``."""
        return self._tx(buyer, "invalidateNonces", nonce)

    # -- intents
    def intent(self, buyer: str, *, requirement: bytes, device_class: int, units: int, duration: int,
               max_price: int, tier: int = 0, nonce: int | None = None, deadline: int | None = None,
               valid_for: int = 3600) -> OrderIntent:
        """An intent with the buyer's next nonce and a deadline ``valid_for`` seconds from the
        chain's latest block time (unless given)."""
        if nonce is None:
            nonce = self.nonce(buyer)
        if deadline is None:
            deadline = self.chain_time() + valid_for
        return OrderIntent(buyer, requirement, device_class, units, duration, max_price, tier, nonce, deadline)

    def chain_time(self) -> int:
        block = self.chain.backend.request("eth_getBlockByNumber", ["latest", False])
        return int(block["timestamp"], 16)

    def digest(self, intent: OrderIntent) -> bytes:
        return intent_digest(self.domain, intent)

    def sign(self, signer: Signer, intent: OrderIntent) -> bytes:
        return sign_intent(signer, self.domain, intent)

    # -- placing
    def place(self, sender: Any, intent: OrderIntent, tier_proof: bytes = b"", *, key: str | None = None) -> int:
        """The buyer places its own order; returns the order id."""
        tx = self._tx(sender, "placeOrder", intent.as_tuple(), tier_proof, key=key)
        return tx.event("OrderPlaced").args["order"]

    def place_tx(self, sender: Any, intent: OrderIntent, tier_proof: bytes = b"") -> Tx:
        return self._tx(sender, "placeOrder", intent.as_tuple(), tier_proof)

    def place_signed(self, orchestrator: Any, intent: OrderIntent, signature: bytes, tier_proof: bytes = b"",
                     *, key: str | None = None) -> Tx:
        """One signed order (``placeSignedOrders`` of one)."""
        return self._tx(orchestrator, "placeSignedOrders", [intent.as_tuple()], [signature], [tier_proof], key=key)

    def place_signed_batch(self, orchestrator: Any, signed: Sequence[tuple[OrderIntent, bytes, bytes]],
                           *, key: str | None = None) -> list[int]:
        """Many signed orders in one transaction (all or nothing); returns their ids in order."""
        if not signed:
            return []
        tx = self._tx(orchestrator, "placeSignedOrders", [i.as_tuple() for i, _, _ in signed],
                      [s for _, s, _ in signed], [p for _, _, p in signed], key=key)
        return [e.args["order"] for e in tx.named("OrderPlaced")]

    # -- lifecycle
    def assign(self, orchestrator: Any, order_id: int, provider: str, price: int,
               backups: Sequence[str] = (), *, key: str | None = None) -> Tx:
        """A manual assignment: a batch of one. Its id comes from ``key`` when given (so a retried
        write is the same batch), else it is random. Raises ``Unassignable`` (with the contract's reason)
        when the contract skipped it."""
        bid = keccak(f"manual:{key}".encode() if key else b"manual:" + os.urandom(32))
        tx = self.assign_batch(orchestrator, bid, b"\x00" * 32, b"\x00" * 32, [(order_id, provider, price, backups)],
                               key=key)
        skipped = tx.named("AssignmentSkipped")
        if skipped:
            reason = skip_reason(skipped[0].args["reason"])
            raise Unassignable(f"order {order_id} was not assigned to {provider}: {reason}", reason=reason,
                               field="provider")
        return tx

    def assign_batch(self, orchestrator: Any, batch_id: bytes, inputs_hash: bytes, decisions_hash: bytes,
                     assignments: Sequence[Assignment], *, key: str | None = None) -> Tx:
        """Binds one matching round: records batch ``batch_id`` with its hashes and assigns each
        (order id, provider, price, backups) of ``assignments`` that still holds, in one transaction.
        Emits one ``Assigned`` per order assigned naming the batch, one ``AssignmentSkipped`` per order
        that no longer held (with its reason), then ``BatchCommitted`` with the number assigned.
        Reverts ``BatchExists`` for an id recorded before, ``ZeroBatchId`` for zero."""
        return self._tx(orchestrator, "assignBatch", *self._batch_args(batch_id, inputs_hash, decisions_hash,
                                                                       assignments), key=key)

    def assign_batch_request(self, batch_id: bytes, inputs_hash: bytes, decisions_hash: bytes,
                             assignments: Sequence[Assignment], *, gas: int | None = None,
                             key: str | None = None) -> TxRequest:
        """The same write as ``assign_batch``, as a request for callers that send through the writer."""
        return self.contract.request("assignBatch", *self._batch_args(batch_id, inputs_hash, decisions_hash,
                                                                      assignments), gas=gas, key=key)

    @staticmethod
    def _batch_args(batch_id: bytes, inputs_hash: bytes, decisions_hash: bytes,
                    assignments: Sequence[Assignment]) -> tuple[Any, ...]:
        for i, a in enumerate(assignments):
            if len(a) != 4:
                raise InputError(f"assignment {i} must be (order id, provider, price, backups)",
                                 field=f"assignments[{i}]")
            if len(a[3]) > MAX_BACKUPS:
                raise InputError(f"assignment {i} ranks {len(a[3])} backups, at most {MAX_BACKUPS}",
                                 field=f"assignments[{i}].backups")
        return (b32("batch_id", batch_id), b32("inputs_hash", inputs_hash), b32("decisions_hash", decisions_hash),
                [a[0] for a in assignments], [a[1] for a in assignments], [list(a[3]) for a in assignments],
                [a[2] for a in assignments])

    def accept(self, provider: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(provider, "accept", order_id, key=key)

    def complete(self, provider: Any, order_id: int, result: bytes, usage: int, *, key: str | None = None) -> Tx:
        return self._tx(provider, "complete", order_id, b32("result", result), usage, key=key)

    def settle(self, sender: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(sender, "settle", order_id, key=key)

    def cancel(self, buyer: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(buyer, "cancel", order_id, key=key)

    def timeout_acceptance(self, sender: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(sender, "timeoutAcceptance", order_id, key=key)

    def fail(self, orchestrator: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(orchestrator, "fail", order_id, key=key)

    def dispute(self, buyer: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(buyer, "dispute", order_id, key=key)

    def resolve(self, arbiter: Any, order_id: int, provider_amount: int, slash_amount: int = 0) -> Tx:
        return self._tx(arbiter, "resolve", order_id, provider_amount, slash_amount)

    def expire(self, sender: Any, order_id: int, *, key: str | None = None) -> Tx:
        """Ends a lease still Running after its end plus the grace period (anyone may)."""
        return self._tx(sender, "expire", order_id, key=key)

    def lapse(self, sender: Any, order_id: int, *, key: str | None = None) -> Tx:
        """Closes a dispute the arbiter left past its deadline, as if settled (anyone may)."""
        return self._tx(sender, "lapse", order_id, key=key)

    # -- operator (through the timelock) and pauser
    @property
    def timelock(self) -> Timelock:
        return Timelock(self.chain, self.chain.at("Timelock", self.contract.call("admin")), None)

    def set_terms(self, operator: Any, **changes: Any) -> Tx:
        """New terms for orders placed from now on: the current ones with ``changes`` (MarketTerms field
        names), through the timelock (applied at once where its delay is 0, else ``ChangePending``)."""
        current = self.terms()
        unknown = sorted(set(changes) - set(MarketTerms.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown market terms: {', '.join(unknown)}",
                             hint=f"one of {', '.join(MarketTerms.__dataclass_fields__)}", field="terms")
        new = MarketTerms(**{**current.__dict__, **changes})
        return self.timelock.apply(operator, Change.call(self.contract, "setSettings", new.as_tuple()))

    def set_orchestrator(self, operator: Any, who: str, allowed: bool = True) -> Tx:
        """Allows (or revokes) an engine's key, through the timelock."""
        return self.timelock.apply(operator, Change.call(self.contract, "setOrchestrator", who, allowed))

    def is_orchestrator(self, who: str) -> bool:
        return self.contract.call("orchestrators", who)

    def pause(self, operator: Any) -> Tx:
        return self._tx(operator, "pause")

    def unpause(self, operator: Any) -> Tx:
        return self._tx(operator, "unpause")

    def terms(self, version: int | None = None) -> MarketTerms:
        """The terms of ``version`` (default: the current one, which new orders get)."""
        version = self.contract.call("termsVersion") if version is None else version
        return MarketTerms.from_chain(self.contract.call("terms", version))

    def settings(self) -> dict[str, int]:
        """The current terms' numbers, by the contract's field names (feeBps, acceptWindow, ...)."""
        t = self.terms()
        return {"feeBps": t.fee_bps, "missSlashBps": t.miss_slash_bps, "failSlashBps": t.fail_slash_bps,
                "disputeSlashBps": t.dispute_slash_bps, "acceptWindow": t.accept_window,
                "disputeWindow": t.dispute_window, "arbitrationWindow": t.arbitration_window,
                "runGrace": t.run_grace}

    # -- reads
    def order(self, order_id: int) -> Order:
        return Order.from_chain(order_id, self.contract.call("getOrder", order_id))

    def state(self, order_id: int) -> OrderState:
        """The order's state (NONE for an id never placed)."""
        if isinstance(order_id, bool) or not isinstance(order_id, int) or not 1 <= order_id <= self.order_count:
            return OrderState.NONE
        return self.order(order_id).state

    def max_usage(self, order_id: int) -> int:
        """The most unit-seconds the provider could report with ``complete`` now (0 unless Running)."""
        return self.contract.call("maxUsage", order_id)

    def batch(self, batch_id: bytes | str, *, block: str = "latest") -> BatchRecord | None:
        """The batch's on-chain record, or None when no ``assignBatch`` recorded it."""
        bid = b32("batch_id", batch_id)
        ih, dh, number, orders = self.contract.call("batches", bid, block=block)
        if number == 0:
            return None
        return BatchRecord(bid, bytes(ih), bytes(dh), number, orders)

    @property
    def order_count(self) -> int:
        return self.contract.call("orderCount")

    @property
    def fee_recipient(self) -> str:
        return self.contract.call("feeRecipient")

    # -- requests for callers that batch through the writer themselves
    def request(self, fn: str, *args: Any, key: str | None = None) -> TxRequest:
        return self.contract.request(fn, *args, key=key)

    def decode(self, receipt: Receipt) -> Tx:
        return Tx(receipt, tuple(self._decode(receipt)))

    def send_many(self, sender: Any, reqs: Iterable[TxRequest], *, if_succeeds: bool = False) -> list[Tx]:
        """Sends requests from one account as one batch; reverted ones carry ``receipt.error``.
        ``if_succeeds``: see ``TransactionWriter.transact_many``."""
        return [self.decode(r) for r in self.chain.writer.transact_many(as_signer(sender), list(reqs),
                                                                        if_succeeds=if_succeeds)]


def skip_reason(value: int) -> str:
    """The name of an ``IComputeMarket.Reason`` value."""
    return SKIP_REASONS[value] if 0 <= value < len(SKIP_REASONS) else f"reason-{value}"


def wait_until(market: Market, timestamp: int) -> None:
    """On a local chain, move time to ``timestamp`` (tests, demos); elsewhere, sleep until then."""
    backend = market.chain.backend
    now = market.chain_time()
    if timestamp <= now:
        return
    if backend.name in ("embedded", "anvil"):
        backend.increase_time(timestamp - now)  # mines a block at the new time
    else:  # a real network cannot be hurried
        time.sleep(timestamp - now)
