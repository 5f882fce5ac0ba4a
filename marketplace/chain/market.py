"""Typed clients for the market contracts: ProviderRegistry, ComputeMarket (and DemoToken).

Everything the engine, the agents, the API and the tests do on chain goes through
``Registry`` and ``Market``. They speak in frozen dataclasses (``Order``,
``ProviderInfo``, ``OrderIntent``, ``Tx``), never in raw tuples, and they write only
through the transaction writer, so nonces, batching, idempotency keys and revert
decoding are the same everywhere.

EIP-712 order intents are hashed and signed here in Python exactly as the contract
does (``intent_digest`` equals ``ComputeMarket.intentDigest``; the tests check it), so
a buyer can sign offline and the orchestrator can submit many intents in one
transaction without ever holding the buyer's key.

A matching round is bound by one transaction, ``assign_batch``: the batch record (its id and
the hashes of its inputs and decisions) and every assignment it decided, all or nothing; each
``Assigned`` event names its ``batchId`` (zero for a manual ``assign``).

Payment asset: native ETH (``asset == ZERO``) or one ERC-20. The clients hide the
difference: an ETH payment is sent as ``value``, a token payment is approved first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Iterable, Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from marketplace.chain.contracts import BoundContract, Chain, Event
from marketplace.chain.deploy import ZERO, Deployment
from marketplace.chain.lifecycle import OrderState, ProviderStatus  # noqa: F401 - re-exported: the wire enums
from marketplace.chain.writer import Receipt, Signer, TxRequest, as_signer
from marketplace.errors import ChainError, InputError

# ---------------------------------------------------------------------------- enums (wire values)


class SlashReason(IntEnum):
    MISSED_ACCEPTANCE = 0
    FAILURE_MID_LEASE = 1
    LOST_DISPUTE = 2


#: settings the operator may change, as the contract names them (bytes32 strings)
MARKET_SETTINGS = ("feeBps", "acceptWindow", "disputeWindow", "missSlashBps", "failSlashBps")
DEVICE_CLASSES = 4
MAX_BACKUPS = 8

# ---------------------------------------------------------------------------- EIP-712

_EIP712_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
ORDER_INTENT_TYPE = (
    "OrderIntent(address buyer,bytes32 requirement,uint8 deviceClass,uint32 units,uint64 duration,"
    "uint256 maxPrice,uint8 tier,uint256 nonce,uint64 deadline)"
)
ORDER_INTENT_TYPEHASH = keccak(ORDER_INTENT_TYPE.encode())
_INTENT_TYPES = ["bytes32", "address", "bytes32", "uint8", "uint32", "uint64", "uint256", "uint8", "uint256", "uint64"]


@dataclass(frozen=True)
class Eip712Domain:
    """The market's signing domain: name and version are fixed by the contract's constructor."""

    chain_id: int
    verifying_contract: str
    name: str = "CONA ComputeMarket"
    version: str = "1"

    def separator(self) -> bytes:
        return keccak(abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [_EIP712_DOMAIN_TYPEHASH, keccak(self.name.encode()), keccak(self.version.encode()), self.chain_id,
             self.verifying_contract],
        ))


def _uint(name: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, not {type(value).__name__}", field=name)
    if not 0 <= value < 2**bits:
        raise InputError(f"{name} must be within 0..2^{bits}-1, got {value}", field=name)
    return value


@dataclass(frozen=True)
class OrderIntent:
    """What a buyer signs (or sends itself). ``duration`` in seconds, ``max_price`` in asset
    units per compute-unit-hour, ``requirement`` the 32-byte digest of the buyer's requirement."""

    buyer: str
    requirement: bytes
    device_class: int
    units: int
    duration: int
    max_price: int
    tier: int = 0
    nonce: int = 0
    deadline: int = 0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "buyer", to_checksum_address(self.buyer))
        except (ValueError, TypeError):
            raise InputError(f"buyer is not an address: {self.buyer!r}", field="buyer") from None
        req = self.requirement
        if isinstance(req, str):
            req = bytes.fromhex(req[2:] if req.startswith("0x") else req)
        if not isinstance(req, (bytes, bytearray)) or len(req) != 32:
            raise InputError("requirement must be a 32-byte digest", field="requirement")
        object.__setattr__(self, "requirement", bytes(req))
        _uint("device_class", self.device_class, 8)
        _uint("units", self.units, 32)
        _uint("duration", self.duration, 64)
        _uint("max_price", self.max_price, 256)
        _uint("tier", self.tier, 8)
        _uint("nonce", self.nonce, 256)
        _uint("deadline", self.deadline, 64)

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.buyer, self.requirement, self.device_class, self.units, self.duration, self.max_price,
                self.tier, self.nonce, self.deadline)

    def struct_hash(self) -> bytes:
        return keccak(abi_encode(_INTENT_TYPES, [ORDER_INTENT_TYPEHASH, *self.as_tuple()]))

    def escrow(self) -> int:
        """What placing this order locks: units x seconds x price-per-hour / 3600, rounded up."""
        return cost(self.units, self.duration, self.max_price)

    def to_dict(self) -> dict[str, Any]:
        return {"buyer": self.buyer, "requirement": "0x" + self.requirement.hex(), "device_class": self.device_class,
                "units": self.units, "duration": self.duration, "max_price": str(self.max_price), "tier": self.tier,
                "nonce": str(self.nonce), "deadline": self.deadline}


def intent_digest(domain: Eip712Domain, intent: OrderIntent) -> bytes:
    """The EIP-712 digest the buyer signs (``\\x19\\x01 || domainSeparator || structHash``)."""
    return keccak(b"\x19\x01" + domain.separator() + intent.struct_hash())


def sign_intent(signer: Signer, domain: Eip712Domain, intent: OrderIntent) -> bytes:
    """A 65-byte ``r || s || v`` signature (v = 27/28), as ECDSA.recover expects."""
    if signer.address != intent.buyer:
        raise InputError(f"{signer.address} cannot sign an intent for buyer {intent.buyer}", field="buyer")
    v, r, s = signer.sign_digest(intent_digest(domain, intent))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])


def cost(units: int, seconds: int, price_per_hour: int) -> int:
    """The contract's ``_cost``: rounded up so escrow always covers what is owed."""
    raw = units * seconds * price_per_hour
    return 0 if raw == 0 else (raw - 1) // 3600 + 1


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Tx:
    """A mined transaction and the events it emitted (decoded, in log order)."""

    receipt: Receipt
    events: tuple[Event, ...]

    @property
    def tx_hash(self) -> str:
        return self.receipt.tx_hash

    @property
    def gas_used(self) -> int:
        return self.receipt.gas_used

    def event(self, name: str) -> Event:
        found = [e for e in self.events if e.name == name]
        if len(found) != 1:
            raise ChainError(f"expected one {name} event in {self.tx_hash}, found {len(found)}")
        return found[0]

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


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


@dataclass(frozen=True)
class ProviderInfo:
    address: str
    status: ProviderStatus
    domain: int
    live_leases: int
    unbond_at: int
    stake: int
    hardware: bytes
    metadata: bytes
    prices: tuple[int, int, int, int]  # per device class CPU, GPU, NPU, TPU

    def price(self, device_class: int) -> int:
        if not 1 <= device_class <= DEVICE_CLASSES:
            raise InputError(f"device class must be 1..{DEVICE_CLASSES}, got {device_class}", field="device_class")
        return self.prices[device_class - 1]


@dataclass(frozen=True)
class EscrowCheck:
    """The contract's own books: what it holds against what it owes."""

    contract: str
    held: int
    owed: int
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.held == self.owed


# ---------------------------------------------------------------------------- clients


class _Client:
    def __init__(self, chain: Chain, contract: BoundContract, token: BoundContract | None) -> None:
        self.chain = chain
        self.contract = contract
        self.token = token
        self.address = contract.address

    def _tx(self, sender: Any, fn: str, *args: Any, value: int = 0, key: str | None = None) -> Tx:
        rec = self.contract.transact(as_signer(sender), fn, *args, value=value, key=key)
        return Tx(rec, tuple(self._decode(rec)))

    def _decode(self, rec: Receipt) -> list[Event]:
        # events of every contract involved (a market call also emits registry events)
        out = []
        for lg in rec.logs:
            abi = self._abis.get(to_checksum_address(lg["address"]))
            if abi is not None:
                ev = abi.decode_log(lg)
                if ev is not None:
                    out.append(ev)
        return out

    @property
    def _abis(self) -> dict[str, Any]:
        return {c.address: c.abi for c in self._contracts()}

    def _contracts(self) -> list[BoundContract]:
        return [self.contract]

    def _pay(self, sender: Signer, amount: int) -> int:
        """Prepares a payment of ``amount`` to this contract: returns the ETH value to send
        (0 for a token, after approving it)."""
        if self.token is None:
            return amount
        if self.token.call("allowance", sender.address, self.address) < amount:
            self.token.transact(sender, "approve", self.address, amount)
        return 0


class Registry(_Client):
    """ProviderRegistry: registration, stake, status and unbonding of providers."""

    def __init__(self, chain: Chain, contract: BoundContract, token: BoundContract | None = None,
                 market: BoundContract | None = None) -> None:
        super().__init__(chain, contract, token)
        self._market = market

    def _contracts(self) -> list[BoundContract]:
        return [self.contract] + ([self._market] if self._market else [])

    def register(self, sender: Any, *, hardware: bytes, domain: int, prices: Sequence[int], stake: int,
                 metadata: bytes = b"\x00" * 32) -> Tx:
        signer = as_signer(sender)
        if len(prices) != DEVICE_CLASSES:
            raise InputError(f"prices must give one price per device class ({DEVICE_CLASSES})", field="prices")
        _uint("domain", domain, 32)
        value = self._pay(signer, stake)
        return self._tx(signer, "register", _b32("hardware", hardware), domain, _b32("metadata", metadata),
                        list(prices), stake, value=value)

    def update(self, sender: Any, *, hardware: bytes, domain: int, prices: Sequence[int],
               metadata: bytes = b"\x00" * 32) -> Tx:
        return self._tx(sender, "update", _b32("hardware", hardware), domain, _b32("metadata", metadata), list(prices))

    def top_up(self, sender: Any, amount: int) -> Tx:
        signer = as_signer(sender)
        return self._tx(signer, "topUp", amount, value=self._pay(signer, amount))

    def pause(self, sender: Any) -> Tx:
        return self._tx(sender, "pause")

    def resume(self, sender: Any) -> Tx:
        return self._tx(sender, "resume")

    def begin_unbond(self, sender: Any) -> Tx:
        return self._tx(sender, "beginUnbond")

    def finish_unbond(self, sender: Any) -> Tx:
        return self._tx(sender, "finishUnbond")

    def withdraw(self, sender: Any) -> Tx:
        return self._tx(sender, "withdraw")

    def set_min_stake(self, sender: Any, value: int) -> Tx:
        return self._tx(sender, "setMinStake", value)

    # -- reads
    def provider(self, address: str) -> ProviderInfo:
        raw = self.contract.call("provider", address)
        status, domain, live, unbond_at, stake, hardware, metadata, prices = raw
        return ProviderInfo(to_checksum_address(address), ProviderStatus(status), domain, live, unbond_at, stake,
                            bytes(hardware), bytes(metadata), tuple(prices))

    def is_eligible(self, address: str) -> bool:
        return bool(self.contract.call("isEligible", address))

    def released(self, address: str) -> int:
        return self.contract.call("released", address)

    @property
    def min_stake(self) -> int:
        return self.contract.call("minStake")

    @property
    def unbonding_period(self) -> int:
        return self.contract.call("unbondingPeriod")

    def escrow_check(self) -> EscrowCheck:
        held = self.contract.call("held")
        staked = self.contract.call("totalStaked")
        released = self.contract.call("totalReleased")
        return EscrowCheck("ProviderRegistry", held, staked + released,
                           {"totalStaked": staked, "totalReleased": released})


class Market(_Client):
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
        return (_b32("batch_id", batch_id), _b32("inputs_hash", inputs_hash), _b32("decisions_hash", decisions_hash),
                [a[0] for a in assignments], [a[1] for a in assignments], [list(a[3]) for a in assignments],
                [a[2] for a in assignments])

    def accept(self, provider: Any, order_id: int, *, key: str | None = None) -> Tx:
        return self._tx(provider, "accept", order_id, key=key)

    def complete(self, provider: Any, order_id: int, result: bytes, usage: int, *, key: str | None = None) -> Tx:
        return self._tx(provider, "complete", order_id, _b32("result", result), usage, key=key)

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
        bid = _b32("batch_id", batch_id)
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


def _b32(name: str, value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value[2:] if value.startswith("0x") else value)
        except ValueError:
            raise InputError(f"{name} must be 32 bytes of hex, got {value!r}", field=name) from None
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise InputError(f"{name} must be 32 bytes", field=name)
    return bytes(value)


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
