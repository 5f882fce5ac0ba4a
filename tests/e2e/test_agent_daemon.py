"""``cona-agent run`` as real processes against anvil: a lease served end to end and paid,
SIGKILL right after accept and right after complete (restart, same outcome, no transaction
twice), and a workload that runs out of fuel reported cleanly.

The engine side is driven from the test: orders are placed and assigned on chain with the
deployer's accounts (account 1 holds the orchestrator role), and ``EngineDouble`` below is a
TEST DOUBLE of the engine's HTTP interface - only the endpoints an agent calls
(``/v1/deployment``, ``/v1/lsas``, ``/v1/heartbeats``, ``/v1/orders/{id}/spec``,
``/v1/orders/{id}/result``), checking uploaded results against the chain as the engine does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_utils import keccak

from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, OrderState, wait_until
from marketplace.convergence.heartbeat import Heartbeat, signer_of
from marketplace.convergence.lsa import decode_lsa, recover_originator
from marketplace.engine.spec import Spec
from marketplace.settings import PACKAGE_ROOT, ProjectConfig
from provider_agent import keystore
from provider_agent.journal import Journal

pytestmark = pytest.mark.e2e

ETH = 10**18
PRICE = 36 * 10**14  # 1e12 wei per unit-second
PROFILE = PACKAGE_ROOT / "provider_agent" / "profiles" / "h100-server"
AGENT = Path(os.environ.get("VIRTUAL_ENV", PACKAGE_ROOT / ".venv")) / "bin" / "cona-agent"


class EngineDouble:
    """Test double of the engine's HTTP interface (see the module docstring)."""

    def __init__(self, dep, market: Market) -> None:
        self.dep, self.market = dep, market
        self.specs: dict[int, dict] = {}
        self.results: dict[int, bytes] = {}
        self.lsas: list[bytes] = []
        self.heartbeats: list[Heartbeat] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/deployment":
                    return self._send(200, outer.dep.to_dict())
                parts = self.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["v1", "orders"] and parts[3] == "spec":
                    spec = outer.specs.get(int(parts[2]))
                    return self._send(200, spec) if spec else self._send(404, {"title": "no such order"})
                self._send(404, {"title": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/lsas":
                    outer.lsas.append(body)
                    return self._send(202, {"outcome": "installed", "reason": ""})
                if self.path == "/v1/heartbeats":
                    outer.heartbeats.append(Heartbeat.from_dict(json.loads(body)))
                    return self._send(202, {"outcome": "ok"})
                parts = self.path.strip("/").split("/")
                if len(parts) == 4 and parts[3] == "result":
                    oid = int(parts[2])
                    if keccak(body) != outer.market.order(oid).result:
                        return self._send(409, {"title": "result does not match the chain"})
                    outer.results[oid] = body
                    return self._send(202, {"outcome": "stored"})
                self._send(404, {"title": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    project = ProjectConfig.load(PACKAGE_ROOT)
    chain = Chain(AnvilBackend(project.root, project.mnemonic, accounts=10), project)
    dep = deploy_market(chain, params=MarketParams(min_stake=ETH, accept_window=60, dispute_window=60))
    market = Market.from_deployment(chain, dep)
    engine = EngineDouble(dep, market)
    yield chain, market, engine
    engine.close()
    chain.close()


class AgentProc:
    def __init__(self, chain: Chain, engine: EngineDouble, account: int, tmp: Path) -> None:
        self.tmp = tmp
        self.key = bytes(chain.backend.accounts[account].key)
        (tmp / "pass").write_text("agent passphrase\n")
        keystore.create(tmp / "ks.json", "agent passphrase", key=self.key, scrypt_n=2**14)
        self.address = keystore.address(tmp / "ks.json")
        self.args = [str(AGENT), "run", "--keystore", str(tmp / "ks.json"), "--passphrase-file", str(tmp / "pass"),
                     "--profile", str(PROFILE), "--engine", engine.url, "--rpc-url", chain.backend.url,
                     "--attachment", "n1", "--domain", "7", "--price", f"gpu={PRICE}", "--stake", str(2 * ETH),
                     "--state-dir", str(tmp / "state"), "--heartbeat-interval", "0.5", "--poll-interval", "0.1",
                     "--withdraw-every", "0.5"]
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self, crash_at: str | None = None) -> None:
        env = dict(os.environ)
        env.pop("CONA_AGENT_CRASH_AT", None)
        if crash_at:
            env["CONA_AGENT_CRASH_AT"] = crash_at
        self.runs += 1
        log = (self.tmp / f"agent-{self.runs}.log").open("w")
        self.proc = subprocess.Popen(self.args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return "\n".join((self.tmp / f"agent-{i}.log").read_text() for i in range(1, self.runs + 1))

    def wait_dead(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _until(cond, timeout: float, what: str, agent: AgentProc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if agent.proc.poll() is not None and agent.proc.returncode not in (0, None):
            break
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; agent log:\n{agent.log()[-4000:]}")


def _place(chain: Chain, market: Market, engine: EngineDouble, provider: str, *, module: str, data: bytes,
           fuel: int) -> int:
    buyer, orchestrator = chain.signers[6], chain.signers[1]
    raw = {"requirement": {"device_class": "gpu", "count": 1}, "attachment": "n1",
           "workload": {"module": module, "input": data.hex(), "fuel": fuel}}
    spec = Spec.from_dict(raw)
    it = market.intent(buyer.address, requirement=spec.digest(), device_class=2, units=1, duration=600,
                       max_price=PRICE)
    market.deposit(buyer, it.escrow())
    oid = market.place(buyer, it)
    engine.specs[oid] = raw
    market.assign(orchestrator, oid, provider, PRICE)
    return oid


def _provider_txs(chain: Chain, market: Market, provider: str) -> list[tuple[str, int]]:
    """(market function name, receipt status) of every transaction the provider sent to the market."""
    names = {}
    for fn in ("accept", "complete", "settle", "withdraw"):
        item = market.contract.abi.function(fn, {"accept": 1, "complete": 3, "settle": 1, "withdraw": 1}[fn])
        types = ",".join(i["type"] for i in item["inputs"])
        names["0x" + keccak(f"{fn}({types})".encode())[:4].hex()] = fn
    out = []
    for n in range(chain.backend.block_number() + 1):
        block = chain.backend.request("eth_getBlockByNumber", [hex(n), True])
        for tx in block["transactions"]:
            if tx["from"].lower() == provider.lower() and (tx["to"] or "").lower() == market.address.lower():
                rec = chain.backend.request("eth_getTransactionReceipt", [tx["hash"]])
                out.append((names.get(tx["input"][:10], tx["input"][:10]), int(rec["status"], 16)))
    return out


def settled_now(market: Market, oid: int) -> bool:
    """Whether ``oid`` is settled; once Completed, the chain's clock is moved past its dispute window
    (at least a minute by the contract's bound) so the agent may settle without the test waiting it out."""
    o = market.order(oid)
    if o.state == OrderState.COMPLETED:
        wait_until(market, o.completed_at + market.terms(o.terms).dispute_window)
    return o.state == OrderState.SETTLED


def _settled(market: Market, oid: int, agent: AgentProc) -> None:
    _until(lambda: settled_now(market, oid), 90, f"order {oid} settled", agent)


def test_lease_served_end_to_end_and_paid_and_out_of_fuel_reported(world, tmp_path):
    chain, market, engine = world
    agent = AgentProc(chain, engine, 3, tmp_path)
    agent.start()
    try:
        _until(lambda: market.registry.provider(agent.address).status.name == "ACTIVE", 60, "registration", agent)
        _until(lambda: any(recover_originator(r) == bytes.fromhex(agent.address[2:]) for r in engine.lsas), 30,
               "a signed LSA", agent)
        oid = _place(chain, market, engine, agent.address, module="sha256", data=b"abc", fuel=10**8)
        _settled(market, oid, agent)
        order = market.order(oid)
        assert order.usage == 1 and order.result == keccak(engine.results[oid])
        assert engine.results[oid] == (b"ok\x00\x00\x00\x00\x00"
                                       b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n")
        # paid, then withdrawn by the daemon: cost(1 unit-second at PRICE) = 1e12, less the 2% fee
        _until(lambda: market.balance(agent.address) == 0 and any(
            e.args["account"] == agent.address for e in market.contract.get_logs(event="Withdrawn")), 30,
            "a withdrawal", agent)
        # availability went down while it ran and back up after: LSAs with growing sequence numbers
        lsas = [decode_lsa(r) for r in engine.lsas if recover_originator(r) == bytes.fromhex(agent.address[2:])]
        seqs = [x.header.sequence for x in lsas]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        gpu_free = [a.free_milli for x in lsas for a in x.availability if a.device_class.name == "GPU"]
        assert 0 in gpu_free and gpu_free[0] == gpu_free[-1] > 0  # busy while running, free again after
        hbs = [h for h in engine.heartbeats if h.provider == agent.address]
        assert len(hbs) >= 2 and all(signer_of(h) == agent.address for h in hbs)

        starved = _place(chain, market, engine, agent.address, module="nbody", data=b"1000000", fuel=50_000)
        _settled(market, starved, agent)
        assert engine.results[starved].startswith(b"out_of_fuel\x00") and market.order(starved).usage == 1
        assert "out_of_fuel" in agent.log()
        assert sorted(f for f, _ in _provider_txs(chain, market, agent.address) if f != "withdraw") == \
            ["accept", "accept", "complete", "complete", "settle", "settle"]
    finally:
        agent.stop()
    assert agent.proc.returncode == 0, agent.log()[-3000:]


@pytest.mark.parametrize("account,crash_at", [(4, "after:accepted"), (5, "after:completed"),
                                              (7, "before:completed")])
def test_sigkill_and_restart_neither_repeats_nor_loses_anything(world, tmp_path, account, crash_at):
    chain, market, engine = world
    agent = AgentProc(chain, engine, account, tmp_path)
    agent.start(crash_at=crash_at)
    try:
        _until(lambda: market.registry.provider(agent.address).status.name == "ACTIVE", 60, "registration", agent)
        oid = _place(chain, market, engine, agent.address, module="matmul", data=b"40 7", fuel=10**9)
        assert agent.wait_dead() == -signal.SIGKILL, agent.log()[-3000:]
        state = market.state(oid)
        assert state == (OrderState.RUNNING if crash_at == "after:accepted" else OrderState.COMPLETED)
        agent.start()  # the same state directory, no crash this time
        _settled(market, oid, agent)
        assert market.order(oid).result == keccak(engine.results[oid])
        txs = _provider_txs(chain, market, agent.address)
        assert all(status == 1 for _, status in txs), txs
        assert sorted(f for f, _ in txs if f != "withdraw") == ["accept", "complete", "settle"]
        lease = Journal(tmp_path / "state").lease(oid)
        assert lease.has("settled") and lease.has("uploaded")
    finally:
        agent.stop()
