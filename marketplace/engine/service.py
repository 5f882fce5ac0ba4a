"""The engine service: LSAs and heartbeats in, signed orders in, leases out on chain.

One ``Engine`` per market, the only writer of the orchestrator's transactions. It wires its
parts (docs/engine.md has the module map) and runs the loop; ``step(now)`` is one turn:

    1. sync the event index and fold new market and registry events into the order and
       provider tables (``events``: OrderPlaced -> queued; Assigned/Accepted/... -> leases);
    2. acceptance deadlines passed on chain -> ``timeoutAcceptance``; providers the heartbeat
       monitor declares failed while running a lease -> ``fail`` (``faults``);
    3. one matching round; the ``ChainBinder`` binds its reservations with ONE ``assignBatch``
       transaction that records the batch and assigns every order, all or nothing (``binder``);
    4. now and then, expire the artifacts no live order names (``artifacts``).

Invariants:
- the chain is the truth: every write is preceded by a sync of the event index to the head
  (and, for timeouts and failures, a read of the order on chain), and carries an idempotency
  key journalled before it is sent, so nothing is assigned, timed out or failed twice, also
  after a restart (``cona serve`` keeps the journal);
- a failed bind write releases the reservations (never a half-bound lease), and a batch is
  never on chain without its assignments nor an engine-made assignment without its batch;
- an order no provider can ever satisfy is recorded as refused with its reasons and stays
  Open on chain: the buyer cancels it to get the escrow back;
- an LSA is installed only if its originator is a registered, eligible provider whose on-chain
  hardware hash its descriptor matches, and the LSDB survives a restart (``intake``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment
from marketplace.chain.indexer import EventIndexer
from marketplace.chain.market import Market
from marketplace.chain.writer import Signer
from marketplace.convergence.heartbeat import HeartbeatMonitor
from marketplace.convergence.lsdb import InstallResult, Lsdb
from marketplace.artifacts import ArtifactStore, StoreLimits
from marketplace.engine.artifacts import ArtifactDesk
from marketplace.engine.binder import ChainBinder
from marketplace.engine.events import MARKET, REGISTRY, EventFold
from marketplace.engine.faults import LeaseWatch
from marketplace.engine.intake import Intake
from marketplace.engine.matcher import Matcher
from marketplace.engine.orders import OrderDesk, OrderRecord
from marketplace.engine.providers import ProviderTable
from marketplace.engine.queries import Queries
from marketplace.engine.replay import replay_batch
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore
from marketplace.errors import ChainError, InputError
from marketplace.matching import MatchingConfig
from marketplace.routing import RoutingTable, Topology, load_topology
from marketplace.settings import PACKAGE_ROOT

log = logging.getLogger(__name__)

MANIFEST = PACKAGE_ROOT / "provider_agent" / "workloads" / "build" / "manifest.json"

__all__ = ["Engine", "EngineConfig", "replay_batch"]


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
    #: the artifact store's limits: per kind, per uploader, in all, and the expiry of unused ones
    artifacts: StoreLimits = field(default_factory=StoreLimits)


class Engine:
    """The orchestration adapter: wires the parts and runs the loop (see the module docstring).

    ``indexer``: the process's one ``EventIndexer`` of the market and its registry, when the
    composition root shares one (the engine then leaves closing it to its owner); without it the
    engine indexes into ``state_dir/index.sqlite`` itself."""

    def __init__(self, chain: Chain, deployment: Deployment, *, topology: Topology | str | Path | None,
                 state_dir: Path, config: EngineConfig | None = None,
                 clock: Callable[[], float] = time.time, orchestrator: Signer | None = None,
                 indexer: EventIndexer | None = None) -> None:
        self.chain, self.deployment = chain, deployment
        self.config = cfg = config or EngineConfig()
        self.clock = clock
        self.state_dir = Path(state_dir)
        self.store = EngineStore(self.state_dir)
        self.market = Market.from_deployment(chain, deployment)
        self.registry = self.market.registry
        self.orchestrator = orchestrator or _orchestrator_of(chain, deployment)
        self.topology = load_topology(topology) if isinstance(topology, (str, Path)) else topology
        self.routing = RoutingTable(self.topology) if self.topology is not None else None
        topo_name = self.topology.name if self.topology is not None else None
        self.modules = tuple(sorted(json.loads(MANIFEST.read_text())["modules"]))
        self.lock = threading.RLock()
        #: set when work arrives (an order placed): the loop runs its next turn at once instead of
        #: sleeping out its period, so the period adds no latency to order -> lease
        self.wake = threading.Event()
        self.rejected: Counter[str] = Counter()
        self.orders: dict[int, OrderRecord] = {}
        self.specs: dict[bytes, Spec] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.provider_table = table = ProviderTable(self.registry, routing=self.routing, topology_name=topo_name or "-",
                                                    clock=clock)
        self.lsas = table.lsas
        self.lsdb = Lsdb(clock, max_age=cfg.lsa_max_age, known_originators=table.known_originator)
        self.monitor = HeartbeatMonitor(cfg.heartbeat_interval, cfg.miss_limit)
        self._owns_indexer = indexer is None
        self.indexer = self._open_indexer(indexer)
        self.artifact_store = ArtifactStore(self.state_dir / "artifacts", cfg.artifacts, clock=clock)
        self.artifacts = ArtifactDesk(self.artifact_store, orders=self.orders, specs=self.specs,
                                      providers=lambda: self.matcher.providers, results=self.store, lock=self.lock)
        self.matcher = Matcher(table, config=cfg.matching, routing=self.routing, orders=self.orders,
                               specs=self.specs, clock=clock, need_of=self.artifacts.need_of)
        self.events = EventFold(indexer=self.indexer, orders=self.orders, specs=self.specs, batches=self.batches,
                                store=self.store, table=table, matcher=self.matcher, monitor=self.monitor,
                                clock=clock)
        self.binder = ChainBinder(orders=self.orders, table=table, lsdb=self.lsdb, store=self.store,
                                  market=self.market, orchestrator=self.orchestrator, writer=chain.writer,
                                  apply_tx=self.events.apply_tx, topology_name=topo_name,
                                  max_backups=cfg.max_backups)
        self.intake = Intake(table=table, matcher=self.matcher, lsdb=self.lsdb, monitor=self.monitor,
                             store=self.store, rejected=self.rejected, lock=self.lock, clock=clock)
        self.desk = OrderDesk(market=self.market, orchestrator=self.orchestrator, store=self.store, specs=self.specs,
                              orders=self.orders, matcher=self.matcher, apply_tx=self.events.apply_tx,
                              find_placed=self.find_placed, routing=self.routing, topology_name=topo_name or "-",
                              modules=self.modules, lock=self.lock, wake=self.wake, clock=clock,
                              check_artifacts=self.artifacts.check_spec)
        self.watch = LeaseWatch(orders=self.orders, market=self.market, orchestrator=self.orchestrator,
                                monitor=self.monitor, table=table, matcher=self.matcher,
                                apply_tx=self.events.apply_tx)
        self.queries = Queries(orders=self.orders, specs=self.specs, market=self.market, table=table,
                               matcher=self.matcher, monitor=self.monitor, store=self.store, routing=self.routing,
                               topology_name=topo_name or "-", sync=self.events.sync, lock=self.lock, clock=clock)
        self.intake.restore()
        with self.lock:
            self.events.recover()
        self.desk.recover_staged()

    def _open_indexer(self, indexer: EventIndexer | None) -> EventIndexer:
        """The injected indexer (checked), or the engine's own in ``state_dir/index.sqlite``."""
        if indexer is None:
            return EventIndexer(self.chain.backend, {
                MARKET: (self.market.address, self.chain.abis[MARKET]),
                REGISTRY: (self.registry.address, self.chain.abis[REGISTRY]),
            }, db_path=self.state_dir / "index.sqlite", start_block=self.deployment.block,
                reorg_depth=self.config.reorg_depth)
        for name, address in ((MARKET, self.market.address), (REGISTRY, self.registry.address)):
            if address not in indexer.by_address:
                raise InputError(f"the injected event indexer does not index the {name} at {address}",
                                 field="indexer", hint="index the deployment's ComputeMarket and ProviderRegistry")
        return indexer

    # ================================================================== the loop

    def step(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self.lock:
            self.events.sync()
            self.desk.drain_landed(now)
            self.intake.age(now)
            self.watch.timeouts()
            self.watch.failures(now)
            self.watch.overdue(now)
            self.matcher.round(now, self.binder)
            self.artifacts.maybe_sweep(now)

    def run(self, stop: threading.Event, period: float = 0.05) -> None:
        log.info("engine loop running (period %.3f s)", period)
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must survive one bad turn; the next one retries from the chain
                log.exception("engine step failed")
            self.wake.wait(period)
            self.wake.clear()

    def close(self) -> None:
        self.desk.placer.close()
        if self._owns_indexer:
            self.indexer.close()

    # ================================================================== the service's calls

    def submit_lsa(self, raw: bytes, *, persist: bool = True) -> InstallResult:
        return self.intake.submit_lsa(raw, persist=persist)

    def heartbeat(self, raw: dict[str, Any]) -> None:
        self.intake.heartbeat(raw)

    def place_order(self, intent: Any, signature: bytes | str, spec: Any, tier_proof: bytes | str | None = None,
                    idempotency_key: str | None = None) -> int:
        return self.desk.place_order(intent, signature, spec, tier_proof, idempotency_key)

    def place_order_tx(self, tx_hash: str, spec: Any) -> int:
        return self.desk.place_order_tx(tx_hash, spec)

    def find_placed(self, intent_digest: bytes) -> int | None:
        """The order on chain placed from the intent with this EIP-712 digest, or None."""
        self.indexer.sync()
        found = self.indexer.events(MARKET, "OrderPlaced", digest=intent_digest)
        return int(found[-1].args["order"]) if found else None

    def order_view(self, order_id: int) -> dict[str, Any]:
        return self.queries.order_view(order_id)

    def spec_of(self, order_id: int) -> dict[str, Any]:
        return self.queries.spec_of(order_id)

    def explain(self, order_id: int) -> dict[str, Any]:
        return self.queries.explain(order_id)

    def quote(self, requirement: Any, attachment: str | None) -> dict[str, Any]:
        return self.queries.quote(requirement, attachment)

    def providers(self) -> list[dict[str, Any]]:
        return self.queries.providers()

    def submit_result(self, order_id: int, data: bytes) -> str:
        return self.queries.submit_result(order_id, data)

    def result(self, order_id: int) -> bytes:
        return self.queries.result(order_id)

    def replay(self, batch_id: str | bytes) -> dict[str, Any]:
        with self.lock:
            self.events.sync()
        return replay_batch(self.indexer, self.market, self.state_dir, batch_id, routing=self.routing)


def _orchestrator_of(chain: Chain, deployment: Deployment) -> Signer:
    want = deployment.roles["orchestrator"]
    found = [s for s in chain.signers if s.address == want]
    if not found:
        raise ChainError(f"no key for the orchestrator {want} on {chain.backend.describe()}",
                         hint="the engine signs as the deployment's orchestrator")
    return found[0]
