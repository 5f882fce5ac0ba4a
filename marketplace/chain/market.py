"""The typed client of ``ComputeMarket``: deposits, orders and every lease transition.

Everything the engine, the agents, the API and the tests do on the market goes through
``Market`` (and its ``registry``, a ``marketplace.chain.registry.Registry``). It speaks in
frozen values (``Order``, ``BatchRecord``, ``OrderIntent``, ``Tx``), never raw tuples, and
writes only through the transaction writer, so nonces, batching, idempotency keys and revert
decoding are the same everywhere.

A matching round is bound by one transaction, ``assign_batch``: the batch record (its id and
the hashes of its inputs and decisions) and every assignment it decided, all or nothing; each
``Assigned`` event names its ``batchId`` (zero for a manual ``assign``).

The values the market's methods take and return are defined next door and re-exported here,
so ``from marketplace.chain.market import ...`` keeps working: the wire enums ``OrderState``
and ``ProviderStatus`` (``marketplace.chain.lifecycle``), the EIP-712 intent and ``cost``
(``marketplace.chain.intents``), ``Registry``/``ProviderInfo``/``DEVICE_CLASSES``
(``marketplace.chain.registry``) and ``Tx``/``EscrowCheck`` (``marketplace.chain.client``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterable, Sequence

from eth_utils import to_checksum_address

from marketplace.chain.client import ContractClient, EscrowCheck, Tx, b32
from marketplace.chain.contracts import BoundContract, Chain
from marketplace.chain.deploy import ZERO, Deployment
from marketplace.chain.intents import Eip712Domain, OrderIntent, cost, intent_digest, sign_intent
from marketplace.chain.lifecycle import OrderState, ProviderStatus
from marketplace.chain.registry import DEVICE_CLASSES, ProviderInfo, Registry
from marketplace.chain.writer import Receipt, Signer, TxRequest, as_signer
from marketplace.errors import InputError

__all__ = [
    "DEVICE_CLASSES", "MARKET_SETTINGS", "MAX_BACKUPS", "Assignment", "BatchRecord", "EscrowCheck", "Market",
    "Order", "OrderIntent", "OrderState", "ProviderInfo", "ProviderStatus", "Registry", "SlashReason", "Tx", "cost",
    "wait_until",
]


class SlashReason(IntEnum):
    MISSED_ACCEPTANCE = 0
    FAILURE_MID_LEASE = 1
    LOST_DISPUTE = 2


#: settings the operator may change, as the contract names them (bytes32 strings)
MARKET_SETTINGS = ("feeBps", "acceptWindow", "disputeWindow", "missSlashBps", "failSlashBps")
MAX_BACKUPS = 8


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
    served: int
    accept_deadline: int
    started_at: int
    completed_at: int
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
        (buyer, dc, tier, state, units, nxt, provider, duration, served, deadline, started, completed, max_price,
         price, escrow, usage, requirement, digest, result, backups) = raw
        return cls(order_id, to_checksum_address(buyer), dc, tier, OrderState(state), units, nxt,
                   to_checksum_address(provider), duration, served, deadline, started, completed, max_price, price,
                   escrow, usage, bytes(requirement), bytes(digest), bytes(result),
                   tuple(to_checksum_address(b) for b in backups))


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
        return EscrowCheck("ComputeMarket", held, free + escrow, {"totalFree": free, "totalEscrow": escrow})

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
        return self._tx(orchestrator, "placeSignedOrder", intent.as_tuple(), signature, tier_proof, key=key)

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
        return self._tx(orchestrator, "assign", order_id, provider, list(backups), price, key=key)

    def assign_batch(self, orchestrator: Any, batch_id: bytes, inputs_hash: bytes, decisions_hash: bytes,
                     assignments: Sequence[Assignment], *, key: str | None = None) -> Tx:
        """Binds one matching round: records batch ``batch_id`` with its hashes and assigns each
        (order id, provider, price, backups) of ``assignments``, in one transaction, all or
        nothing. Emits ``BatchCommitted`` once, then one ``Assigned`` per order naming the batch.
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

    # -- operator
    def set_setting(self, operator: Any, name: str, value: int) -> Tx:
        if name not in MARKET_SETTINGS:
            raise InputError(f"unknown market setting {name!r}", hint=f"one of {', '.join(MARKET_SETTINGS)}",
                             field="name")
        return self._tx(operator, "setSetting", name.encode().ljust(32, b"\x00"), value)

    def pause(self, operator: Any) -> Tx:
        return self._tx(operator, "pause")

    def unpause(self, operator: Any) -> Tx:
        return self._tx(operator, "unpause")

    def settings(self) -> dict[str, int]:
        return {name: self.contract.call(name) for name in MARKET_SETTINGS}

    # -- reads
    def order(self, order_id: int) -> Order:
        return Order.from_chain(order_id, self.contract.call("getOrder", order_id))

    def state(self, order_id: int) -> OrderState:
        return OrderState(self.contract.call("stateOf", order_id))

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

    def send_many(self, sender: Any, reqs: Iterable[TxRequest]) -> list[Tx]:
        """Sends requests from one account as one batch; reverted ones carry ``receipt.error``."""
        return [self.decode(r) for r in self.chain.writer.transact_many(as_signer(sender), list(reqs))]


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
