"""Kill the engine with SIGKILL at random points of the flow, restart it, and check from chain data
alone that no order was lost, placed twice, assigned twice or paid twice.

Real processes: anvil (``AnvilBackend``) and ``cona serve`` as a subprocess (``python -m
marketplace.cli.serve``). Five providers register real hardware (provider_agent/profiles dumps
through ``discover_dump``) and post signed Compute LSAs to every engine incarnation, as agents
re-announce themselves. Two buyers post a stream of EIP-712 signed orders to ``POST /v1/orders``
with an ``Idempotency-Key``; a request cut off by a kill is retried with the same key and body
once the engine is back. A provider thread plays the agents' chain side (accept, complete,
settle), so capacity frees up and money moves. A seeded RNG picks when to kill: between requests
or while one is in flight, after a random pause (so the kill lands anywhere in a loop turn).

The verdict reads only chain events (an ``EventIndexer`` of its own) and the contracts' books
(``Auditor.escrow()``): each signed intent placed exactly once; each order Assigned once plus
once per legitimate reassignment (``AcceptanceTimedOut``/``OrderFailed`` naming a next provider);
at most one settlement per order; escrow balanced.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from marketplace.chain.audit import Auditor
from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import ZERO, MarketParams, deploy_market
from marketplace.chain.indexer import EventIndexer
from marketplace.chain.market import Market, OrderState, wait_until
from marketplace.convergence.lsa import Availability, encode_lsa
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.settings import PACKAGE_ROOT, ProjectConfig
from provider_agent.probe import discover_dump

pytestmark = pytest.mark.e2e

ETH = 10**18
PRICE = 36 * 10**14
GPU = int(DeviceClass.GPU)
PROFILES = PACKAGE_ROOT / "provider_agent" / "profiles"
# provider account -> (profile, attachment node in GEANT 2012)
PROVIDERS = {3: ("a100-server", "0"), 4: ("mi100-box", "5"), 5: ("dual-a5000-workstation", "9"),
             6: ("h100-server", "12"), 7: ("l40s-server", "20")}
BUYERS = (8, 9)
ORDERS = 30
KILLS = 4
SEED = 20240611


class Serve:
    """``cona serve`` as a child process; ``kill`` is SIGKILL, ``start`` waits for its JSON line."""

    def __init__(self, rpc_url: str, state_dir: Path, log_path: Path) -> None:
        self.args = [sys.executable, "-m", "marketplace.cli.serve", "--rpc-url", rpc_url, "--state-dir",
                     str(state_dir), "--port", "0", "--period", "0.05",
                     "--heartbeat-interval", "30"]  # leases here end in seconds; failure has its own test
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self) -> str:
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"\n===== start {self.starts} =====\n")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.log_path.open("a"),
                                     cwd=PACKAGE_ROOT, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"cona serve did not start (exit {self.proc.returncode}); see {self.log_path}:\n"
                                 + self.log_path.read_text()[-3000:])
        self.url = json.loads(line)["api"]
        return self.url

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


class Agents(threading.Thread):
    """The providers' chain side: accept what is assigned to them, complete it, settle it."""

    def __init__(self, chain: Chain, market: Market, signers: dict[str, object]) -> None:
        super().__init__(daemon=True, name="agents")
        self.chain, self.market, self.signers = chain, market, signers
        self.stop = threading.Event()
        self.done: set[int] = set()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for oid in range(1, self.market.order_count + 1):
                if oid in self.done:
                    continue
                try:
                    o = self.market.order(oid)
                    who = self.signers.get(o.provider)
                    if o.state == OrderState.ASSIGNED and who is not None:
                        self.market.accept(who, oid)
                    elif o.state == OrderState.RUNNING and who is not None:
                        # an agent reports what it metered, capped by the time elapsed on chain
                        self.market.complete(who, oid, b"\x11" * 32, self.market.max_usage(oid))
                    elif o.state == OrderState.COMPLETED:
                        wait_until(self.market, o.completed_at + 60)  # past the dispute window
                        self.market.settle(who or self.chain.signers[0], oid)
                        self.done.add(oid)
                except Exception as exc:  # noqa: BLE001 - a race with the engine is retried next turn
                    self.errors.append(f"order {oid}: {exc}")


def _post(url: str, body: dict, key: str) -> int | None:
    try:
        r = httpx.post(f"{url}/v1/orders", json=body, headers={"Idempotency-Key": key}, timeout=30)
    except httpx.HTTPError:
        return None  # the engine died under the request: retried after the restart
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _announce(url: str, lsas: list[bytes]) -> None:
    for raw in lsas:
        r = httpx.post(f"{url}/v1/lsas", content=raw, headers={"content-type": "application/octet-stream"},
                       timeout=30)
        assert r.status_code == 202, r.text


@pytest.fixture
def anvil_chain():
    project = ProjectConfig.load(PACKAGE_ROOT)
    backend = AnvilBackend(PACKAGE_ROOT, project.mnemonic, accounts=10)
    chain = Chain(backend, project)
    yield chain
    chain.close()


def test_sigkill_at_random_points_loses_doubles_and_double_pays_nothing(anvil_chain, tmp_path):
    chain = anvil_chain
    rng = random.Random(SEED)
    state = tmp_path / "state"
    dep = deploy_market(chain, state_dir=state,
                        params=MarketParams(min_stake=ETH, unbonding_period=3600, accept_window=600,
                                            dispute_window=60))
    market = Market.from_deployment(chain, dep)
    signers, accounts = chain.signers, chain.backend.accounts
    descs = {i: discover_dump(PROFILES / prof).descriptor for i, (prof, _) in PROVIDERS.items()}
    for i, d in descs.items():
        market.registry.register(signers[i], hardware=d.digest(), domain=1, prices=[PRICE] * 4, stake=2 * ETH)

    def lsas(seq: int) -> list[bytes]:
        return [encode_lsa(d, [Availability(DeviceClass.GPU, d.device_count(DeviceClass.GPU) * 1000, 0)],
                           [(DeviceClass.GPU, PRICE)], 1, PROVIDERS[i][1], sequence=seq, lifetime=3600,
                           key=bytes(accounts[i].key)) for i, d in descs.items()]

    # every request signed up front: a retry after a kill re-sends the very same body and key
    requests = []
    for b in BUYERS:
        market.deposit(signers[b], ORDERS * PRICE)
    nonces = {b: market.nonce(signers[b].address) for b in BUYERS}
    for n in range(ORDERS):
        b = BUYERS[n % 2]
        spec = {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 600, "min_memory_mib": 8192},
                "workload": {"module": "sha256", "input": f"{n:04x}", "fuel": 10**6}, "attachment": "1"}
        it = market.intent(signers[b].address, requirement=spec_digest(spec), device_class=GPU, units=1,
                           duration=600, max_price=PRICE, nonce=nonces[b])
        nonces[b] += 1
        requests.append(({"intent": it.to_dict(), "signature": "0x" + market.sign(signers[b], it).hex(),
                          "spec": spec}, f"order-{n}", market.digest(it)))

    serve = Serve(backend_url(chain), state, tmp_path / "serve.log")
    agents = Agents(chain, market, {signers[i].address: signers[i] for i in PROVIDERS})
    kill_after = sorted(rng.sample(range(2, ORDERS - 2), KILLS))
    seq = 1
    try:
        url = serve.start()
        _announce(url, lsas(seq))
        agents.start()
        ids: dict[int, int] = {}
        n = 0
        while n < ORDERS:
            body, key, _ = requests[n]
            if kill_after and n == kill_after[0]:
                kill_after.pop(0)
                if rng.random() < 0.5:  # in flight: the kill lands inside the request or the loop turn after it
                    t = threading.Thread(target=lambda b=body, k=key: _post(url, b, k))
                    t.start()
                    time.sleep(rng.uniform(0.0, 0.15))
                    serve.kill()
                    t.join(30)
                else:  # between requests, after the loop has had a random while to act
                    time.sleep(rng.uniform(0.0, 0.3))
                    serve.kill()
                url = serve.start()
                seq += 1
                _announce(url, lsas(seq))
            oid = _post(url, body, key)
            assert oid is not None, "the engine died without being killed; see serve.log"
            assert ids.setdefault(n, oid) == oid
            n += 1
        # every order ends up assigned, run and settled by the providers
        deadline = time.monotonic() + 90
        while len(agents.done) < ORDERS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert serve.terminate() == 0  # SIGTERM: a clean stop
    finally:
        agents.stop.set()
        agents.join(10)
        serve.kill()
    assert serve.starts == KILLS + 1

    # ---- the verdict, from chain data alone
    idx = EventIndexer(chain.backend, {"ComputeMarket": (market.address, chain.abis["ComputeMarket"])},
                       start_block=dep.block)
    idx.sync()
    placed = idx.events("ComputeMarket", "OrderPlaced")
    by_digest = Counter(bytes.fromhex(str(e.args["digest"]).removeprefix("0x")) for e in placed)
    assert len(placed) == ORDERS
    assert set(by_digest) == {d for _, _, d in requests} and set(by_digest.values()) == {1}
    assert sorted(ids.values()) == sorted(int(e.args["order"]) for e in placed)
    per_order: dict[int, Counter] = {int(e.args["order"]): Counter() for e in placed}
    for e in idx.events("ComputeMarket"):
        if "order" in e.args:
            per_order[int(e.args["order"])][e.name] += 1
    moved = ("AcceptanceTimedOut", "OrderFailed")
    reassigned = Counter()
    for e in idx.events("ComputeMarket"):
        if e.name in moved and str(e.args["next"]) != ZERO:
            reassigned[int(e.args["order"])] += 1
    for oid, c in per_order.items():
        assert c["Assigned"] == 1 + reassigned[oid], (oid, c)
        assert c["Settled"] == 1 and c["Completed"] == 1, (oid, c)
        assert market.state(oid) == OrderState.SETTLED
    batches = idx.events("ComputeMarket", "BatchCommitted")
    assert len({e.args["batchId"] for e in batches}) == len(batches)
    # each batch landed with exactly its assignments, in its own transaction, and every first
    # assignment of an order names the batch that decided it: no batch without its assignments
    # and no engine assignment without its batch, whatever the kills interrupted
    by_batch = Counter()
    for e in idx.events("ComputeMarket", "Assigned"):
        (committed,) = [b for b in batches if b.args["batchId"] == e.args["batchId"]]
        assert committed.tx_hash == e.tx_hash, (e.args, committed.tx_hash)
        by_batch[e.args["batchId"]] += 1
    assert {e.args["batchId"]: int(e.args["orders"]) for e in batches} == dict(by_batch)
    idx.close()
    auditor = Auditor.open(chain, dep)
    try:
        assert auditor.escrow().balanced
    finally:
        auditor.close()
    assert serve.proc is not None and serve.proc.poll() is not None  # nothing left running


def backend_url(chain: Chain) -> str:
    return chain.backend.url
