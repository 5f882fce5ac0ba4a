"""``cona up --domains N``: a decentralised market on one machine, one engine process per domain.

``Launch(settings, domains=N, port=P).start()`` builds, in order:

1. **the chain**, one for all: a managed anvil (the embedded chain lives inside one process, and
   here no engine may be the one whose death takes the chain with it), or the node ``--rpc-url``
   names; the market is deployed on it and recorded in the state directory;
2. **the plan**: N domains over the topology (``routing.regions.plan_domains``), seeded by the
   demo providers' nodes in the order ``DOMAIN_HOMES``: 0 (NL), 7 (FR), 34 (UK), 9 (IT), 4 (DE),
   and the peerings are the pairs of regions a link joins. With three domains, domain 1 holds the
   CPU server (NL: it runs buyers' modules and containers) and the H100 (DE), domain 2 the L40S
   (FR) and the Ascend (IT), domain 3 the MI100 (UK): the README's walkthroughs run as written
   (its CPU orders name domain 1, as in the one-engine market, and the contributor joins domain 3);
3. **one orchestrator key per domain**: made here, kept in a V3 keystore
   (``<state>/domains/<d>/orchestrator.json``, passphrase file 0600), funded for gas, and listed on
   chain by the market's timelock (``Market.set_orchestrator``: applied at once on a development
   chain) — no engine signs with another's key;
4. **the federation document** (``<state>/federation.json``): each domain's API, peering address,
   orchestrator and home; the links with their latency; the peering timers (hello 0.2 s, hold 1 s);
5. **one engine per domain**: ``cona serve --domain d --federation F`` as a supervised child with
   its own state directory (``<state>/domains/<d>``); domain 1's API listens on ``port`` (so the
   README's ``$API`` is domain 1's engine), the others on free ports;
6. **the demo agents** (``marketplace.demo``), each in the domain of the node it attaches to and
   pointed at that domain's engine, talking to the chain directly (an engine that dies does not
   cut its providers off the chain).

``stop`` takes everything down in reverse. ``kill(d)`` and ``restart(d)`` SIGKILL and restart one
engine with the same arguments and state (the kill test).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from marketplace.chain.backends import free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, deploy_market, save_deployment
from marketplace.chain.market import Market
from marketplace.chain.writer import Signer
from marketplace.demo import DEMO_PROVIDERS, DemoProvider
from marketplace.errors import ConfigError
from marketplace.federation.config import DEFAULT_TIMERS, DomainEntry, Federation
from marketplace.routing import RoutingTable, load_topology
from marketplace.routing.regions import DomainPlan, plan_domains
from marketplace.settings import DEFAULT_TOPOLOGY, ConaSettings
from marketplace.supervisor import Child, ProcessFailed, Supervisor
from provider_agent import keystore

log = logging.getLogger(__name__)

ETH = 10**18
#: gas money for each engine's orchestrator key, from the deployer's development account
ORCHESTRATOR_FUNDS = 100 * ETH
READY_TIMEOUT_S = 90.0
#: the homes' seeds, domain 1 first (see the module docstring): the demo providers' nodes, the CPU
#: server's first, so domain 1 (``$API``) has the provider the walkthroughs' CPU orders need
DOMAIN_HOMES = ("0", "7", "34", "9", "4")


class Launch:
    """The chain, N engines and the demo agents of ``cona up --domains N`` (see the module docstring)."""

    def __init__(self, settings: ConaSettings, *, domains: int, port: int | None = None,
                 topology: Path = DEFAULT_TOPOLOGY) -> None:
        if domains < 1:
            raise ConfigError("a market has at least one domain", field="domains")
        if settings.chain == "embedded":
            settings = settings.model_copy(update={"chain": "anvil"})
        self.settings = settings
        self.n = domains
        self.port = settings.api_port if port is None else port
        self.port = self.port or free_port()
        self.topology = topology
        self.supervisor = Supervisor(settings.state_dir / "logs", grace=10.0)
        self.chain: Chain | None = None
        self.deployment: Deployment | None = None
        self.plan: DomainPlan | None = None
        self.federation: Federation | None = None
        self.fed_path = settings.state_dir / "federation.json"
        self.engines: dict[int, Child] = {}
        self.argv: dict[int, list[str]] = {}
        self.rpc_url = ""

    @property
    def api_url(self) -> str:
        """Domain 1's engine: the market's front door (``$API`` in the README)."""
        assert self.federation is not None
        return self.federation.entry(1).api

    # -- lifecycle

    def start(self) -> "Launch":
        from marketplace.host import open_chain

        try:
            self.chain = open_chain(self.settings)
            self.rpc_url = getattr(self.chain.backend, "url", "") or ""
            if not self.rpc_url:
                raise ConfigError("the engines of a multi-domain market need a chain they reach over JSON-RPC",
                                  field="chain", hint="--chain anvil (the default here) or --rpc-url URL")
            self.deployment = deploy_market(self.chain, state_dir=self.settings.state_dir)
            self.plan = plan_domains(RoutingTable(load_topology(self.topology)), self.n, DOMAIN_HOMES)
            self.federation = self._federate()
            for d in sorted(self.federation.domains):
                self.engines[d] = self.supervisor.start(f"engine-{d}", self.argv[d])
            self._wait_ready(list(self.federation.domains))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.supervisor.stop_all()
        if self.chain is not None:
            self.chain.close()
            self.chain = None

    def __enter__(self) -> "Launch":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def kill(self, domain: int) -> None:
        """SIGKILL one engine: no goodbye to its peers, its state left as it was."""
        self.supervisor.kill(self.engines[domain])

    def restart(self, domain: int) -> None:
        """Start one engine again with the same arguments and state directory."""
        child = self.engines[domain]
        if child.alive():
            child.process.send_signal(signal.SIGTERM)
            child.process.wait(timeout=30)
        self.supervisor.children.remove(child)
        self.engines[domain] = self.supervisor.start(f"engine-{domain}", self.argv[domain])
        self._wait_ready([domain])

    # -- the parts

    def _federate(self) -> Federation:
        """Keys, their registration and funding, the document, and each engine's command line."""
        assert self.chain is not None and self.deployment is not None and self.plan is not None
        dep = self.deployment
        market = Market.from_deployment(self.chain, dep)
        operator = next(s for s in self.chain.signers if s.address == dep.roles["operator"])
        entries = {}
        for d in self.plan.domains:
            home = self.settings.state_dir / "domains" / str(d)
            home.mkdir(parents=True, exist_ok=True)
            key, key_file, phrase_file = self._key(home)
            signer = Signer(key)
            market.set_orchestrator(operator, signer.address)
            self.chain.writer.transact(operator, to=signer.address, value=ORCHESTRATOR_FUNDS,
                                       label=f"gas for domain {d}'s engine")
            save_deployment(dep, home)
            port = self.port if d == 1 else free_port()
            entries[d] = DomainEntry(d, f"http://{self.settings.api_host}:{port}", "127.0.0.1", free_port(),
                                     signer.address, self.plan.home(d))
            self.argv[d] = [sys.executable, "-m", "marketplace.cli.main", "serve", "--rpc-url", self.rpc_url,
                            "--data-dir", str(home), "--port", str(port), "--orchestrator-key-file", str(key_file),
                            "--passphrase-file", str(phrase_file), "--domain", str(d),
                            "--federation", str(self.fed_path)]
            log.info("domain %d: home node %s, orchestrator %s, API port %d", d, self.plan.home(d), signer.address,
                     port)
        fed = Federation(dep.chain_id, dep.contracts["ComputeMarket"], entries,
                         tuple((link.a, link.b, link.latency_ms) for link in self.plan.links), dict(DEFAULT_TIMERS))
        fed.save(self.fed_path)
        return fed

    @staticmethod
    def _key(home: Path) -> tuple[bytes, Path, Path]:
        phrase_file = home / "passphrase"
        fd = os.open(phrase_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(16) + "\n")
        key = secrets.token_bytes(32)
        key_file = home / "orchestrator.json"
        key_file.unlink(missing_ok=True)
        keystore.create(key_file, phrase_file.read_text().strip(), key=key, scrypt_n=2**14)
        return key, key_file, phrase_file

    def _wait_ready(self, domains: list[int]) -> None:
        """Until every engine's API answers ``/readyz`` (or one exits, or the timeout passes)."""
        assert self.federation is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = set(domains)
        with httpx.Client(timeout=2.0) as http:
            while waiting:
                for d in sorted(waiting):
                    child = self.engines[d]
                    if not child.alive():
                        raise ProcessFailed(f"engine of domain {d} exited with status {child.process.returncode}",
                                            hint=f"its log ends with:\n{child.tail()}")
                    try:
                        if http.get(f"{self.federation.entry(d).api}/readyz").status_code == 200:
                            waiting.discard(d)
                    except httpx.HTTPError:
                        pass
                if waiting and time.monotonic() > deadline:
                    raise ProcessFailed(f"engines of domains {sorted(waiting)} not ready after "
                                        f"{READY_TIMEOUT_S:.0f} s", hint=f"see {self.supervisor.log_dir}")
                time.sleep(0.1)

    def demo_providers(self, count: int) -> tuple[DemoProvider, ...]:
        """The first ``count`` demo providers, each in the domain of the node it attaches to."""
        assert self.plan is not None
        return tuple(dataclasses.replace(p, domain=self.plan.region[p.attachment]) for p in DEMO_PROVIDERS[:count])

    def engine_urls(self) -> dict[int, str]:
        assert self.federation is not None
        return {d: e.api for d, e in self.federation.domains.items()}

    def info(self) -> dict[str, Any]:
        assert self.federation is not None and self.plan is not None
        return {"domains": {str(d): {**e.to_dict(), "pid": self.engines[d].pid,
                                     "neighbours": sorted(self.federation.neighbours(d))}
                            for d, e in sorted(self.federation.domains.items())},
                "rpc_url": self.rpc_url, "federation": str(self.fed_path)}
