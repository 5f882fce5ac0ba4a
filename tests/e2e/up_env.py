"""``cona up`` as a real process, and buyers that order through its API, for the durability and
load-and-fault tests.

``Up`` starts ``cona up`` (its own session, output in a log file), waits for "CONA is up", and
can stop it as Ctrl-C does, or kill it and every process under it with SIGKILL at once (the
whole tree, nothing graceful). ``Buyer`` is a fresh key funded from a development account
through the market's ``/rpc`` (signed raw transactions only), with money deposited in the
market; it signs EIP-712 order intents with nonces it counts itself (the contract takes a
buyer's nonces in sequence) and places them with ``POST /v1/orders`` under an
``Idempotency-Key``. ``Clients`` runs one closed-loop client per buyer in a thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace.chain.backends import dev_accounts, free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.market import Market
from marketplace.chain.writer import Signer, TxRequest
from marketplace.client import ApiClient
from marketplace.errors import ConaError
from marketplace.engine.spec import Spec
from marketplace.settings import PACKAGE_ROOT, ConaSettings

ETH = 10**18
#: the development account that funds the buyers (never a demo provider's, see marketplace.demo)
FUNDER_ACCOUNT = 19
#: above every demo provider's GPU price (3e15 wei per GPU-hour, the H100's)
MAX_PRICE = 4 * 10**15


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - out
        out |= frontier
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Up:
    """``cona up`` on ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: Path, log_path: Path, *args: str, providers: int = 2, port: int | None = None,
                 timeout: float = 120.0, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        argv = [sys.executable, "-m", "marketplace.cli.main", "up", "--port", str(self.port), "--providers",
                str(providers), "--data-dir", str(data_dir), *args]
        run_env = {**os.environ, "CONA_CHAIN": "embedded", **(env or {})}
        run_env.pop("CONA_DATA_DIR", None)
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(argv, cwd=PACKAGE_ROOT, env=run_env, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "CONA is up" not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"cona up exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill_tree()
                raise AssertionError(f"cona up was not up in {timeout:.0f} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def agent_pid(self, profile: str) -> int:
        """The pid of the demo agent advertising ``profile``."""
        found = [p for p in descendants(self.pid) if "provider_agent.cli" in cmdline(p) and
                 f"/{profile} " in cmdline(p)]
        assert len(found) == 1, f"agent {profile}: {found}"
        return found[0]

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, and wait: cona up stops its agents, the API, the engine and the chain."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.kill_tree()

    def kill_tree(self) -> set[int]:
        """SIGKILL cona up and every process under it at once; returns the pids killed."""
        pids = descendants(self.pid) | ({self.pid} if self.process.poll() is None else set())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        return pids


@dataclass
class Buyer:
    """A funded buyer key with money in the market; ``nonce`` is its next intent nonce."""

    signer: Signer
    market: Market
    nonce: int

    @classmethod
    def fund(cls, chain: Chain, market: Market, n: int, *, eth: int = 2, deposit: int = ETH) -> list["Buyer"]:
        """``n`` new buyers, each sent ``eth`` ETH by the funder and ``deposit`` wei deposited in the market."""
        project = ConaSettings().project()
        funder = Signer(dev_accounts(project.mnemonic, FUNDER_ACCOUNT + 1)[FUNDER_ACCOUNT].key)
        buyers = [cls(Signer(os.urandom(32)), market, 0) for _ in range(n)]
        chain.writer.transact_many(funder, [TxRequest(to=b.signer.address, value=eth * ETH, gas=21_000)
                                            for b in buyers])
        for b in buyers:
            market.deposit(b.signer, deposit)
        return buyers

    @property
    def address(self) -> str:
        return self.signer.address

    def order(self, tag: str, *, deadline: int, duration: int = 60, share_milli: int = 250) -> tuple[dict[str, Any], str]:
        """A signed order for a share of one GPU near Frankfurt (GEANT node 4; the H100, L40S and MI100
        demo providers sell GPUs), its body and Idempotency-Key; takes the next nonce."""
        spec = Spec.from_dict({"requirement": {"device_class": "gpu", "count": 1, "share_milli": share_milli,
                                               "duration_s": duration, "features": []},
                               "workload": {"module": "sha256", "input": tag.encode().hex(), "fuel": 10_000_000},
                               "attachment": "4"})
        m = self.market
        intent = m.intent(self.address, requirement=spec.digest(), device_class=int(spec.requirement.device_class),
                          units=1, duration=duration, max_price=MAX_PRICE, nonce=self.nonce, deadline=deadline)
        self.nonce += 1
        body = {"intent": intent.to_dict(), "signature": "0x" + m.sign(self.signer, intent).hex(),
                "spec": spec.to_dict()}
        return body, f"{self.address}:{intent.nonce}"


def rpc_chain(api: str) -> tuple[Chain, Market]:
    """The market's chain through its ``/rpc`` (no keys of its own) and the deployed market."""
    with ApiClient(api, timeout=10) as client:
        dep = client.deployment()
    chain = Chain.open(ConaSettings(chain="rpc", rpc_url=f"{api}/rpc"))
    return chain, Market.from_deployment(chain, dep)


def audit(api: str, market: str, *args: str) -> tuple[int, Any]:
    """``cona audit ARGS --json`` as an outsider runs it: the chain alone (the market's /rpc) and the
    market's address, no state of its own; (exit status, the JSON document)."""
    proc = subprocess.run([sys.executable, "-m", "marketplace.cli.main", "audit", *args, "--rpc-url", f"{api}/rpc",
                           "--market", market, "--no-cache", "--json"], cwd=PACKAGE_ROOT, capture_output=True,
                          text=True, timeout=120)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"cona audit {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}") from None


class Clients:
    """One closed-loop client per buyer, in threads: each signs an order for ``share_milli`` of a GPU,
    places it, and places the next once the engine has matched it (a lease on chain), until ``stop``.
    ``placed``: Idempotency-Key -> the order id the API answered; ``bodies``: key -> the signed order
    sent; ``cut``: key -> (buyer, signed body, error) of a request that got no answer (the client
    stops there: its next nonce hangs on it)."""

    def __init__(self, api: str, buyers: list[Buyer], deadline: int, *, share_milli: int = 125,
                 poll: float = 0.1) -> None:
        self.placed: dict[str, int] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.cut: dict[str, tuple[Buyer, dict[str, Any], str]] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(api, b, deadline, share_milli, poll),
                                          name=f"client-{i}", daemon=True) for i, b in enumerate(buyers)]
        for t in self._threads:
            t.start()

    def _run(self, api: str, buyer: Buyer, deadline: int, share_milli: int, poll: float) -> None:
        with ApiClient(api, timeout=60) as client:
            while not self._stop.is_set():
                body, key = buyer.order(f"order {buyer.address} {buyer.nonce}", deadline=deadline,
                                        share_milli=share_milli)
                self.bodies[key] = body
                try:
                    oid = self.placed[key] = client.place_order(body, key)
                    while not self._stop.is_set() and client.order(oid)["state"] == "open":
                        time.sleep(poll)
                except ConaError as exc:
                    if key not in self.placed:
                        self.cut[key] = (buyer, body, str(exc))
                    return

    def stop(self, timeout: float = 90.0) -> None:
        """Stop placing; returns once every client has its last answer (or gave up on it)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"clients still waiting for an answer: {alive}"

    @property
    def ids(self) -> list[int]:
        return list(self.placed.values())
