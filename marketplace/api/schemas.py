"""The API's typed request and response bodies (Pydantic): what the OpenAPI document says of every route.

Split as the FastAPI full-stack template splits its models: what a client sends (``...In``)
and what the API answers (``...Out``, or the resource's name). Amounts in wei are decimal
strings wherever they are today (``Wei``: a uint256 does not fit a JSON double); counts,
blocks and timestamps are integers.

Request documents that are signed or digested (the order ``spec`` and its ``intent``, a
quote's ``requirement``, a heartbeat) are handed to the domain parsers as sent, which name the
field at fault; their models here only describe them (``DescribedBy``, see
``marketplace.api.openapi``): a coercion of ``"60"`` to ``60`` would change what was signed.

Response models mirror the dicts the domain builds (``Engine.order_view``, ``explain``,
``quote``, ``providers``; the ``Auditor``'s ``to_dict``), field for field: a route that
returns a dict is validated and serialised through its model, a hot route that returns kept
bytes declares the model and skips the validation (done once, when the bytes were built).

Invariant: a model that validates a domain's answer (the engine's, the auditor's) has no
default the answer lacks, so validating it never adds a key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from marketplace.api.openapi import DescribedBy
from marketplace.api.workload_schemas import RuntimesOut, WorkloadIn, WorkloadOut

Address = Annotated[str, Field(description="an account address, 0x-prefixed, checksummed")]
Hex32 = Annotated[str, Field(description="32 bytes, 0x-prefixed hex", pattern=r"^0x[0-9a-fA-F]{64}$")]
Wei = Annotated[str, Field(description="an amount in wei, as a decimal string", pattern=r"^[0-9]+$")]
#: an amount the auditor computes (a disagreement may make a replayed figure negative)
Amount = Annotated[str, Field(description="an amount in wei, as a decimal string", pattern=r"^-?[0-9]+$")]
#: an integer a client may send as a JSON number or as a decimal string (a uint256 does not fit a double)
Uint = Annotated[int | str, Field(description="an unsigned integer, as a number or a decimal string")]
#: a matcher reason: [code, count] from the scheduler, or [event, message] from the engine
Reason = Annotated[list[str | int], Field(description="[code, count] or [event, message]")]


class Problem(BaseModel):
    """An RFC 9457 problem detail; ``field`` names the parameter at fault."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None


# ---------------------------------------------------------------------------- operations


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    block: int
    chain_id: int


class DeploymentOut(BaseModel):
    """The chain and the deployment record (``Deployment.to_dict()``) the market runs on; the record's
    fields are absent (not null) before a deployment (the route answers with the fields it has)."""

    chain_id: int
    backend: str = Field(description="embedded, anvil or rpc")
    rpc: str = Field(description="where the chain answers JSON-RPC (this API's /rpc)")
    genesis: Hex32 | None = Field(None, description="the hash of the chain's block 0")
    block: int | None = Field(None, description="the block the market was deployed at")
    asset: Address | None = Field(None, description="the token escrow is paid in (the zero address: ETH)")
    contracts: dict[str, Address] | None = Field(None, description="contract name to address")
    roles: dict[str, Address] | None = Field(None, description="role name (operator, orchestrator, ...) to account")
    params: dict[str, Any] | None = Field(None, description="the market's deployment parameters")


# ---------------------------------------------------------------------------- the order document


class RequirementIn(BaseModel):
    """What an order needs of one provider node (``Requirement.from_dict``); only ``device_class`` is required."""

    device_class: str | int = Field(description="cpu, gpu, npu or tpu")
    count: int = Field(1, description="devices, 1..4096")
    share_milli: int = Field(1000, description="thousandths of each device, 1..1000")
    min_memory_mib: int | None = Field(None, description="memory per device")
    min_system_memory_mib: int | None = None
    precision: str | int | None = Field(None, description="fp64, fp32, tf32, bf16, fp16, fp8 or int8")
    min_flops: float | None = Field(None, description="per device, at precision")
    features: list[str] | None = None
    max_latency_ms: float | None = Field(None, description="path latency from the buyer's attachment")
    max_price: int | None = Field(None, description="wei per device-hour, at most")
    domain: int | None = Field(None, description="network domain (AS)")
    duration_s: int = Field(3600, description="lease length, seconds")
    cpu_milli: int = Field(0, description="host CPU an accelerator job needs, thousandths of a CPU")


class RequirementOut(BaseModel):
    """A requirement as the market normalises it (``Requirement.to_dict()``): what its digest covers."""

    device_class: str
    count: int
    share_milli: int
    min_memory_mib: int | None
    min_system_memory_mib: int | None
    precision: str | None
    min_flops: float | None
    features: list[str]
    max_latency_ms: float | None
    max_price: int | None
    domain: int | None
    duration_s: int
    cpu_milli: int


class OrderSpecIn(BaseModel):
    """The order document: its digest (``spec_digest``) is the intent's ``requirement``."""

    requirement: RequirementIn
    workload: WorkloadIn
    attachment: str = Field(description="the topology node the buyer sits at")


class OrderSpec(BaseModel):
    """The order document as the engine keeps it (normalised)."""

    requirement: RequirementOut
    workload: WorkloadOut
    attachment: str


class OrderIntentIn(BaseModel):
    """``OrderIntent.to_dict()``: the EIP-712 struct the buyer signs."""

    buyer: Address
    requirement: Hex32 = Field(description="spec_digest(spec)")
    device_class: Uint
    units: Uint
    duration: Uint = Field(description="seconds")
    max_price: Uint = Field(description="wei per unit-hour")
    tier: Uint
    nonce: Uint
    deadline: Uint = Field(description="unix time after which the intent is void")


# ---------------------------------------------------------------------------- writes


class OrderIn(BaseModel):
    """A signed order (``intent`` + ``signature`` + ``spec``), or ``tx_hash`` + ``spec`` for an order the
    buyer placed with its own transaction."""

    intent: Annotated[dict[str, Any], DescribedBy(OrderIntentIn)] | None = Field(
        None, description="OrderIntent.to_dict(): the signed intent")
    signature: str | None = Field(None, description="65-byte EIP-712 signature r||s||v, hex")
    spec: Annotated[dict[str, Any], DescribedBy(OrderSpecIn)] = Field(
        ..., description="the order document whose digest is intent.requirement")
    tier_proof: str | None = Field(None, description="tier proof bytes, hex")
    tx_hash: str | None = Field(None, description="instead of intent+signature: the buyer's own placeOrder tx")


class OrderPlaced(BaseModel):
    id: int
    href: str


class LsaOutcome(BaseModel):
    outcome: Literal["installed", "duplicate", "older", "too-soon"]
    reason: str | None = Field(description="why an LSA was not installed")


class HeartbeatIn(BaseModel):
    """``Heartbeat.to_dict()``: signed by the provider's key (EIP-191 over its fields)."""

    provider: Address
    sequence: int = Field(description="0..2^64-1, increasing")
    timestamp: int = Field(description="unix seconds, 0..2^64-1")
    leases: list[int] = Field(default_factory=list, description="the order ids the provider is running")
    signature: str = Field(description="65 bytes r || s || v, hex")


class Accepted(BaseModel):
    outcome: Literal["accepted"]


class ResultStored(BaseModel):
    id: int
    result: Hex32 = Field(description="keccak-256 of the bytes: the result hash on chain")


class RawTxIn(BaseModel):
    raw_tx: str = Field(..., description="the buyer's signed transaction, 0x-hex (EIP-1559, EIP-2930 or EIP-155)",
                        examples=["0x02f8..."])


class RelayedEvent(BaseModel):
    contract: str
    event: str
    args: dict[str, Any] = Field(description="integers beyond 2^53 as decimal strings, bytes as 0x-hex")


class Relayed(BaseModel):
    """A relayed buyer transaction, mined: the order's state after it and its decoded events."""

    model_config = ConfigDict(serialize_by_alias=True)

    order: int
    action: Literal["cancel", "dispute"]
    from_: Address = Field(alias="from")
    tx: Hex32
    block: int
    gas_used: int
    state: str
    events: list[RelayedEvent]


# ---------------------------------------------------------------------------- orders (engine)


class HistoryNote(BaseModel):
    event: str
    block: int
    tx: str
    batch: Hex32 | None = Field(None, description="the matching batch that decided an assignment")


class EngineStatus(BaseModel):
    status: str = Field(description="the engine's bookkeeping: awaiting-spec, queued, pending, assigned, ...")
    reasons: list[Reason]
    history: list[HistoryNote]


class OrderView(BaseModel):
    """One order: its state on chain, its spec, and what the engine made of it."""

    id: int
    state: str
    buyer: Address
    provider: Address
    backups: list[Address]
    price: Wei
    max_price: Wei
    escrow: Wei
    units: int
    duration: int
    served: int
    accept_deadline: int
    started_at: int
    tier: int
    spec_digest: Hex32
    result: Hex32
    spec: OrderSpec | None
    engine: EngineStatus


class ScoreOut(BaseModel):
    plugin: str
    raw: float
    normalized: float
    weight: float


class RejectionOut(BaseModel):
    plugin: str
    code: Literal["success", "unschedulable", "unresolvable"]
    reason: str
    message: str


class Verdict(BaseModel):
    """One provider's verdict for one order: why it is left out, or its scores."""

    provider: Address
    feasible: bool
    total: float | None
    price: int | None = Field(description="wei per device-hour")
    latency_ms: float | None = Field(description="path latency from the buyer's attachment")
    scores: list[ScoreOut]
    rejections: list[RejectionOut]


class Explanation(BaseModel):
    best: Address | None = Field(description="the provider the matcher would pick now")
    providers: list[Verdict]
    order_id: int
    status: str
    reasons: list[Reason]


class QuoteIn(BaseModel):
    requirement: Annotated[dict[str, Any], DescribedBy(RequirementIn)]
    attachment: str | None = Field(None, description="the topology node the buyer sits at")


class Quote(BaseModel):
    best: Address | None
    providers: list[Verdict]
    requirement: RequirementOut
    requirement_digest: Hex32


# ---------------------------------------------------------------------------- providers


class DeviceOut(BaseModel):
    """A group of identical devices (``DeviceCapability.canonical()``)."""

    model_config = ConfigDict(serialize_by_alias=True)

    class_: str = Field(alias="class", description="CPU, GPU, NPU or TPU")
    model: str
    vendor: str | None
    count: int
    compute_units: int | None
    clock_mhz: float | None
    flops: list[tuple[str, float]] = Field(description="[precision, FLOP/s per device]")
    memory_mib: int | None
    memory_bandwidth_gbps: float | None
    interconnect: str | None
    features: list[str]
    share_milli: int


class ProviderOut(BaseModel):
    """A provider with an installed LSA, as the engine sees it."""

    address: Address
    hostname: str
    devices: list[DeviceOut]
    memory_mib: int | None
    attachment: str | None = Field(description="the topology node it is attached to")
    domain: int | None
    price: int | None = Field(description="wei per device-hour")
    status: str = Field(description="active, draining, offline or retired")
    stake: Wei
    load: float = Field(description="utilisation 0..1")
    lsa_sequence: int
    last_heartbeat: float | None = Field(description="engine clock, seconds")
    runtimes: RuntimesOut


# ---------------------------------------------------------------------------- topology


class NodeOut(BaseModel):
    id: str
    label: str
    lat: float | None
    lon: float | None
    internal: bool


class LinkOut(BaseModel):
    u: str
    v: str
    key: int
    latency_ms: float
    bandwidth_mbps: float | None
    cost: float
    up: bool
    latency_source: str


class TopologyProvider(BaseModel):
    address: str
    attachment: str | None = Field(None, description="the topology node the provider is attached to")
    load: float | None = Field(None, description="utilisation 0..1 (engine only)")
    status: str
    domain: int | None = None
    hostname: str | None = None
    devices: list[DeviceOut] = Field(default_factory=list)
    price: int | None = None
    source: Literal["engine", "chain"]


class TopologyOut(BaseModel):
    name: str
    nodes: list[NodeOut]
    links: list[LinkOut]
    providers: list[TopologyProvider]
    block: int


class GeoGeometry(BaseModel):
    type: Literal["Point", "LineString"]
    coordinates: list[float] | list[list[float]] = Field(description="[lon, lat], or a list of them")


class GeoFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: GeoGeometry
    properties: dict[str, Any] = Field(description="kind node: id, label, providers, load; "
                                                   "kind link: u, v, latency_ms, bandwidth_mbps, up")


class GeoJsonOut(BaseModel):
    type: Literal["FeatureCollection"]
    name: str
    features: list[GeoFeature]


# ---------------------------------------------------------------------------- the order book


class TimelineEntry(BaseModel):
    state: str
    at: int = Field(description="block timestamp")


class OrderOut(BaseModel):
    id: int
    buyer: str
    state: str
    final: bool
    device_class: str
    units: int
    duration: int
    tier: int
    max_price: Wei
    escrow: Wei
    provider: str | None
    price: Wei
    placed_block: int
    placed_at: int
    placed_tx: str
    updated_block: int
    updated_at: int
    timeline: list[TimelineEntry]


class OrdersPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")
    block: int = Field(..., description="the block the index had reached")


# ---------------------------------------------------------------------------- audit


class AuditEntry(BaseModel):
    """One event in a history, where it is on chain; ``state``: the order's state after it."""

    contract: str
    event: str
    block: int
    timestamp: int
    tx_hash: str
    log_index: int
    args: dict[str, Any] = Field(description="amounts as decimal strings")
    state: str | None = None


class AuditMoney(BaseModel):
    escrow: Amount
    paid: Amount
    fees: Amount
    refunded: Amount
    compensated: Amount = Field(description="slashed provider stake credited to the buyer (never above paid)")
    burned: Amount = Field(description="slashed provider stake beyond the buyer's loss, burned")
    remaining: Amount


class AuditOrder(BaseModel):
    """An order's history from chain events, replayed and compared with the contract's view."""

    order: int
    market: Address
    block: int
    batch: Hex32 | None
    state: str
    replayed_state: str
    consistent: bool
    mismatches: list[str]
    buyer: Address
    provider: Address | None
    device_class: int
    units: int
    duration: int
    tier: int
    max_price: Amount
    price: Amount
    served: int
    usage: Amount
    backups: list[Address]
    digest: Hex32
    result: Hex32
    money: AuditMoney
    transitions: list[AuditEntry]
    slashes: list[AuditEntry]


class AuditLease(BaseModel):
    order: int
    assigned_block: int
    outcome: str
    paid: Amount
    fee: Amount
    earned: Amount
    slashed: Amount


class AuditProvider(BaseModel):
    provider: Address
    block: int
    status: str
    stake: Amount
    live_leases: int
    replayed_status: str
    replayed_stake: Amount
    consistent: bool
    mismatches: list[str]
    slashed: Amount
    earned: Amount
    market_balance: Amount
    withdrawn: Amount
    events: list[AuditEntry]
    slashes: list[AuditEntry]
    leases: list[AuditLease]


class EscrowBook(BaseModel):
    contract: str
    held: Amount
    owed: Amount
    balanced: bool
    parts: dict[str, Amount]


class EscrowFromEvents(BaseModel):
    owed: Amount
    free: Amount
    escrow: Amount
    held: Amount
    burn_backlog: Amount = Field(description="slashed stake set aside for burning, not yet sent (totalBurned)")
    staked: Amount
    released: Amount


class AuditEscrow(BaseModel):
    block: int
    balanced: bool
    mismatches: list[str]
    market: EscrowBook
    registry: EscrowBook
    from_events: EscrowFromEvents
    owed_by_role: dict[str, Amount]
    accounts: int
    live_orders: int


class AuditAssignment(BaseModel):
    order: int
    provider: Address
    price: Amount
    backups: list[Address]
    accept_deadline: int
    log_index: int


class AuditBatch(BaseModel):
    batch: Hex32
    market: Address
    block: int
    timestamp: int
    tx_hash: Hex32
    log_index: int
    inputs_hash: Hex32
    decisions_hash: Hex32
    orders: int
    as_of: int
    consistent: bool
    mismatches: list[str]
    assignments: list[AuditAssignment]
