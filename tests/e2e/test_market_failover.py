"""The whole market with real processes: orders matched by hardware, run, settled; an agent
SIGKILLed mid-lease and its lease failed over to the backup, with the money right.

Processes: anvil (``AnvilBackend``), the engine and its API (``cona serve`` as a child process,
``python -m marketplace.cli.serve``) and three ``cona-agent run`` daemons started by
``marketplace.demo.launch`` with real hardware profiles captured from real machines
(``provider_agent/profiles``): an H100 server (one 80 GB GPU), an MI100 box (four 32 GB GPUs)
and a dual EPYC CPU server (no GPU). Buyers post EIP-712 signed orders to ``POST /v1/orders``.

(a) A GPU order needing 40 GiB of VRAM can only go to the H100; a CPU order never goes to a
    node without CPUs; both run their SHA-256 workload, commit keccak(result bytes), upload
    the bytes (the SHA-256 of the known input) and settle; the escrow balances.
(b) A long nbody lease on a GPU: once it is Running and the workload started, its provider is
    SIGKILLed. The engine notices the missing heartbeats, ``fail`` is mined (pro-rata pay for
    the seconds served, a slice of the dead provider's stake to the buyer), the remainder goes
    to the backup, whose agent accepts it from the ``OrderFailed`` event alone (no new
    ``Assigned``), runs it to the same bytes a re-run here gives, completes and settles; the
    buyer's escrow splits exactly into the two payments and the refund.

Only correctness is asserted; the detection time (SIGKILL -> ``OrderFailed`` seen) is logged.
Every process is stopped in ``finally`` (and the agents also carry a parent-death signal).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from eth_utils import keccak

from marketplace import demo
from marketplace.chain.audit import Auditor
from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import ZERO, MarketParams, deploy_market
from marketplace.chain.market import Market, OrderState, cost
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.settings import PACKAGE_ROOT, ConaSettings, ProjectConfig
from marketplace.supervisor import Supervisor
from provider_agent.probe import discover_dump
from provider_agent.runtime.wasm import Limits, WasmRuntime
from provider_agent.workloads import load_workload
from tests.e2e.test_agent_daemon import settled_now

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

log = logging.getLogger(__name__)

ETH = 10**18
GWEI = 10**9
BUYER = 5  # dev account; providers take 10 and up (demo.FIRST_PROVIDER_ACCOUNT)
PROVIDERS = tuple(p for p in demo.DEMO_PROVIDERS if p.name in ("h100-server", "mi100-box", "epyc-cpu-server"))
NBODY_STEPS = b"3000000"  # ~4 s of wasm here: long enough to be killed mid-run, short enough to rerun
MAX_PRICE = 4_000_000 * GWEI


class Serve:
    """``cona serve`` as a child process in its own process group."""

    def __init__(self, rpc_url: str, state_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "marketplace.cli.serve", "--rpc-url", rpc_url, "--state-dir", str(state_dir),
             "--port", "0", "--period", "0.05", "--heartbeat-interval", "1", "--miss-limit", "3"],
            stdout=subprocess.PIPE, stderr=log_path.open("w"), cwd=PACKAGE_ROOT, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"cona serve did not start:\n{log_path.read_text()[-3000:]}")
        self.url = json.loads(line)["api"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _until(cond, timeout: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _order(api: str, market: Market, buyer, *, requirement: dict, module: str, data: bytes, fuel: int,
           attachment: str, duration: int = 600) -> int:
    req = {**requirement, "duration_s": duration}
    spec = {"requirement": req, "workload": {"module": module, "input": data.hex(), "fuel": fuel},
            "attachment": attachment}
    dc = int(DeviceClass.parse(req["device_class"]))
    it = market.intent(buyer.address, requirement=spec_digest(spec), device_class=dc, units=req.get("count", 1),
                       duration=duration, max_price=MAX_PRICE)
    body = {"intent": it.to_dict(), "signature": "0x" + market.sign(buyer, it).hex(), "spec": spec}
    r = httpx.post(f"{api}/v1/orders", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _events(market: Market, oid: int, name: str):
    return [e for e in market.contract.get_logs(event=name) if int(e.args["order"]) == oid]


def _result(api: str, oid: int) -> bytes:
    r = httpx.get(f"{api}/v1/orders/{oid}/result", timeout=10)
    return r.content if r.status_code == 200 else b""


def _output(blob: bytes) -> bytes:
    """The workload's stdout from the result bytes (status, 0, int32 exit code, stdout)."""
    status, rest = blob.split(b"\x00", 1)
    assert status == b"ok" and rest[:4] == b"\x00\x00\x00\x00", blob[:64]
    return rest[4:]


def test_orders_match_by_hardware_and_a_killed_agent_fails_over_to_its_backup(tmp_path):
    project = ProjectConfig.load(PACKAGE_ROOT)
    descs = {p.name: discover_dump(demo.PROFILES / p.name).descriptor for p in PROVIDERS}
    pool = ThreadPoolExecutor(1)
    rerun = pool.submit(  # the verifier's re-run of the nbody lease, while the market starts
        lambda: WasmRuntime().run(load_workload("nbody"), NBODY_STEPS, Limits(fuel=10**11, wall_seconds=120)))
    chain = Chain(AnvilBackend(PACKAGE_ROOT, project.mnemonic, accounts=demo.FIRST_PROVIDER_ACCOUNT + 3), project)
    state = tmp_path / "state"
    logs = tmp_path / "logs"
    supervisor = Supervisor(logs)
    serve = None
    try:
        dep = deploy_market(chain, state_dir=state, params=MarketParams(min_stake=ETH, accept_window=60,
                                                                        dispute_window=60))
        market = Market.from_deployment(chain, dep)
        buyer = chain.signers[BUYER]
        market.deposit(buyer, 10 * ETH)
        serve = Serve(chain.backend.url, state, logs / "serve.log")
        running = SimpleNamespace(settings=ConaSettings(data_dir=state), api_url=serve.url, supervisor=supervisor,
                                  chain=chain, deployment=dep)
        addresses = demo.launch(running, PROVIDERS, stake=2 * ETH, extra_args=("--withdraw-every", "1"))
        name_of = dict(zip(addresses, (p.name for p in PROVIDERS)))
        child_of = {a: c for a, c in zip(addresses, supervisor.children)}
        api = serve.url

        # ---- (a) matched by hardware, run, completed with the right bytes, settled
        gpu40 = _order(api, market, buyer, requirement={"device_class": "gpu", "count": 1, "min_memory_mib": 40960},
                       module="sha256", data=b"hello, world", fuel=10**8, attachment="4")
        cpu = _order(api, market, buyer, requirement={"device_class": "cpu", "count": 1},
                     module="sha256", data=b"the quick brown fox", fuel=10**8, attachment="0")
        for oid in (gpu40, cpu):
            _until(lambda: settled_now(market, oid), 60, f"order {oid} settled", logs)
        for oid, data in ((gpu40, b"hello, world"), (cpu, b"the quick brown fox")):
            o = market.order(oid)
            blob = _until(lambda: _result(api, oid), 10, f"order {oid}'s result uploaded", logs)
            assert keccak(blob) == o.result
            assert _output(blob).strip() == hashlib.sha256(data).hexdigest().encode()
            (settled,) = _events(market, oid, "Settled")
            assert settled.args["paid"] == cost(1, o.usage, o.price)
        gpu_host = descs[name_of[market.order(gpu40).provider]]
        assert any(d.device_class == DeviceClass.GPU and d.memory_mib >= 40960 for d in gpu_host.devices)
        assert name_of[market.order(gpu40).provider] == "h100-server"  # the only GPU with 40 GiB here
        cpu_host = descs[name_of[market.order(cpu).provider]]
        assert any(d.device_class == DeviceClass.CPU for d in cpu_host.devices)

        # the engine's view: every lease over, so no provider is shown loaded
        _until(lambda: all(p["load"] == 0.0 for p in httpx.get(f"{api}/v1/providers", timeout=5).json()), 15,
               "every provider's load back to 0 after its lease", logs)

        # ---- (b) a long GPU lease; its provider is SIGKILLed while it runs
        long = _order(api, market, buyer, requirement={"device_class": "gpu", "count": 1},
                      module="nbody", data=NBODY_STEPS, fuel=10**11, attachment="4")
        _until(lambda: market.state(long) == OrderState.RUNNING, 30, f"order {long} running", logs)
        o = market.order(long)
        primary, backups = o.provider, list(o.backups)
        assert name_of[primary] in ("h100-server", "mi100-box") and backups, (name_of[primary], backups)
        assert all(name_of[b] != "epyc-cpu-server" for b in backups)  # a CPU-only node is never a GPU backup
        victim = child_of[primary]
        _until(lambda: f"lease {long}: running nbody" in victim.log_path.read_text(), 15,
               f"{name_of[primary]} running the nbody workload", logs)
        escrow0 = cost(o.units, o.duration, o.max_price)
        stake0 = market.registry.provider(primary).stake
        buyer0 = market.balance(buyer.address)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        victim.process.wait(5)
        (failed,) = _until(lambda: _events(market, long, "OrderFailed"), 30, f"OrderFailed for {long}", logs)
        detected = time.monotonic() - killed
        log.warning("failover: SIGKILL -> OrderFailed seen after %.2f s (engine bound: 3 x 1 s + one turn)",
                    detected)
        print(f"failure detection: SIGKILL -> OrderFailed mined and seen in {detected:.2f} s")
        a = failed.args
        backup = a["next"]
        assert a["provider"] == primary and backup != ZERO and backup == backups[0]
        assert a["paid"] == cost(o.units, a["served"], o.price) and a["refund"] == 0
        (slash,) = [e for e in market.registry.contract.get_logs(event="Slashed")
                    if int(e.args["order"]) == long and e.args["provider"] == primary] or [None]
        assert slash is not None and market.registry.provider(primary).stake == stake0 - slash.args["amount"]
        assert a["compensation"] <= a["paid"]  # the buyer is compensated up to what it paid, no more
        assert not _events(market, long, "Assigned")[1:]  # the backup took it from OrderFailed alone

        _until(lambda: settled_now(market, long), 60, f"order {long} settled by the backup", logs)
        done = market.order(long)
        assert done.provider == backup
        blob = _until(lambda: _result(api, long), 10, "the backup's result uploaded", logs)
        want = rerun.result()
        assert want.ok and keccak(blob) == done.result == want.result_hash  # the verifier's re-run agrees
        assert _output(blob).split()[0] == b"-0.16907516382852448"  # the Jovian system's energy at t=0
        (settled,) = _events(market, long, "Settled")
        s = settled.args
        assert s["provider"] == backup and s["paid"] == cost(1, done.usage, done.price)
        assert escrow0 == a["paid"] + s["paid"] + s["refund"]  # every wei of the buyer's escrow accounted for
        # the buyer's compensation (the slash up to what it paid the failed provider) and its refund
        assert market.balance(buyer.address) == buyer0 + a["compensation"] + s["refund"]

        auditor = Auditor.open(chain, dep)
        try:
            assert auditor.escrow().balanced
        finally:
            auditor.close()
        for addr in addresses:
            if addr != primary:  # the living agents withdrew what they earned
                _until(lambda: market.balance(addr) == 0, 15, f"{name_of[addr]} withdrew", logs)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        supervisor.stop_all()
        if serve is not None:
            serve.stop()
        chain.close()
    survivors = [c.name for c in supervisor.children if c.process.poll() is None]
    assert not survivors and (serve is None or serve.proc.poll() is not None), survivors
