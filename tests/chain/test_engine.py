"""The engine service on the embedded chain: LSAs in, signed orders in, leases out, faults handled.

Providers register real hardware (provider_agent/profiles dumps through discover_dump) and send
signed Compute LSAs; buyers sign EIP-712 intents whose requirement is the spec digest. One
deployment per module; each test runs between a snapshot and a revert, with its own state dir.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.intents import cost
from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import Market, wait_until
from marketplace.convergence.heartbeat import sign as sign_heartbeat
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.chain.indexer import EventIndexer
from marketplace.engine.errors import SpecMismatch
from marketplace.engine.orders import Status
from marketplace.errors import InputError
from marketplace.engine.service import Engine, EngineConfig
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.settings import ProjectConfig
from provider_agent.probe import discover_dump

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "provider_agent" / "profiles"
TOPOLOGY = ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
ETH = 10**18
PRICE = 36 * 10**14
GPU = int(DeviceClass.GPU)
# provider account index -> (profile, attachment node in Geant2012)
HW = {3: ("h100-server", "0"), 4: ("l40s-server", "5"), 5: ("t4-node", "9")}

pytestmark = pytest.mark.chain


class Clock:
    """The engine's clock: wall time plus an offset the test moves forward (heartbeats are wall-clock)."""

    def __init__(self) -> None:
        import time

        self._t = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self._t() + self.offset


class World:
    def __init__(self, chain: Chain, dep) -> None:
        self.chain = chain
        self.dep = dep
        self.market = Market.from_deployment(chain, dep)
        self.accounts = chain.backend.accounts
        self.signers = chain.signers
        self.desc = {i: discover_dump(PROFILES / prof).descriptor for i, (prof, _) in HW.items()}

    def key(self, i: int) -> bytes:
        return bytes(self.accounts[i].key)

    def register(self, i: int, *, hardware: bytes | None = None, price: int = PRICE) -> None:
        self.market.registry.register(self.signers[i], hardware=hardware or self.desc[i].digest(), domain=1,
                                      prices=[price, price, price, price], stake=2 * ETH)

    def lsa(self, i: int, *, seq: int = 1, descriptor=None, price: int = PRICE) -> bytes:
        d = descriptor or self.desc[i]
        gpus = d.device_count(DeviceClass.GPU)
        return encode_lsa(d, [Availability(DeviceClass.GPU, gpus * 1000, 0)], [(DeviceClass.GPU, price)], 1,
                          HW[i][1], sequence=seq, lifetime=3600, key=self.key(i))

    def spec(self, **req) -> dict:
        requirement = {"device_class": "gpu", "count": 1, "duration_s": 3600, **req}
        return {"requirement": requirement, "workload": {"module": "sha256", "input": "6869", "fuel": 10**6},
                "attachment": "1"}

    def signed(self, buyer: int, spec: dict, *, units: int = 1, duration: int = 3600, max_price: int = PRICE):
        b = self.signers[buyer]
        it = self.market.intent(b.address, requirement=spec_digest(spec), device_class=GPU, units=units,
                                duration=duration, max_price=max_price)
        if self.market.balance(b.address) < it.escrow():
            self.market.deposit(b, it.escrow() * 4)
        return it, self.market.sign(b, it)


@pytest.fixture(scope="module")
def world():
    project = ProjectConfig.load(ROOT)
    chain = Chain(EmbeddedBackend(project.mnemonic, 10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, unbonding_period=3600, accept_window=30,
                                                   dispute_window=60))
    yield World(chain, dep)
    chain.close()


@pytest.fixture
def w(world):
    snap = world.chain.backend.snapshot()
    yield world
    world.chain.backend.revert(snap)
    world.chain.writer.forget_nonces()


def make_engine(w: World, state_dir: Path, clock=None) -> Engine:
    return Engine(w.chain, w.dep, topology=TOPOLOGY, state_dir=state_dir, clock=clock or Clock(),
                  config=EngineConfig(heartbeat_interval=1.0, miss_limit=3, max_backups=3))


def market_up(w: World, engine: Engine) -> None:
    for i in HW:
        w.register(i)
        res = engine.submit_lsa(w.lsa(i))
        assert res.outcome == LsdbOutcome.INSTALLED, res


def assigned_events(engine: Engine, oid: int) -> list:
    engine.indexer.sync()
    return engine.indexer.events("ComputeMarket", "Assigned", order=oid)


def test_order_is_assigned_to_a_fitting_provider_with_backups_and_the_batch_replays(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)
    spec = w.spec(min_memory_mib=40960)
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    assert w.market.state(oid) == OrderState.OPEN
    orchestrator = engine.orchestrator.address
    nonce = int(w.chain.backend.request("eth_getTransactionCount", [orchestrator, "latest"]), 16)
    engine.step()
    # the round is bound by ONE transaction: the batch record and the assignment naming it
    assert int(w.chain.backend.request("eth_getTransactionCount", [orchestrator, "latest"]), 16) == nonce + 1
    (ev,) = assigned_events(engine, oid)
    (committed,) = engine.indexer.events("ComputeMarket", "BatchCommitted")
    assert committed.tx_hash == ev.tx_hash and committed.args["batchId"] == ev.args["batchId"]
    assert int(committed.args["orders"]) == 1
    assert engine.orders[oid].history[-1]["batch"] == ev.args["batchId"]
    # each history entry carries the state its event left the order in
    assert [h["state"] for h in engine.orders[oid].history] == ["open", "assigned"]
    o = w.market.order(oid)
    big = {w.signers[3].address, w.signers[4].address}  # H100 80 GB and L40S 48 GB; the T4 has 15 GiB
    assert o.state == OrderState.ASSIGNED and o.provider in big
    assert set(o.backups) == big - {o.provider}
    assert o.price == PRICE
    view = engine.order_view(oid)
    assert view["engine"]["status"] == "assigned" and view["spec"]["attachment"] == "1"
    # one batch committed; its replay from the stored inputs reaches the same decisions
    assert len(engine.batches) == 1
    (bid,) = engine.batches
    assert bid == ev.args["batchId"]
    rep = engine.replay(bid)
    assert rep["reproduced"] and rep["decisions"][0][1] == o.provider and rep["assigned"] == [oid]
    for bad in ("0xzz", bid[:-2], b"\x01" * 31):
        with pytest.raises(InputError) as info:
            engine.replay(bad)
        assert info.value.fields["field"] == "batch"
    # the explanation names why the T4 was left out
    ex = engine.explain(oid)
    t4 = next(p for p in ex["providers"] if p["provider"] == w.signers[5].address)
    assert not t4["feasible"] and t4["rejections"]


def test_acceptance_timeout_moves_the_order_to_the_next_backup(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)
    spec = w.spec(min_memory_mib=40960)
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    first = w.market.order(oid)
    wait_until(w.market, first.accept_deadline + 1)
    engine.step()
    after = w.market.order(oid)
    assert after.state == OrderState.ASSIGNED
    assert after.provider == first.backups[0] != first.provider
    engine.indexer.sync()
    names = [e.name for e in engine.indexer.events("ComputeMarket", order=oid)]
    assert names.count("AcceptanceTimedOut") == 1
    engine.step()  # nothing more happens before the new deadline
    assert w.market.order(oid).provider == after.provider


def test_heartbeat_loss_fails_the_lease_with_pro_rata_pay_and_moves_it_to_a_backup(w, tmp_path):
    clock = Clock()
    engine = make_engine(w, tmp_path, clock)
    market_up(w, engine)
    spec = w.spec(min_memory_mib=40960)
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    o = w.market.order(oid)
    idx = next(i for i in HW if w.signers[i].address == o.provider)
    w.market.accept(w.signers[idx], oid)
    engine.heartbeat(sign_heartbeat(w.key(idx), sequence=1, timestamp=int(clock()), leases=[oid]).to_dict())
    engine.step()
    assert engine.orders[oid].state == OrderState.RUNNING
    started = w.market.order(oid).started_at
    wait_until(w.market, started + 600)  # ten minutes of the lease served
    engine.step()
    assert w.market.order(oid).state == OrderState.RUNNING  # heartbeat still fresh on the engine clock
    clock.offset += engine.monitor.bound + 0.5
    engine.step()
    after = w.market.order(oid)
    engine.indexer.sync()
    (failed,) = engine.indexer.events("ComputeMarket", "OrderFailed", order=oid)
    served = int(failed.args["served"])
    assert 600 <= served <= 610
    assert int(failed.args["paid"]) == cost(1, served, PRICE)
    assert after.state == OrderState.ASSIGNED and after.provider == o.backups[0]
    rec = engine.orders[oid]
    assert [h["state"] for h in rec.history] == ["open", "assigned", "running", "assigned"]
    assert rec.status == Status.ASSIGNED and rec.reasons == [["OrderFailed", "moved to backup " + o.backups[0]]]
    assert rec.provider == o.backups[0]
    assert engine.providers()[[p["address"] for p in engine.providers()].index(o.provider)]["status"] == "offline"


def test_lsa_contradicting_registration_or_from_a_stranger_is_ignored(w, tmp_path):
    engine = make_engine(w, tmp_path)
    w.register(3)
    res = engine.submit_lsa(w.lsa(3, descriptor=w.desc[5]))  # claims a T4 while registered as the H100
    assert res.outcome == LsdbOutcome.REJECTED and res.reason == "contradicts-registration"
    res = engine.submit_lsa(w.lsa(4))  # account 4 never registered
    assert res.outcome == LsdbOutcome.REJECTED and res.reason == "unknown-originator"
    assert engine.rejected == {"contradicts-registration": 1, "unknown-originator": 1}
    assert engine.providers() == []
    assert engine.submit_lsa(w.lsa(3)).outcome == LsdbOutcome.INSTALLED
    assert [p["hostname"] for p in engine.providers()] == ["h100-server"]


def test_unsatisfiable_order_is_refused_with_reasons_and_stays_open(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)
    spec = w.spec(min_memory_mib=10**7)  # 10 TiB of VRAM on one device: no provider, ever
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    view = engine.order_view(oid)
    assert view["state"] == "open" and view["engine"]["status"] == "refused"
    assert any("HardwareFit" in r[0] for r in view["engine"]["reasons"])
    assert not engine.batches
    w.market.cancel(w.signers[6], oid)  # the buyer cancels to get the escrow back
    engine.step()
    assert engine.orders[oid].status == "ended"


def test_spec_must_hash_to_the_signed_requirement(w, tmp_path):
    engine = make_engine(w, tmp_path)
    spec = w.spec()
    it, sig = w.signed(6, spec)
    other = w.spec(min_memory_mib=1024)
    with pytest.raises(SpecMismatch) as info:
        engine.place_order(it, sig, other)
    assert info.value.fields["field"] == "spec"


def test_restart_on_the_same_chain_and_state_loses_and_doubles_nothing(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)
    ids = []
    for buyer in (6, 7):
        spec = w.spec(min_memory_mib=40960)
        it, sig = w.signed(buyer, spec)
        ids.append(engine.place_order(it, sig, spec))
    engine.step()
    spec = w.spec(min_memory_mib=10000)
    it, sig = w.signed(8, spec)
    late = engine.place_order(it, sig, spec)  # placed, not yet matched, when the engine "dies"
    engine.close()
    again = make_engine(w, tmp_path)
    assert {i: again.orders[i].state for i in ids} == {i: OrderState.ASSIGNED for i in ids}
    assert again.orders[late].state == OrderState.OPEN
    for i in HW:  # agents re-announce themselves to the new engine, and are heard
        again.submit_lsa(w.lsa(i, seq=2))
    again.step()
    assert w.market.order(late).state == OrderState.OPEN  # a resumed provider is offered nothing until heard
    for i in HW:
        again.heartbeat(sign_heartbeat(w.key(i), sequence=1, timestamp=int(again.clock())).to_dict())
    again.step()
    again.step()
    assert w.market.order(late).state == OrderState.ASSIGNED
    for oid in ids + [late]:
        assert len(assigned_events(again, oid)) == 1
    # the restored leases hold the two large GPUs, so the late order can only have gone to the T4
    assert {w.market.order(i).provider for i in ids} == {w.signers[3].address, w.signers[4].address}
    assert w.market.order(late).provider == w.signers[5].address


def test_engine_loop_thread_assigns_without_explicit_steps(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)
    stop = threading.Event()
    t = threading.Thread(target=engine.run, args=(stop, 0.01), daemon=True)
    t.start()
    try:
        spec = w.spec()
        it, sig = w.signed(6, spec)
        oid = engine.place_order(it, sig, spec)
        import time

        deadline = time.monotonic() + 10
        while w.market.state(oid) != OrderState.ASSIGNED and time.monotonic() < deadline:
            time.sleep(0.02)
        assert w.market.state(oid) == OrderState.ASSIGNED
    finally:
        stop.set()
        t.join(5)


def test_registry_events_fold_to_the_registry_record_and_reach_the_matcher(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)
    addr = w.signers[3].address
    w.market.registry.top_up(w.signers[3], ETH)
    w.market.registry.pause(w.signers[3])
    engine.step()
    # the engine followed the events (lifecycle.fold_provider), and they say what the registry says
    assert addr in engine.provider_table.registered
    assert engine.provider_table.chain_info[addr] == w.market.registry.provider(addr)
    listed = {p["address"]: p for p in engine.providers()}
    assert listed[addr]["status"] == "draining" and listed[addr]["stake"] == str(3 * ETH)
    engine.close()
    again = make_engine(w, tmp_path)  # a restart folds the same events to the same record
    assert again.provider_table.chain_info[addr] == w.market.registry.provider(addr)
    again.close()


def test_an_injected_indexer_is_used_and_left_open_and_one_of_another_market_is_refused(w, tmp_path):
    abis = w.chain.abis
    shared = EventIndexer(w.chain.backend, {
        "ComputeMarket": (w.market.address, abis["ComputeMarket"]),
        "ProviderRegistry": (w.market.registry.address, abis["ProviderRegistry"]),
    }, start_block=w.dep.block)
    engine = Engine(w.chain, w.dep, topology=TOPOLOGY, state_dir=tmp_path, clock=Clock(), indexer=shared)
    assert engine.indexer is shared and not (tmp_path / "index.sqlite").exists()
    market_up(w, engine)
    spec = w.spec(min_memory_mib=40960)
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    assert w.market.state(oid) == OrderState.ASSIGNED
    engine.close()
    shared.sync()  # still open: closing it is its owner's business
    assert len(shared.events("ComputeMarket", "Assigned", order=oid)) == 1
    shared.close()

    registry_only = EventIndexer(w.chain.backend, {
        "ProviderRegistry": (w.market.registry.address, abis["ProviderRegistry"])}, start_block=w.dep.block)
    with pytest.raises(InputError) as info:
        Engine(w.chain, w.dep, topology=TOPOLOGY, state_dir=tmp_path / "other", clock=Clock(),
               indexer=registry_only)
    assert info.value.fields["field"] == "indexer" and "ComputeMarket" in info.value.message
    registry_only.close()

