"""The engine service: LSAs and heartbeats in, signed orders in, leases out on chain.

One ``Engine`` per market. It holds the link-state database, the heartbeat monitor, the
matching ``Scheduler`` and an event indexer, and it is the only writer of the
orchestrator's transactions. ``step(now)`` is one turn of the loop:

    1. sync the indexer; apply new market and registry events to the order table
       (OrderPlaced -> Scheduler.submit; Assigned/Accepted/Completed/... -> lease state);
    2. acceptance deadlines passed on chain -> ``timeoutAcceptance`` (the contract moves
       the order to its next backup);
    3. providers the HeartbeatMonitor declares failed while running a lease -> ``fail``
       (pro-rata pay; the contract reassigns to a backup);
    4. ``schedule_round(now)``; the ``ChainBinder`` binds the round's reservations with ONE
       transaction: ``assignBatch(batchId, inputsHash, decisionsHash, ...)`` records the batch
       (the hashes of the round's stored inputs and its decisions) and assigns every order
       with its ranked backups, all or nothing; each ``Assigned`` names the batch.

Invariants:
- the chain is the truth: every write is preceded by a sync of the event index to the
  head (and, for timeouts and failures, a read of the order on chain), so nothing is
  assigned, timed out or failed twice, also after a restart; every write carries an
  idempotency key, journalled before it is sent (``cona serve`` keeps the journal);
- a failed bind write releases the reservations (never a half-bound lease), and since the
  batch record and its assignments are one transaction, a batch is never on chain without
  its assignments nor an engine-made assignment without its batch;
- an order no provider can ever satisfy is recorded as refused with its reasons and
  stays Open on chain: the buyer cancels it (``cancel``) to get the escrow back;
- an LSA is installed only if its originator is a registered, eligible provider and its
  descriptor hashes to the provider's on-chain hardware hash; otherwise it is counted and
  logged under ``unknown-originator`` / ``contradicts-registration``;
- the LSDB survives a restart: every installed LSA is kept raw with its arrival time in
  ``state_dir/lsdb/<provider>.json`` and reinstalled on start through the same checks, its
  remaining lifetime aged by the time elapsed (expired ones are dropped), so a restarted engine
  matches on what its providers last said instead of waiting for their 45-minute refresh; a
  heartbeat from a provider it holds no LSA of is refused with reason ``unknown-provider``,
  on which the agent advertises again at once.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from eth_utils import keccak, to_checksum_address

from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import ZERO, Deployment
from marketplace.chain.indexer import BEFORE_FIRST, EventIndexer
from marketplace.chain.market import Market, OrderIntent, OrderState, ProviderInfo
from marketplace.chain.market import ProviderStatus as ChainStatus
from marketplace.chain.writer import Receipt, Signer
from marketplace.convergence.errors import LsaDecodeError
from marketplace.convergence.heartbeat import Heartbeat, HeartbeatMonitor
from marketplace.convergence.lsa import ComputeLsa, decode_header, decode_lsa, with_lifetime
from marketplace.convergence.lsdb import InstallResult, Lsdb
from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine import batch as B
from marketplace.engine.errors import (HeartbeatRejected, IdempotencyConflict, InvalidSpec, LsaRejected,
                                       ReplayMismatch, ResultRejected, SpecMismatch, UnknownEngineOrder)
from marketplace.engine.spec import Spec
from marketplace.errors import ChainError, ConaError, InputError, NotFound, Rejected, TopologyError, Unschedulable
from marketplace.matching import (BindResult, BindStatus, MatchingConfig, Order, Outcome, Provider, ProviderStatus,
                                  Reservation, Scheduler)
from marketplace.resources.model import DeviceClass
from marketplace.resources.requirement import Requirement
from marketplace.results import result_digest
from marketplace.routing import RoutingTable, Topology, load_topology
from marketplace.settings import PACKAGE_ROOT

log = logging.getLogger(__name__)

MANIFEST = PACKAGE_ROOT / "provider_agent" / "workloads" / "build" / "manifest.json"
_LIVE = (OrderState.ASSIGNED, OrderState.RUNNING)


@dataclass(frozen=True)
class EngineConfig:
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    heartbeat_interval: float = 1.0
    miss_limit: int = 3
    max_backups: int = 3
    lsa_max_age: int = 3600
    #: stored blocks the indexer re-checks for a reorganisation on every sync; each is one
    #: eth_getBlockByNumber per turn, so 64 cost ~60 ms a turn on the embedded chain
    reorg_depth: int = 12


# Fixed gas limits per transition, so no eth_estimateGas (a full extra EVM execution) sits on the
# order -> lease path. Each is about twice the gas measured on the embedded chain (placeSignedOrders
# of one intent 262k cold / 228k warm; assignBatch of one order with two backups ~230k, of which
# ~95k is the transaction and the batch record); unused gas is not charged. A write that would
# revert is mined as failed instead of being refused at estimation: the engine syncs the index to
# the head before each round, so that is rare, and a failed assign releases its reservations.
GAS_PLACE = 500_000
GAS_ASSIGN_BASE = 200_000
GAS_ASSIGN_ORDER = 200_000
GAS_ASSIGN_BACKUP = 30_000


@dataclass
class OrderRecord:
    """The engine's view of one on-chain order (mutable bookkeeping, rebuilt from events)."""

    id: int
    buyer: str
    spec_digest: bytes
    device_class: int
    units: int
    duration: int
    max_price: int
    tier: int
    state: OrderState = OrderState.OPEN
    provider: str = ZERO
    backups: tuple[str, ...] = ()
    accept_deadline: int = 0
    status: str = "awaiting-spec"
    reasons: list[Any] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": self.reasons, "history": self.history}


def _arg(args: dict[str, Any], name: str) -> Any:
    v = args[name]
    return int(v) if isinstance(v, str) and v.isdigit() else v


def _b32(v: Any) -> bytes:
    return bytes(v) if isinstance(v, (bytes, bytearray)) else bytes.fromhex(str(v).removeprefix("0x"))


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


def _hexbytes(v: Any, name: str) -> bytes:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    try:
        return bytes.fromhex(str(v).removeprefix("0x"))
    except ValueError:
        raise InputError(f"{name} must be hex bytes", field=name) from None


class ChainBinder:
    """The matching ``Binder`` on chain: one ``assignBatch`` transaction per round.

    A round in which every reservation failed the pre-write check (order no longer Open,
    provider no longer eligible, price above the ceiling) writes nothing: it leased nothing,
    its reservations are released and the orders come back in a later round, whose batch is
    the one committed. The contract accepts an empty batch (``orders == 0``), but recording
    rounds that bind nothing would cost gas on every idle turn for no lease."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    def bind(self, round_no: int, batch: Sequence[Reservation]) -> list[BindResult]:
        e = self.engine
        sched = e._sched
        now = e._round_now
        backups = [B.rank_backups(sched, r.order, r.placement.provider_id, e.config.max_backups, now) for r in batch]
        decisions = B.decisions_doc(batch, backups)
        inputs = e._round_inputs
        ih, dh = B.inputs_hash(inputs), B.decisions_hash(decisions)
        bid = B.batch_id_of(ih, dh)
        e._store_batch(ih, {"batch_id": "0x" + bid.hex(), "inputs": inputs, "decisions": decisions})
        results: dict[str, BindResult] = {}
        assignments = []
        eligible: dict[str, bool] = {}
        for r, bk in zip(batch, backups):
            oid = r.order.order_id
            why = e._bind_check(int(oid), r.placement.provider_id, eligible)
            if why is not None:
                results[oid] = BindResult(oid, BindStatus.FAILED, reason=why)
                continue
            price = e._price_for(r.placement.provider_id, int(oid))
            assignments.append((int(oid), r.placement.provider_id, price, list(bk)))
        if assignments:
            m = e.market
            gas = GAS_ASSIGN_BASE + sum(GAS_ASSIGN_ORDER + GAS_ASSIGN_BACKUP * len(a[3]) for a in assignments)
            cap = e.chain.writer._gas_cap  # noqa: SLF001 - the block gas limit the writer last read
            req = m.assign_batch_request(bid, ih, dh, assignments, gas=min(gas, cap) if cap else gas,
                                         key=f"assign:{bid.hex()}")
            try:
                txs = m.send_many(e.orchestrator, [req])
                err = txs[0].receipt.error
            except ConaError as exc:
                txs, err = [], exc
            if err is not None:
                log.warning("batch %s: assignBatch of %d orders failed (%s); reservations released",
                            bid.hex()[:12], len(assignments), err)
                for a in assignments:
                    results[str(a[0])] = BindResult(str(a[0]), BindStatus.FAILED, reason="chain-write-failed")
            else:
                for a in assignments:
                    results[str(a[0])] = BindResult(str(a[0]), BindStatus.BOUND, lease_id=txs[0].tx_hash)
                e._apply_tx(txs[0])
                log.info("batch %s: %d orders assigned and the batch recorded in tx %s", bid.hex()[:12],
                         len(assignments), txs[0].tx_hash)
        return [results[r.order.order_id] for r in batch]


class Engine:
    """The orchestration adapter. See the module docstring for the loop."""

    def __init__(self, chain: Chain, deployment: Deployment, *, topology: Topology | str | Path | None,
                 state_dir: Path, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.time, orchestrator: Signer | None = None) -> None:
        self.chain = chain
        self.deployment = deployment
        self.config = config or EngineConfig()
        self.clock = clock
        self.state_dir = Path(state_dir)
        for sub in ("specs", "batches", "results", "lsdb"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.market = Market.from_deployment(chain, deployment)
        self.registry = self.market.registry
        if orchestrator is None:
            want = deployment.roles["orchestrator"]
            found = [s for s in chain.signers if s.address == want]
            if not found:
                raise ChainError(f"no key for the orchestrator {want} on {chain.backend.describe()}",
                                 hint="the engine signs as the deployment's orchestrator")
            orchestrator = found[0]
        self.orchestrator = orchestrator
        if isinstance(topology, (str, Path)):
            topology = load_topology(topology)
        self.topology = topology
        self.routing = RoutingTable(topology) if topology is not None else None
        self.lsdb = Lsdb(clock, max_age=self.config.lsa_max_age, known_originators=self._known_originator)
        self.monitor = HeartbeatMonitor(self.config.heartbeat_interval, self.config.miss_limit)
        self.rejected: Counter[str] = Counter()
        self.modules = tuple(sorted(json.loads(MANIFEST.read_text())["modules"]))
        self.lock = threading.RLock()
        #: set when work arrives (an order placed): the loop runs its next turn at once instead of
        #: sleeping out its period, so the period adds no latency to order -> lease
        self.wake = threading.Event()
        self.orders: dict[int, OrderRecord] = {}
        self.specs: dict[bytes, Spec] = {}
        self.chain_info: dict[str, ProviderInfo] = {}
        self.lsas: dict[str, ComputeLsa] = {}
        self._aged_at = float("-inf")
        self.offline: set[str] = set()
        self.batches: dict[str, dict[str, Any]] = {}
        self._providers: dict[str, Provider] = {}
        self._sched: Scheduler | None = None
        self._rebuild = True
        self._round_inputs: dict[str, Any] = {}
        self._round_now = 0.0
        self._pos = BEFORE_FIRST
        self._idem_path = self.state_dir / "idempotency.json"
        self._idem: dict[str, list[Any]] = json.loads(self._idem_path.read_text()) if self._idem_path.exists() else {}
        #: the registry's minStake, read once here and then followed through its SettingChanged events
        #: (read before the index replays them, so the last one applied is the chain's value)
        self._min_stake: int = self.registry.min_stake
        abis = chain.abis
        self.indexer = EventIndexer(chain.backend, {
            "ComputeMarket": (self.market.address, abis["ComputeMarket"]),
            "ProviderRegistry": (self.registry.address, abis["ProviderRegistry"]),
        }, db_path=self.state_dir / "index.sqlite", start_block=deployment.block,
            reorg_depth=self.config.reorg_depth)
        self._restore_lsdb()
        self._recover()

    # ================================================================== providers: LSAs and heartbeats

    def _known_originator(self, originator: bytes) -> bool:
        info = self._info(to_checksum_address(originator))
        return info is not None and info.status == ChainStatus.ACTIVE

    def _info(self, addr: str, refresh: bool = False) -> ProviderInfo | None:
        if refresh or addr not in self.chain_info:
            info = self.registry.provider(addr)
            if info.status == ChainStatus.NONE:
                return None
            self.chain_info[addr] = info
        return self.chain_info.get(addr)

    def submit_lsa(self, raw: bytes, *, persist: bool = True) -> InstallResult:
        """Install a provider's signed Compute LSA (see the module docstring for the checks); an
        installed one is kept in ``state_dir/lsdb`` (``persist``) so a restart reinstalls it."""
        raw = bytes(raw)
        try:
            lsa = decode_lsa(raw)
        except LsaDecodeError as exc:
            with self.lock:
                return self.lsdb.install(raw)  # counts and logs the decode fault under its reason
        addr = to_checksum_address(lsa.header.originator)
        with self.lock:
            info = self._info(addr, refresh=True)
            if info is None or info.status != ChainStatus.ACTIVE or not self.registry.is_eligible(addr):
                return self._reject_lsa("unknown-originator", f"{addr} is not a registered, eligible provider", lsa)
            if lsa.descriptor.digest() != info.hardware:
                return self._reject_lsa(
                    "contradicts-registration",
                    f"{addr}: descriptor digest 0x{lsa.descriptor.digest().hex()} is not the registered hardware "
                    f"0x{info.hardware.hex()}", lsa)
            arrived = self.clock()
            res = self.lsdb.install(raw)
            if res.outcome == LsdbOutcome.INSTALLED and res.lsa is not None and res.lsa.header.lifetime > 0:
                self.lsas[addr] = res.lsa
                self._refresh_provider(addr)
                if persist:
                    self._persist_lsa(addr, raw, arrived)
            return res

    # -- the LSDB on disk: what an IS-IS router would lose on a restart, we keep

    def _persist_lsa(self, addr: str, raw: bytes, arrived: float) -> None:
        """Keep the raw LSA as it arrived, with its arrival time, in ``state_dir/lsdb/<addr>.json``
        (atomically replaced: one file per originator, the newest installed instance)."""
        path = self.state_dir / "lsdb" / f"{addr}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"raw": raw.hex(), "arrived": arrived}))
        tmp.replace(path)

    def _restore_lsdb(self) -> None:
        """Reinstall the LSAs kept by an earlier run, each aged by the time elapsed since it arrived
        (its remaining lifetime then minus the seconds since), through the same checks as a fresh
        one (registered, eligible, hardware hash). Expired ones and ones the chain no longer
        vouches for are dropped, files included."""
        now = self.clock()
        kept = dropped = 0
        for path in sorted((self.state_dir / "lsdb").glob("*.json")):
            try:
                doc = json.loads(path.read_text())
                raw = bytes.fromhex(doc["raw"])
                header = decode_header(raw)
                remaining = header.lifetime - int(math.ceil(now - float(doc["arrived"])))
            except (OSError, ValueError, KeyError, TypeError, LsaDecodeError) as exc:
                log.warning("stored LSA %s unreadable (%s); dropped", path.name, exc)
                path.unlink(missing_ok=True)
                dropped += 1
                continue
            if remaining <= 0:
                log.info("stored LSA of %s seq %d expired %d s ago; dropped", path.stem, header.sequence, -remaining)
                path.unlink(missing_ok=True)
                dropped += 1
                continue
            res = self.submit_lsa(with_lifetime(raw, min(remaining, header.lifetime)), persist=False)
            if res.outcome == LsdbOutcome.INSTALLED:
                kept += 1
            else:
                log.info("stored LSA of %s seq %d not reinstalled (%s); dropped", path.stem, header.sequence,
                         res.reason or res.outcome.value)
                path.unlink(missing_ok=True)
                dropped += 1
        if kept or dropped:
            log.info("LSDB restored from %s: %d LSAs reinstalled with their aged lifetimes, %d dropped",
                     self.state_dir / "lsdb", kept, dropped)

    def _age(self, now: float) -> None:
        """Age the LSDB (at most once a second): a provider whose LSA ran out of lifetime without a
        refresh is no longer offered to the matcher, and its stored copy is dropped. A lease it is
        running is not touched here: heartbeats decide about those."""
        if now - self._aged_at < 1.0:
            return
        self._aged_at = now
        for raw in self.lsdb.tick():
            addr = to_checksum_address(decode_header(raw).originator)
            if self.lsas.pop(addr, None) is None:
                continue
            self._providers.pop(addr, None)
            self._rebuild = True
            (self.state_dir / "lsdb" / f"{addr}.json").unlink(missing_ok=True)
            log.warning("provider %s: its LSA expired without a refresh; no longer matched", addr)

    def _reject_lsa(self, reason: str, message: str, lsa: ComputeLsa) -> InstallResult:
        self.rejected[reason] += 1
        log.warning("LSA from %s seq %d rejected (%s): %s", lsa.header.originator.hex(), lsa.header.sequence,
                    reason, message)
        return InstallResult(LsdbOutcome.REJECTED, reason, lsa)

    def heartbeat(self, raw: dict[str, Any]) -> None:
        hb = Heartbeat.from_dict(raw)
        with self.lock:
            addr = to_checksum_address(hb.provider)
            if addr not in self.lsas:
                if self.monitor.last_seen(addr) is not None:
                    # a provider running a lease is watched whether or not we hold its LSA (after a
                    # restart that lost it): its signed heartbeat still proves it alive, so the
                    # lease is not failed while it re-advertises
                    self.monitor.observe(hb, self.clock())
                # "unknown-provider", not "unknown-originator": the remedy is the agent's, to
                # advertise again at once (e.g. after a restart that found no stored LSA of it)
                self.rejected["heartbeat-unknown-provider"] += 1
                raise HeartbeatRejected(f"heartbeat from {addr}, which has no installed LSA",
                                        reason="unknown-provider", field="provider",
                                        hint="post a signed Compute LSA to /v1/lsas")
            self.monitor.observe(hb, self.clock())
            if addr in self.offline:
                self.offline.discard(addr)
                log.info("provider %s is alive again", addr)
                self._refresh_provider(addr)

    def _primary_class(self, lsa: ComputeLsa) -> DeviceClass:
        classes = sorted({d.device_class for d in lsa.descriptor.devices if d.device_class != DeviceClass.CPU})
        return classes[0] if classes else DeviceClass.CPU

    def _price_for(self, addr: str, order_id: int) -> int:
        """What the provider is paid per unit-hour: its LSA price, never above its registered price."""
        rec = self.orders[order_id]
        info = self.chain_info[addr]
        chain_price = info.price(rec.device_class)
        lsa = self.lsas.get(addr)
        offered = dict(lsa.prices).get(DeviceClass(rec.device_class)) if lsa else None
        return chain_price if offered is None else min(offered, chain_price)

    def _refresh_provider(self, addr: str) -> None:
        lsa = self.lsas.get(addr)
        info = self.chain_info.get(addr)
        if lsa is None or info is None:
            return
        cls = self._primary_class(lsa)
        chain_price = info.price(int(cls))
        offered = dict(lsa.prices).get(cls)
        price = chain_price if offered is None else min(offered, chain_price)
        attach = lsa.attachment or None
        if attach is not None and self.routing is not None:
            try:
                self.routing.index(attach)
            except TopologyError:
                log.warning("provider %s attaches to %r, not a node of %s: no latency known", addr, attach,
                            self.topology.name if self.topology else "-")
                attach = None
        if addr in self.offline:
            status = ProviderStatus.OFFLINE
        else:
            status = {ChainStatus.ACTIVE: ProviderStatus.ACTIVE, ChainStatus.PAUSED: ProviderStatus.DRAINING,
                      ChainStatus.UNBONDING: ProviderStatus.DRAINING}.get(info.status, ProviderStatus.RETIRED)
        av = {a.device_class: a for a in lsa.availability}
        load = av[cls].load_bp / 10_000 if cls in av else 0.0
        p = Provider(addr, lsa.descriptor, attach, price, info.domain, status, info.stake, min(1.0, load),
                     self.clock(), 1.0)
        old = self._providers.get(addr)
        self._providers[addr] = p
        if old is None or old.descriptor != p.descriptor or self._sched is None or self._rebuild:
            # a provider added since the last rebuild is not in the scheduler yet: rebuild, not update
            self._rebuild = True
        else:
            self._sched.update_provider(p)

    # ================================================================== the scheduler

    def _scheduler(self) -> Scheduler:
        if self._rebuild or self._sched is None:
            self._rebuild = False
            sched = Scheduler(list(self._providers.values()), config=self.config.matching, routing=self.routing,
                              binder=ChainBinder(self))
            self._sched = sched
            now = self.clock()
            for rec in sorted(self.orders.values(), key=lambda r: r.id):
                if rec.state in _LIVE:
                    self._hold(rec, rec.provider, now)
                elif rec.state == OrderState.OPEN and rec.status in ("queued", "pending", "refused"):
                    # a provider that just appeared may satisfy an order refused before
                    self._submit(rec, now)
            log.info("scheduler built: %d providers, %d leases held, %d orders queued", len(self._providers),
                     len(sched.held), len(sched.queue))
        return self._sched

    def _order_of(self, rec: OrderRecord, now: float) -> Order | None:
        spec = self.specs.get(rec.spec_digest)
        if spec is None:
            return None
        return Order(str(rec.id), B.with_max_price(spec.requirement, rec.max_price), min(rec.tier, 3),
                     spec.attachment, float(now))

    def _hold(self, rec: OrderRecord, provider: str, now: float) -> None:
        sched = self._sched
        if sched is None or sched.state_of(str(rec.id)) is not None:
            return
        order = self._order_of(rec, now)
        if order is None or provider not in sched.index.pos:
            log.info("order %d: lease on %s not held in the matcher (no spec or no LSA yet)", rec.id, provider)
            return
        B.withdraw(sched, order.order_id)
        pl = B.place_on(sched, order, provider, now)
        if pl is None:
            log.warning("order %d: %s has no free capacity left for its lease; not held", rec.id, provider)
            return
        B.hold(sched, order, pl)

    def _release(self, rec: OrderRecord) -> None:
        if self._sched is not None:
            B.withdraw(self._sched, str(rec.id))
            self._sched.release(str(rec.id))

    def _submit(self, rec: OrderRecord, now: float) -> None:
        sched = self._sched
        order = self._order_of(rec, now)
        if sched is None or order is None:
            return
        if order.order_id in sched.orders:
            return
        try:
            sched.submit(order)
        except Unschedulable as exc:
            self._set(rec, "refused", [list(r) for r in getattr(exc, "summary", ())])
            log.info("order %d refused: no provider can ever satisfy it (%s); it stays Open on chain, the buyer "
                     "may cancel it", rec.id, rec.reasons)
            return
        except TopologyError as exc:
            self._set(rec, "refused", [["attachment", str(exc)]])
            return
        self._set(rec, "queued", [])

    def _set(self, rec: OrderRecord, status: str, reasons: list[Any]) -> None:
        if rec.status != status:
            log.info("order %d: %s -> %s", rec.id, rec.status, status)
        rec.status = status
        rec.reasons = reasons

    # ================================================================== orders in

    def _spec(self, raw: Any) -> Spec:
        spec = raw if isinstance(raw, Spec) else Spec.from_dict(raw, modules=self.modules)
        if self.routing is not None:
            try:
                self.routing.index(spec.attachment)
            except TopologyError:
                raise InvalidSpec(f"attachment {spec.attachment!r} is not a node of {self.topology.name}",
                                  field="spec.attachment") from None
        return spec

    def _keep_spec(self, spec: Spec) -> bytes:
        d = spec.digest()
        path = self.state_dir / "specs" / f"0x{d.hex()}.json"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(spec.canonical_bytes())
            tmp.replace(path)
        with self.lock:
            self.specs[d] = spec
            now = self.clock()
            for rec in self.orders.values():
                if rec.spec_digest == d and rec.status == "awaiting-spec" and rec.state == OrderState.OPEN:
                    self._set(rec, "queued", [])
                    self._submit(rec, now) if self._sched is not None and not self._rebuild else None
        return d

    def place_order(self, intent: Any, signature: bytes | str, spec: Any, tier_proof: bytes | str | None = None,
                    idempotency_key: str | None = None) -> int:
        """Place a buyer's EIP-712 signed order on chain (``placeSignedOrders``); returns its id."""
        it = parse_intent(intent)
        sig = _hexbytes(signature, "signature")
        proof = _hexbytes(tier_proof, "tier_proof") if tier_proof else b""
        s = self._spec(spec)
        self._check_spec(it, s)
        request_digest = keccak(it.struct_hash() + sig + proof + s.digest()).hex()
        if idempotency_key is not None:
            with self.lock:
                prior = self._idem.get(idempotency_key)
            if prior is not None:
                if prior[0] != request_digest:
                    raise IdempotencyConflict(f"Idempotency-Key {idempotency_key!r} was used for another order",
                                              reason="idempotency-key-reused", field="Idempotency-Key")
                return int(prior[1])
        digest = self.market.digest(it)
        self._check_signature(it, digest, sig)
        self._keep_spec(s)
        key = f"order:{digest.hex()}"
        # without a tier proof the gas is bounded and known (see GAS_PLACE); a proof's verification
        # cost depends on its ring, so it is estimated
        req = self.market.contract.request("placeSignedOrders", [it.as_tuple()], [sig], [proof],
                                           gas=None if proof else GAS_PLACE, key=key)
        (tx,) = self.market.send_many(self.orchestrator, [req])
        if tx.receipt.error is not None:
            raise tx.receipt.error
        oid = int(tx.event("OrderPlaced").args["order"])
        with self.lock:
            if idempotency_key is not None:
                self._idem[idempotency_key] = [request_digest, oid]
                tmp = self._idem_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self._idem))
                tmp.replace(self._idem_path)
            self._apply_tx(tx)
        self.wake.set()
        log.info("order %d placed for %s (spec 0x%s)", oid, it.buyer, s.digest().hex()[:12])
        return oid

    def place_order_tx(self, tx_hash: str, spec: Any) -> int:
        """Attach the spec to an order the buyer placed with its own transaction."""
        s = self._spec(spec)
        raw = self.chain.backend.request("eth_getTransactionReceipt", [tx_hash])
        if not raw:
            raise NotFound(f"no mined transaction {tx_hash}", field="tx_hash")
        tx = self.market.decode(Receipt.from_rpc(raw))
        placed = [e for e in tx.events if e.name == "OrderPlaced" and e.address == self.market.address]
        if len(placed) != 1:
            raise InputError(f"transaction {tx_hash} placed no order on this market", field="tx_hash")
        if _b32(placed[0].args["requirement"]) != s.digest():
            raise SpecMismatch("the spec does not hash to the order's requirement", field="spec",
                               hint="spec_digest(spec) must equal the intent's requirement")
        self._keep_spec(s)
        with self.lock:
            self._apply_tx(tx)
        return int(placed[0].args["order"])

    @staticmethod
    def _check_signature(it: OrderIntent, digest: bytes, sig: bytes) -> None:
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

    def _check_spec(self, it: OrderIntent, s: Spec) -> None:
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

    # ================================================================== chain events

    def _apply_tx(self, tx: Any) -> None:
        for ev in tx.events:
            self._apply(ev.contract, ev.name, ev.args, ev.block_number, ev.tx_hash)

    def _apply(self, contract: str, name: str, args: dict[str, Any], block: int, tx_hash: str) -> None:
        now = self.clock()
        if contract == "ProviderRegistry":
            who = args.get("provider")
            if who and who != ZERO:
                addr = to_checksum_address(who)
                info = self.chain_info.get(addr)
                if name == "LeaseCountChanged" and info is not None:
                    # the market's lease hooks change the live-lease count and nothing else, and the
                    # event carries the new count: no registry read (one EVM call per assign and per
                    # end of lease), and nothing the matcher reads has changed
                    self.chain_info[addr] = replace(info, live_leases=int(_arg(args, "liveLeases")))
                elif self._info(addr, refresh=True) is not None:
                    self._refresh_provider(addr)
            elif name == "SettingChanged" and _b32(args["name"]).rstrip(b"\0") == b"minStake":
                self._min_stake = int(_arg(args, "newValue"))
            return
        if name == "BatchCommitted":
            bid = "0x" + _b32(args["batchId"]).hex()
            self.batches[bid] = {"inputs_hash": "0x" + _b32(args["inputsHash"]).hex(),
                                 "decisions_hash": "0x" + _b32(args["decisionsHash"]).hex(), "block": block,
                                 "tx": tx_hash}
            return
        if "order" not in args:
            return
        oid = int(_arg(args, "order"))
        rec = self.orders.get(oid)
        if name == "OrderPlaced":
            if rec is not None:
                return
            rec = OrderRecord(oid, to_checksum_address(args["buyer"]), _b32(args["requirement"]),
                              int(_arg(args, "deviceClass")), int(_arg(args, "units")), int(_arg(args, "duration")),
                              int(_arg(args, "maxPrice")), int(_arg(args, "tier")))
            self.orders[oid] = rec
            self._note(rec, name, block, tx_hash)
            if rec.spec_digest not in self.specs:
                self._load_spec(rec.spec_digest)
            if rec.spec_digest in self.specs:
                self._set(rec, "queued", [])
                if self._sched is not None and not self._rebuild:
                    self._submit(rec, now)
            else:
                log.info("order %d: waiting for its spec 0x%s", oid, rec.spec_digest.hex()[:12])
            return
        if rec is None:
            return
        if any(h["tx"] == tx_hash and h["event"] == name for h in rec.history):
            return  # already applied from our own receipt
        self._note(rec, name, block, tx_hash, args.get("batchId") if name == "Assigned" else None)
        if name == "Assigned":
            rec.state, rec.provider = OrderState.ASSIGNED, to_checksum_address(args["provider"])
            rec.backups = tuple(to_checksum_address(b) for b in args["backups"])
            rec.accept_deadline = int(_arg(args, "acceptDeadline"))
            self._set(rec, "assigned", [])
            self._hold(rec, rec.provider, now)
        elif name == "Accepted":
            rec.state = OrderState.RUNNING
            self._set(rec, "running", [])
            self.monitor.watch(rec.provider, now)
        elif name in ("AcceptanceTimedOut", "OrderFailed"):
            nxt = to_checksum_address(args["next"])
            self._release(rec)
            if nxt != ZERO:
                rec.state, rec.provider = OrderState.ASSIGNED, nxt
                rec.accept_deadline = int(_arg(args, "acceptDeadline"))
                self._set(rec, "assigned", [[name, "moved to backup " + nxt]])
                self._hold(rec, nxt, now)
            else:
                rec.state = OrderState.REFUNDED
                self._set(rec, "ended", [[name, "no backup left; buyer refunded"]])
        elif name == "Completed":
            rec.state = OrderState.COMPLETED
            self._set(rec, "completed", [])
            self._release(rec)
        elif name == "Disputed":
            rec.state = OrderState.DISPUTED
        elif name in ("Settled", "Cancelled", "Resolved"):
            rec.state = {"Settled": OrderState.SETTLED, "Cancelled": OrderState.CANCELLED,
                         "Resolved": OrderState.RESOLVED}[name]
            self._set(rec, "ended", [])
            self._release(rec)

    def _note(self, rec: OrderRecord, name: str, block: int, tx_hash: str, batch: Any = None) -> None:
        entry = {"event": name, "block": block, "tx": tx_hash}
        if batch is not None and _b32(batch) != b"\x00" * 32:
            entry["batch"] = "0x" + _b32(batch).hex()  # the matching batch that decided this assignment
        rec.history.append(entry)
        log.info("order %d: %s (block %d, tx %s)", rec.id, name, block, tx_hash)

    def _load_spec(self, digest: bytes) -> None:
        path = self.state_dir / "specs" / f"0x{digest.hex()}.json"
        if path.exists():
            s = Spec.from_dict(json.loads(path.read_text()))
            if s.digest() == digest:
                self.specs[digest] = s

    def _sync(self) -> None:
        self.indexer.sync()
        for ev in self.indexer.since(self._pos):
            self._apply(ev.contract, ev.name, ev.args, ev.block_number, ev.tx_hash)
            self._pos = ev.position

    def _recover(self) -> None:
        """Rebuild orders and leases from the chain's events (the index is persisted in state_dir)."""
        with self.lock:
            self._sync()
            live = sum(1 for r in self.orders.values() if r.state in _LIVE)
            opened = sum(1 for r in self.orders.values() if r.state == OrderState.OPEN)
            now = self.clock()
            for r in self.orders.values():
                if r.state == OrderState.RUNNING:
                    self.monitor.watch(r.provider, now)
            log.info("engine recovered from chain: %d orders, %d open, %d assigned or running, %d batches",
                     len(self.orders), opened, live, len(self.batches))

    # ================================================================== the loop

    def _bind_check(self, oid: int, provider: str, eligible: dict[str, bool]) -> str | None:
        """Chain state before a write: the order must still be Open, the provider eligible.

        The order's state is the one the events give: ``step`` synced the index to the head just
        before this round, so it is as fresh as an ``eth_call`` would be, without one EVM call per
        order. Eligibility is the contract's ``isEligible`` (Active, stake at least minStake) on the
        same synced state: every change of a provider's status or stake emits an event that
        refreshes ``chain_info``, and minStake follows its ``SettingChanged`` events. A provider
        the engine holds no registry record for is asked on chain. ``eligible`` is the round's cache."""
        state = self.orders[oid].state
        if state != OrderState.OPEN:
            return f"order-{state.name.lower()}"
        if provider not in eligible:
            info = self.chain_info.get(provider)
            eligible[provider] = (info.status == ChainStatus.ACTIVE and info.stake >= self._min_stake
                                  if info is not None else self.registry.is_eligible(provider))
        if not eligible[provider]:
            return "provider-not-eligible"
        if self._price_for(provider, oid) > self.orders[oid].max_price:
            return "price-above-ceiling"
        return None

    def step(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self.lock:
            self._sync()
            self._age(now)
            self._timeouts()
            self._failures(now)
            if not self._providers:
                return
            sched = self._scheduler()
            if not len(sched.queue):
                return
            self._round_now = now
            self._round_inputs = B.snapshot(sched, {a: l.raw for a, l in self.lsas.items()}, now=now,
                                            lsdb_digest=self.lsdb.digest(),
                                            topology=self.topology.name if self.topology else None,
                                            max_backups=self.config.max_backups)
            result = sched.schedule_round(now)
            for d in result.decisions:
                rec = self.orders.get(int(d.order_id))
                if rec is None:
                    continue
                if d.outcome == Outcome.REFUSED:
                    self._set(rec, "refused", [list(r) for r in d.reasons])
                    log.info("order %d refused (%s); it stays Open on chain: the buyer may cancel it", rec.id,
                             rec.reasons)
                elif d.outcome in (Outcome.PENDING, Outcome.DENIED, Outcome.PREEMPTED):
                    if rec.state == OrderState.OPEN and rec.status not in ("refused",):
                        self._set(rec, "pending", [list(r) for r in d.reasons])
                    if d.outcome == Outcome.DENIED and any(str(r[0]).startswith("Bind:order-") for r in d.reasons):
                        B.withdraw(sched, d.order_id)  # no longer Open on chain: not ours to match
                elif d.outcome == Outcome.BOUND and rec.status != "assigned":
                    self._set(rec, "assigned", [])

    def _timeouts(self) -> None:
        due = [r for r in self.orders.values() if r.state == OrderState.ASSIGNED and r.accept_deadline]
        if not due:
            return
        chain_now = self.market.chain_time()
        for rec in sorted(due, key=lambda r: r.id):
            if rec.accept_deadline >= chain_now:
                continue
            o = self.market.order(rec.id)
            if o.state != OrderState.ASSIGNED or o.accept_deadline >= chain_now:
                continue
            log.info("order %d: %s missed the acceptance deadline %d; timing out", rec.id, o.provider,
                     o.accept_deadline)
            try:
                tx = self.market.timeout_acceptance(self.orchestrator, rec.id,
                                                    key=f"timeout:{rec.id}:{o.provider}:{o.accept_deadline}")
                self._apply_tx(tx)
            except ChainError as exc:
                log.warning("order %d: timeoutAcceptance failed: %s", rec.id, exc)

    def _failures(self, now: float) -> None:
        for addr in self.monitor.failed(now):
            log.warning("provider %s missed heartbeats for more than %.1f s: declared failed", addr,
                        self.monitor.bound)
            self.offline.add(addr)
            self._refresh_provider(addr)
            for rec in sorted(self.orders.values(), key=lambda r: r.id):
                if rec.provider != addr or rec.state != OrderState.RUNNING:
                    continue
                o = self.market.order(rec.id)
                if o.state != OrderState.RUNNING or o.provider != addr:
                    continue
                try:
                    tx = self.market.fail(self.orchestrator, rec.id, key=f"fail:{rec.id}:{addr}:{o.started_at}")
                    self._apply_tx(tx)
                except ChainError as exc:
                    log.warning("order %d: fail on %s failed: %s", rec.id, addr, exc)

    def run(self, stop: threading.Event, period: float = 0.05) -> None:
        log.info("engine loop running (period %.3f s)", period)
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must survive one bad turn; the next one retries from the chain
                log.exception("engine step failed")
            self.wake.wait(period)
            self.wake.clear()

    # ================================================================== batches and replay

    def _store_batch(self, ih: bytes, doc: dict[str, Any]) -> None:
        path = self.state_dir / "batches" / f"0x{ih.hex()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(B.canonical(doc))
        tmp.replace(path)

    def replay(self, batch_id: str | bytes) -> dict[str, Any]:
        with self.lock:
            self._sync()
        return replay_batch(self.indexer, self.market, self.state_dir, batch_id, routing=self.routing)

    # ================================================================== read models

    def _rec(self, order_id: int) -> OrderRecord:
        with self.lock:
            rec = self.orders.get(order_id)
            if rec is None:
                self._sync()
                rec = self.orders.get(order_id)
        if rec is None:
            raise UnknownEngineOrder(f"no order {order_id} on this market", field="order_id")
        return rec

    def spec_of(self, order_id: int) -> dict[str, Any]:
        rec = self._rec(order_id)
        spec = self.specs.get(rec.spec_digest)
        if spec is None:
            raise NotFound(f"order {order_id}: its spec 0x{rec.spec_digest.hex()} was never submitted",
                           field="order_id")
        return spec.to_dict()

    def order_view(self, order_id: int) -> dict[str, Any]:
        rec = self._rec(order_id)
        o = self.market.order(order_id)
        spec = self.specs.get(rec.spec_digest)
        return {
            "id": order_id, "state": o.state.name.lower(), "buyer": o.buyer, "provider": o.provider,
            "backups": list(o.backups), "price": str(o.price), "max_price": str(o.max_price),
            "escrow": str(o.escrow), "units": o.units, "duration": o.duration, "served": o.served,
            "accept_deadline": o.accept_deadline, "started_at": o.started_at, "tier": o.tier,
            "spec_digest": "0x" + rec.spec_digest.hex(), "result": "0x" + o.result.hex(),
            "spec": None if spec is None else spec.to_dict(),
            "engine": rec.to_dict(),
        }

    def explain(self, order_id: int) -> dict[str, Any]:
        rec = self._rec(order_id)
        with self.lock:
            order = self._order_of(rec, self.clock())
            if order is None:
                raise NotFound(f"order {order_id}: no spec yet, nothing to explain", field="order_id")
            doc = self._explain(order)
        doc.update({"order_id": order_id, "status": rec.status, "reasons": rec.reasons})
        return doc

    def _explain(self, order: Order) -> dict[str, Any]:
        sched = self._scheduler()
        ex = sched.explain(order, now=self.clock())
        out = []
        for v in ex.verdicts:
            p = self._providers.get(v.provider_id)
            latency = None
            if p is not None and p.attach_node and order.buyer_node and self.routing is not None:
                latency = round(float(self.routing.latency(order.buyer_node, p.attach_node)), 3)
            out.append({"provider": v.provider_id, "feasible": v.feasible, "total": v.total,
                        "price": None if p is None else p.price, "latency_ms": latency,
                        "scores": [{"plugin": s.plugin, "raw": s.raw, "normalized": s.normalized, "weight": s.weight}
                                   for s in v.scores],
                        "rejections": [{"plugin": r.plugin, "code": r.code.name.lower(), "reason": r.reason,
                                        "message": r.message} for r in v.rejections]})
        out.sort(key=lambda d: (not d["feasible"], -(d["total"] or 0.0), d["provider"]))
        return {"best": ex.best, "providers": out}

    def quote(self, requirement: Any, attachment: str | None) -> dict[str, Any]:
        req = requirement if isinstance(requirement, Requirement) else Requirement.from_dict(requirement)
        if attachment is not None and self.routing is not None:
            try:
                self.routing.index(attachment)
            except TopologyError:
                raise InputError(f"attachment {attachment!r} is not a node of {self.topology.name}",
                                 field="attachment") from None
        with self.lock:
            doc = self._explain(Order("quote", req, 0, attachment, self.clock()))
        doc["requirement"] = req.to_dict()
        doc["requirement_digest"] = "0x" + req.digest().hex()
        return doc

    def providers(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for addr in sorted(self._providers):
                p = self._providers[addr]
                lsa = self.lsas[addr]
                out.append({"address": addr, "hostname": p.descriptor.hostname,
                            "devices": [d.canonical() for d in p.descriptor.devices],
                            "memory_mib": p.descriptor.memory_mib, "attachment": p.attach_node, "domain": p.domain,
                            "price": p.price, "status": p.status.value, "stake": str(p.stake), "load": p.load,
                            "lsa_sequence": lsa.header.sequence, "last_heartbeat": self.monitor.last_seen(addr)})
            return out

    # ================================================================== results

    def submit_result(self, order_id: int, data: bytes) -> str:
        self._rec(order_id)
        want = self.market.order(order_id).result
        if want == b"\x00" * 32:
            raise ResultRejected(f"order {order_id} has no result hash on chain yet", reason="no-result-on-chain",
                                 field="order_id")
        got = result_digest(data)
        if got != want:
            raise ResultRejected(f"keccak of the uploaded bytes is 0x{got.hex()}, the chain holds 0x{want.hex()}",
                                 reason="hash-mismatch", field="body")
        path = self.state_dir / "results" / f"{order_id}.bin"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        log.info("order %d: result of %d bytes stored (0x%s)", order_id, len(data), got.hex()[:12])
        return "0x" + got.hex()

    def result(self, order_id: int) -> bytes:
        self._rec(order_id)
        path = self.state_dir / "results" / f"{order_id}.bin"
        if not path.exists():
            raise NotFound(f"order {order_id}: no result uploaded yet", field="order_id")
        return path.read_bytes()

    def close(self) -> None:
        self.indexer.close()


def replay_batch(indexer: EventIndexer, market: Market, state_dir: Path, batch_id: str | bytes, *,
                 routing=None) -> dict[str, Any]:
    """Fetch a batch's inputs, check their hash against ``BatchCommitted`` on chain, rerun the
    deterministic matcher and compare its decisions with the committed ones.

    The batch is found by its own event (``BatchCommitted`` with this ``batchId``), and the
    orders it assigned by theirs (``Assigned`` naming the same ``batchId``, same transaction)."""
    bid = _b32(batch_id) if not isinstance(batch_id, bytes) else batch_id
    if len(bid) != 32:
        raise InputError("a batch id is 32 bytes of hex", field="batch")
    indexer.sync()
    events = indexer.events("ComputeMarket", "BatchCommitted", batchId="0x" + bid.hex())
    if not events:
        raise NotFound(f"no BatchCommitted event for batch 0x{bid.hex()} on this market", field="batch")
    ev = events[0]
    ih, dh = _b32(ev.args["inputsHash"]), _b32(ev.args["decisionsHash"])
    on_chain = market.batch(bid)
    if on_chain is None or on_chain.inputs_hash != ih or on_chain.decisions_hash != dh:
        raise ReplayMismatch(f"batch 0x{bid.hex()}: the contract's record differs from its event")
    assigned = [int(a.args["order"]) for a in indexer.events("ComputeMarket", "Assigned", batchId="0x" + bid.hex())]
    path = Path(state_dir) / "batches" / f"0x{ih.hex()}.json"
    if not path.exists():
        raise NotFound(f"the inputs of batch 0x{bid.hex()} (0x{ih.hex()}) are not stored in {path.parent}",
                       field="batch")
    doc = json.loads(path.read_text())
    inputs = doc["inputs"]
    if B.inputs_hash(inputs) != ih:
        raise ReplayMismatch(f"batch 0x{bid.hex()}: stored inputs hash to 0x{B.inputs_hash(inputs).hex()}, the "
                             f"chain committed 0x{ih.hex()}")
    decisions = B.rerun(inputs, routing=routing)
    got = B.decisions_hash(decisions)
    return {"batch_id": "0x" + bid.hex(), "block": ev.block_number, "tx": ev.tx_hash,
            "inputs_hash": "0x" + ih.hex(), "decisions_hash": "0x" + dh.hex(),
            "replayed_decisions_hash": "0x" + got.hex(), "reproduced": got == dh,
            "orders": len(inputs["queue"]), "providers": len(inputs["providers"]), "assigned": assigned,
            "decisions": decisions}
