"""An engine restart keeps its link-state database, as an IS-IS router keeps nothing but its
neighbours re-flood: here the engine itself keeps the raw LSAs with their arrival time in
``state_dir/lsdb`` and reinstalls them on start, aged by the time elapsed; and an agent the
engine does not know (nothing stored, or expired) is told so on its next heartbeat and
advertises again at once.

In process (embedded chain, the engine's clock moved forward by the test): LSAs survive a
restart with their remaining lifetime aged, match orders with no re-advertisement and accept
heartbeats; expired ones and ones the chain no longer vouches for are dropped; a heartbeat
from a provider without an LSA is refused with ``unknown-provider``.

Real processes (``e2e``): anvil, ``cona serve`` and one ``cona-agent run`` (the H100 profile).
The engine is SIGKILLed and restarted on the same port twice: with its state directory (the
provider is listed at once, from the stored LSA) and with its ``lsdb`` directory removed (the
agent learns from a refused heartbeat and re-advertises within seconds, not at the 45-minute
refresh).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from marketplace import demo
from marketplace.chain.backends import AnvilBackend, EmbeddedBackend, free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import Market
from marketplace.convergence.heartbeat import sign as sign_heartbeat
from marketplace.convergence.lsa import Availability, decode_header, encode_lsa
from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine.errors import HeartbeatRejected
from marketplace.engine.service import Engine, EngineConfig
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.settings import PACKAGE_ROOT, ConaSettings, ProjectConfig
from marketplace.supervisor import Supervisor
from provider_agent.probe import discover_dump

PROFILES = PACKAGE_ROOT / "provider_agent" / "profiles"
TOPOLOGY = PACKAGE_ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
ETH = 10**18
PRICE = 36 * 10**14
GPU = int(DeviceClass.GPU)
HW = {3: ("h100-server", "0"), 4: ("l40s-server", "5")}
LIFETIME = 3600

pytestmark = pytest.mark.chain


class Clock:
    """Wall time plus an offset the test moves forward (the time the engine was down)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(scope="module")
def world():
    project = ProjectConfig.load(PACKAGE_ROOT)
    chain = Chain(EmbeddedBackend(project.mnemonic, 10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, unbonding_period=3600, accept_window=30,
                                                   dispute_window=60))
    market = Market.from_deployment(chain, dep)
    desc = {i: discover_dump(PROFILES / prof).descriptor for i, (prof, _) in HW.items()}
    yield SimpleNamespace(chain=chain, dep=dep, market=market, desc=desc)
    chain.close()


@pytest.fixture
def w(world):
    snap = world.chain.backend.snapshot()
    yield world
    world.chain.backend.revert(snap)
    world.chain.writer.forget_nonces()


def engine_at(w, state: Path, clock: Clock) -> Engine:
    return Engine(w.chain, w.dep, topology=TOPOLOGY, state_dir=state, clock=clock,
                  config=EngineConfig(heartbeat_interval=1.0, miss_limit=3))


def lsa(w, i: int, seq: int = 1) -> bytes:
    d = w.desc[i]
    return encode_lsa(d, [Availability(DeviceClass.GPU, d.device_count(DeviceClass.GPU) * 1000, 0)],
                      [(DeviceClass.GPU, PRICE)], 1, HW[i][1], sequence=seq, lifetime=LIFETIME,
                      key=bytes(w.chain.backend.accounts[i].key))


def providers_up(w, engine: Engine) -> None:
    for i in HW:
        w.market.registry.register(w.chain.signers[i], hardware=w.desc[i].digest(), domain=1, prices=[PRICE] * 4,
                                   stake=2 * ETH)
        assert engine.submit_lsa(lsa(w, i)).outcome == LsdbOutcome.INSTALLED


_last_sequence = [0]


def place_gpu_order(w, engine: Engine, **req) -> int:
    """Buyer 6 signs an order for one GPU for 600 s (deposit included) and places it through ``engine``."""
    spec = {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 600, **req},
            "workload": {"module": "sha256", "input": "6869", "fuel": 10**6}, "attachment": "1"}
    buyer = w.chain.signers[6]
    it = w.market.intent(buyer.address, requirement=spec_digest(spec), device_class=GPU, units=1, duration=600,
                         max_price=PRICE)
    w.market.deposit(buyer, it.escrow())
    return engine.place_order(it, w.market.sign(buyer, it), spec)


def heartbeat(w, i: int, clock: Clock) -> dict:
    # wall-clock milliseconds, kept strictly increasing: an idle engine turn takes well under a
    # millisecond, so two heartbeats around one can fall within the same millisecond
    seq = max(time.time_ns() // 1_000_000, _last_sequence[0] + 1)
    _last_sequence[0] = seq
    return sign_heartbeat(bytes(w.chain.backend.accounts[i].key), sequence=seq,
                          timestamp=int(clock()), leases=[]).to_dict()


def test_lsas_survive_a_restart_aged_by_the_downtime_and_match_at_once(w, tmp_path):
    clock = Clock()
    engine = engine_at(w, tmp_path, clock)
    providers_up(w, engine)
    before = {a: l.header.sequence for a, l in engine.lsas.items()}
    engine.close()

    clock.offset += 600.0  # the engine was down for ten minutes
    again = engine_at(w, tmp_path, clock)
    assert {a: l.header.sequence for a, l in again.lsas.items()} == before
    for addr, held in again.lsas.items():
        key = (held.header.lsa_type, held.header.originator)
        remaining = decode_header(again.lsdb.raw(key)).lifetime
        # aged by the downtime (rounded up, so a lifetime is never lengthened), never refreshed
        assert LIFETIME - 600 - 3 <= remaining <= LIFETIME - 600, (addr, remaining)
    assert {p["address"] for p in again.providers()} == set(before)

    # no agent re-advertised: heartbeats are taken and an order is matched on the stored LSAs
    for i in HW:
        again.heartbeat(heartbeat(w, i, clock))
    oid = place_gpu_order(w, again, min_memory_mib=40960)
    again.step()
    assert w.market.order(oid).state == OrderState.ASSIGNED
    assert w.market.order(oid).provider in before

    # a newer instance from the agent still replaces the restored one (sequence numbers carry on)
    clock.offset += 2.0  # past MinLSArrival since the reinstall
    assert again.submit_lsa(lsa(w, 3, seq=2)).outcome == LsdbOutcome.INSTALLED
    again.close()
    third = engine_at(w, tmp_path, clock)
    assert third.lsas[w.chain.signers[3].address].header.sequence == 2
    third.close()


def test_an_lsa_that_expires_while_the_engine_runs_takes_its_provider_out_of_matching(w, tmp_path):
    clock = Clock()
    engine = engine_at(w, tmp_path, clock)
    providers_up(w, engine)
    clock.offset += LIFETIME / 2
    assert engine.submit_lsa(lsa(w, 3, seq=2)).outcome == LsdbOutcome.INSTALLED  # provider 3 refreshes
    clock.offset += LIFETIME / 2 + 1  # provider 4 never did: its LSA has run out
    engine.step()
    assert {p["address"] for p in engine.providers()} == {w.chain.signers[3].address}
    assert sorted(p.name for p in (tmp_path / "lsdb").glob("*.json")) == [f"{w.chain.signers[3].address}.json"]
    # an order is matched on what is still advertised, never on the expired provider
    oid = place_gpu_order(w, engine)
    engine.step()
    order = w.market.order(oid)
    assert order.provider == w.chain.signers[3].address and w.chain.signers[4].address not in order.backups
    engine.close()


def test_expired_or_disowned_lsas_are_dropped_and_their_heartbeats_refused_as_unknown(w, tmp_path):
    clock = Clock()
    engine = engine_at(w, tmp_path, clock)
    providers_up(w, engine)
    engine.close()
    stored = sorted(p.name for p in (tmp_path / "lsdb").glob("*.json"))
    assert len(stored) == len(HW)

    # provider 4 re-registers other hardware while the engine is down: its stored LSA contradicts it
    other = discover_dump(PROFILES / "t4-node").descriptor
    w.market.registry.update(w.chain.signers[4], hardware=other.digest(), domain=1, prices=[PRICE] * 4,
                             metadata=b"\x00" * 32)
    again = engine_at(w, tmp_path, clock)
    assert set(again.lsas) == {w.chain.signers[3].address}
    assert again.rejected["contradicts-registration"] == 1
    assert sorted(p.name for p in (tmp_path / "lsdb").glob("*.json")) == [f"{w.chain.signers[3].address}.json"]
    with pytest.raises(HeartbeatRejected) as err:
        again.heartbeat(heartbeat(w, 4, clock))
    assert err.value.fields["reason"] == "unknown-provider"
    again.close()

    clock.offset += LIFETIME + 1  # down for longer than a lifetime: everything stored has expired
    late = engine_at(w, tmp_path, clock)
    assert late.lsas == {} and late.providers() == []
    assert list((tmp_path / "lsdb").glob("*.json")) == []
    with pytest.raises(HeartbeatRejected) as err:
        late.heartbeat(heartbeat(w, 3, clock))
    assert err.value.fields["reason"] == "unknown-provider"
    late.close()


def test_a_lease_is_not_failed_while_its_provider_is_unknown_after_a_restart_that_lost_the_lsdb(w, tmp_path):
    clock = Clock()
    engine = engine_at(w, tmp_path, clock)
    providers_up(w, engine)
    oid = place_gpu_order(w, engine)
    engine.step()
    provider = w.market.order(oid).provider
    i = next(i for i in HW if w.chain.signers[i].address == provider)
    w.market.accept(w.chain.signers[i], oid)
    engine.close()
    shutil.rmtree(tmp_path / "lsdb")  # an engine state from before the LSDB was kept, or a lost disk

    again = engine_at(w, tmp_path, clock)
    assert again.lsas == {} and again.orders[oid].state == OrderState.RUNNING
    for _ in range(3):  # 7.5 s of engine time, beyond the 3 s bound, with a heartbeat every 2.5 s
        clock.offset += 2.5
        with pytest.raises(HeartbeatRejected) as err:  # "unknown-provider": the agent must re-advertise
            again.heartbeat(heartbeat(w, i, clock))
        assert err.value.fields["reason"] == "unknown-provider"
        again.step()
    assert w.market.order(oid).state == OrderState.RUNNING  # alive, so not failed
    clock.offset += 3.5  # and silent for longer than the bound: failed over as usual
    again.step()
    moved = w.market.order(oid)
    assert moved.state == OrderState.ASSIGNED and moved.provider not in (provider, "0x" + "0" * 40)
    again.close()


class Serve:
    """``cona serve`` on a fixed port, in its own process group; ``kill`` is SIGKILL."""

    def __init__(self, rpc_url: str, state: Path, port: int, log_path: Path) -> None:
        self.args = [sys.executable, "-m", "marketplace.cli.serve", "--rpc-url", rpc_url, "--data-dir", str(state),
                     "--port", str(port), "--period", "0.05"]
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        with self.log_path.open("a") as fh:
            fh.write("\n===== start =====\n")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.log_path.open("a"),
                                     cwd=PACKAGE_ROOT, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError("cona serve did not start:\n" + self.log_path.read_text()[-3000:])
        return json.loads(line)["api"]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def _listed(api: str) -> set[str]:
    try:
        return {p["address"] for p in httpx.get(f"{api}/v1/providers", timeout=5).json()}
    except (httpx.HTTPError, ValueError):
        return set()


def _until(cond, timeout: float, what: str, logs: Path) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.mark.e2e
def test_a_restarted_serve_knows_its_providers_and_an_agent_it_forgot_readvertises_at_once(tmp_path):
    project = ProjectConfig.load(PACKAGE_ROOT)
    chain = Chain(AnvilBackend(PACKAGE_ROOT, project.mnemonic, accounts=demo.FIRST_PROVIDER_ACCOUNT + 1), project)
    state, logs = tmp_path / "state", tmp_path / "logs"
    supervisor = Supervisor(logs)
    serve = None
    try:
        dep = deploy_market(chain, state_dir=state, params=MarketParams(min_stake=ETH))
        serve = Serve(chain.backend.url, state, free_port(), logs / "serve.log")
        api = serve.start()
        running = SimpleNamespace(settings=ConaSettings(data_dir=state), api_url=api, supervisor=supervisor,
                                  chain=chain, deployment=dep)
        (addr,) = demo.launch(running, tuple(p for p in demo.DEMO_PROVIDERS if p.name == "h100-server"),
                              stake=2 * ETH)
        agent_log = supervisor.children[0].log_path
        lsdb = state / "engine" / str(dep.chain_id) / "lsdb"
        assert (lsdb / f"{addr}.json").exists()

        # 1. SIGKILL and restart with the state directory: the provider is known before it says a word
        serve.kill()
        api = serve.start()
        assert addr in _listed(api)
        assert "LSDB restored" in (logs / "serve.log").read_text()

        # 2. SIGKILL, lose the stored LSDB, restart: the first heartbeat is refused as unknown and the
        # agent advertises again at once (its next LSA refresh would be 45 minutes away)
        serve.kill()
        shutil.rmtree(lsdb)
        api = serve.start()
        assert addr not in _listed(api)
        took = _until(lambda: addr in _listed(api), 15, "the agent re-advertising", logs)
        print(f"forgotten provider re-advertised and listed {took:.2f} s after the engine came back")
        assert "the engine does not know" in agent_log.read_text()
        assert supervisor.children[0].alive()
    finally:
        supervisor.stop_all()
        if serve is not None:
            serve.kill()
        chain.close()
    assert all(c.process.poll() is not None for c in supervisor.children)
