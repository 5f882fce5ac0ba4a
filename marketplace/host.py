"""The host: one CONA process that runs the market's engine and its web API against a chain.

The composition root of the service. ``cona up`` is a host with its own chain (the durable
embedded chain, or a managed anvil) plus demo provider agents as supervised child processes;
``cona serve`` is a host attached to a chain that outlives it. A ``Host`` builds the parts in
this order and ``start`` returns once the API listens:

0. the data directory (``marketplace.datadir``), held for the process's lifetime: a second
   host on it is refused; ``HostConfig.fresh`` wipes the market's state in it first;
1. the chain connection: the embedded chain kept in ``<data dir>/chain`` (every block fsynced
   before it is answered, replayed at the next start), or a node; the keys of the keystores
   given (admin, orchestrator), else on a local development node the project's development
   accounts;
2. the market: the deployment recorded in the data directory when it fits the chain, else
   deployed (``HostConfig.deploy``: on a development chain by default, elsewhere only when
   asked, with the admin key paying and owning it);
3. the engine's state directory ``<data dir>/engine/<chain id>``, claimed for this chain and
   market (``market.json``: a directory left by another chain or market is started afresh);
   every write the engine signs is journalled there before it is sent, so a restart re-sends
   the same bytes instead of a second transaction;
4. the engine (signing as the deployment's orchestrator) and its loop in a thread;
5. in a multi-domain market (``HostConfig.federation``), the engine's link to the other
   domains' engines (``marketplace.federation.link``: its flooding peer, domain speaker and
   handovers);
6. the API (``marketplace.api.app``) under uvicorn in another thread, with the health monitor
   (``marketplace.health``) watching the chain and the engine loop for ``/healthz``.

``stop`` takes them down: the engine loop (the turn in progress completes), the supervised
children, the API, the chain, the data directory. It is idempotent,
and a ``start`` that fails stops what it had started before raising: nothing is left half up.

Where the process-wide parts go: the engine and the API are built in ``_engine`` and
``_api_state``, from this host's chain and deployment, so a part both need (one event index
of the market's logs for the whole process) is made once here and handed to each.

Runtime tuning (``tune`` and ``settle_heap``): the API's event loop shares the interpreter
with the engine loop and, with the embedded chain, py-evm; see the comments there for the
figures behind each setting.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Sequence

import uvicorn

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import dev_accounts, free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, deploy_market, load_deployment
from marketplace.chain.writer import IdempotencyJournal, Signer
from marketplace.datadir import DataDir, claim_for_market, market_mark
from marketplace.engine.service import Engine, EngineConfig
from marketplace.errors import ChainMismatch, ChainUnavailable, ConaError, ConfigError, NotFound
from marketplace.health import HealthConfig, HealthMonitor
from marketplace.settings import DEFAULT_TOPOLOGY, DEV_CHAIN_IDS, ConaSettings
from marketplace.supervisor import Supervisor

log = logging.getLogger(__name__)

#: chain ids of development nodes whose funded accounts come from the project mnemonic
LOCAL_CHAIN_IDS = (31337, 1337)
SWITCH_INTERVAL_S = 0.0005
GC_GEN0_THRESHOLD = 50_000
#: how long the API may take to listen, and each thread to stop
LISTEN_TIMEOUT_S = 20.0
JOIN_TIMEOUT_S = 10.0


class Deploy(StrEnum):
    """When a host deploys the market (it always uses the recorded deployment when that fits the chain)."""

    NEVER = "never"  # the record must exist (``cona serve`` without ``--deploy``)
    ONCE = "once"  # deploy when no record fits the chain, else reuse it (``--deploy``)
    DEV = "dev"  # ONCE on a local development chain, NEVER elsewhere (``cona up``'s default)


@dataclass(frozen=True)
class HostConfig:
    """What a host runs: where the API listens, the market, and how the engine loop turns."""

    #: the API port (None: ``settings.api_port``; 0: a free port)
    port: int | None = None
    #: when to deploy the market's contracts (see ``Deploy``)
    deploy: Deploy = Deploy.DEV
    #: wipe the market's state in the data directory first (``cona up --fresh``)
    fresh: bool = False
    topology: Path = DEFAULT_TOPOLOGY
    #: seconds between two turns of the engine loop
    engine_period: float = 0.05
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: the orchestrator's V3 keystore (else a development key holding the role, on local chains)
    orchestrator_key_file: Path | None = None
    passphrase_file: Path | None = None
    #: a multi-domain market: the federation document and this engine's domain in it
    federation: Path | None = None
    domain: int | None = None
    #: the admin's (deployer's) V3 keystore, which pays for and owns a deployment made here
    admin_key_file: Path | None = None
    #: its passphrase file (default: ``passphrase_file``)
    admin_passphrase_file: Path | None = None
    #: why this host needs a local development chain (refused elsewhere, before anything is deployed)
    dev_chain_for: str | None = None
    health: HealthConfig = field(default_factory=HealthConfig)


class Host:
    """The chain, the deployment, the engine and its loop, the API server and the supervised
    children of one process (see the module docstring for the order and the invariants)."""

    def __init__(self, settings: ConaSettings, config: HostConfig | None = None) -> None:
        self.settings = settings
        self.config = config or HostConfig()
        self.data = DataDir(settings.state_dir)
        self.supervisor = Supervisor(self.data.logs_dir)
        self.chain: Chain | None = None
        self.deployment: Deployment | None = None
        self.engine_dir: Path | None = None
        self.engine: Engine | None = None
        self.orchestrator: Signer | None = None
        self.link: Any = None
        self.health: HealthMonitor | None = None
        self.server: uvicorn.Server | None = None
        self.api_url = ""
        self._stop_engine = threading.Event()
        self._engine_thread: threading.Thread | None = None
        self._api_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "Host":
        """Bring the host up; returns once the API listens (on failure, stops what it started)."""
        tune()
        try:
            self.data.claim(fresh=self.config.fresh)
            keys = self._keys()
            self.chain = open_chain(self.settings, keys=[k for k in (keys.admin, keys.orchestrator) if k is not None],
                                    data_dir=self.data.chain_dir if self.settings.chain == "embedded" else None)
            self._check_dev_chain(self.chain)
            self.deployment, deployed = self._deployment(self.chain)
            self.engine_dir = self.data.engine_dir(self.deployment.chain_id)
            claim_state(self.engine_dir, self.deployment, fresh=deployed)
            # every chain a host runs on outlives it (the embedded one in its data directory)
            self.chain.writer.journal = IdempotencyJournal(self.engine_dir / "journal.jsonl")
            self.orchestrator = orchestrator_signer(self.chain, self.deployment, keys.orchestrator,
                                                    self.config.orchestrator_key_file)
            self.engine = self._engine()
            if self.config.federation is not None:
                self.link = self._link(keys.orchestrator)
            self._engine_thread = threading.Thread(target=self.engine.run,
                                                   args=(self._stop_engine, self.config.engine_period),
                                                   name="cona-engine", daemon=True)
            self._engine_thread.start()
            self._serve(create_app(self._api_state()))
        except BaseException:
            self.stop()
            raise
        log.info("host up: API at %s, chain %d, engine state in %s", self.api_url, self.deployment.chain_id,
                 self.engine_dir)
        return self

    def stop(self) -> None:
        """The engine loop (the turn in progress completes; from here nothing is assigned, timed out or
        failed), the supervised children, the API, the chain, the data directory. Idempotent.

        The loop stops first: stopping the agents one after another takes seconds, and a loop still
        turning would declare the first ones stopped failed and fail their leases over, a slash for
        a clean Ctrl-C."""
        self._stop_engine.set()
        if self._engine_thread is not None:
            self._engine_thread.join(timeout=JOIN_TIMEOUT_S)
            self._engine_thread = None
        self.supervisor.stop_all()
        if self.server is not None:
            self.server.should_exit = True
            if self._api_thread is not None:
                self._api_thread.join(timeout=JOIN_TIMEOUT_S)
            self.server = None
        if self.link is not None:
            self.link.stop()
            self.link = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self.chain is not None:
            self.chain.close()
            self.chain = None
        self.data.release()

    def __enter__(self) -> "Host":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def info(self) -> dict[str, Any]:
        """What a script needs to use the host (``cona serve`` prints it as one JSON line)."""
        assert self.deployment is not None and self.orchestrator is not None, "the host is not started"
        return {"api": self.api_url, "chain_id": self.deployment.chain_id, "orchestrator": self.orchestrator.address,
                "market": self.deployment.contracts["ComputeMarket"], "engine_dir": str(self.engine_dir),
                "pid": os.getpid()}

    # -- the parts -----------------------------------------------------------------------

    def _keys(self) -> "HostKeys":
        """The keystores given, unlocked once (scrypt is slow on purpose)."""
        cfg = self.config
        orchestrator = unlock_key(cfg.orchestrator_key_file, cfg.passphrase_file, "orchestrator_key_file")
        admin = unlock_key(cfg.admin_key_file, cfg.admin_passphrase_file or cfg.passphrase_file, "admin_key_file")
        return HostKeys(admin=admin, orchestrator=orchestrator)

    def _check_dev_chain(self, chain: Chain) -> None:
        chain_id = chain.backend.chain_id
        if self.config.dev_chain_for and chain_id not in DEV_CHAIN_IDS:
            raise ConfigError(f"{self.config.dev_chain_for} need a local development chain to fund them, and "
                              f"{chain.backend.describe()} (chain id {chain_id}) is not one", field="providers",
                              hint="pass --providers 0 on a real network")

    def _deployment(self, chain: Chain) -> tuple[Deployment, bool]:
        """The recorded deployment when it fits ``chain``, else a new one when ``config.deploy`` allows;
        and whether it was deployed just now."""
        state_dir = self.settings.state_dir
        policy = self.config.deploy
        if policy == Deploy.DEV:
            policy = Deploy.ONCE if chain.backend.chain_id in DEV_CHAIN_IDS else Deploy.NEVER
        try:
            dep = load_deployment(chain, state_dir)
        except NotFound:
            if policy == Deploy.NEVER:
                raise
        except ChainMismatch as exc:
            if policy == Deploy.NEVER:
                raise
            log.warning("the recorded deployment does not fit %s (%s): deploying anew", chain.backend.describe(),
                        exc.message)
        else:
            log.info("resuming the market deployed at block %d (ComputeMarket %s)", dep.block,
                     dep.contracts["ComputeMarket"])
            return dep, False
        if self.config.admin_key_file is None and chain.backend.chain_id not in DEV_CHAIN_IDS:
            raise ConfigError(f"deploying on {chain.backend.describe()} needs the admin's key", field="admin_key_file",
                              hint="pass --admin-key-file KEYSTORE (it pays for and administers the market)")
        return deploy_market(chain, state_dir=state_dir), True

    def _engine(self) -> Engine:
        """The engine, which opens the process's one event index (kept in its state directory); the API
        reads the same index (``_api_state``), so one ``cona up`` indexes the chain once."""
        assert self.chain is not None and self.deployment is not None and self.engine_dir is not None
        config = self.config.engine
        if self.config.federation is not None:
            from marketplace.federation.config import Federation
            from marketplace.federation.link import member_config

            config = member_config(Federation.load(self.config.federation), self._domain(), config)
        return Engine(self.chain, self.deployment, topology=self.config.topology, state_dir=self.engine_dir,
                      config=config, orchestrator=self.orchestrator)

    def _domain(self) -> int:
        if self.config.domain is None:
            raise ConfigError("a federation needs this engine's domain", field="domain", hint="pass --domain N")
        return self.config.domain

    def _link(self, key: bytes | None) -> Any:
        """The engine's place among the other domains' engines (signs with the orchestrator key)."""
        from marketplace.chain.market import Market
        from marketplace.federation.config import Federation
        from marketplace.federation.link import EngineLink

        assert self.config.federation is not None and self.chain is not None and self.deployment is not None
        if key is None:
            raise ConfigError("an engine in a federation signs with its own orchestrator key",
                              field="orchestrator_key_file", hint="pass --orchestrator-key-file")
        fed = Federation.load(self.config.federation)
        if fed.entry(self._domain()).orchestrator != self.orchestrator.address:
            raise ConfigError(f"the federation lists {fed.entry(self._domain()).orchestrator} for domain "
                              f"{self._domain()}, this engine signs as {self.orchestrator.address}",
                              field="orchestrator_key_file")
        return EngineLink(self.engine, fed, self._domain(), key,
                          Market.from_deployment(self.chain, self.deployment)).start()

    def _api_state(self) -> ApiState:
        assert self.chain is not None and self.deployment is not None and self.engine is not None
        thread = self._engine_thread
        self.health = HealthMonitor(self.chain.backend, self.chain.writer, beat=self.engine.beat,
                                    loop_alive=lambda: thread is not None and thread.is_alive(),
                                    config=self.config.health)
        return ApiState(chain=self.chain, deployment=self.deployment.to_dict(), engine=self.engine,
                        indexer=self.engine.indexer, health=self.health)

    def _serve(self, app: Any) -> None:
        """Run the API under uvicorn in a thread and wait until it listens. In a thread uvicorn
        installs no signal handlers: SIGINT and SIGTERM stay this process's (``StopSignals``)."""
        host = self.settings.api_host
        port = self.settings.api_port if self.config.port is None else self.config.port
        if port == 0:
            port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    access_log=False))
        self._api_thread = threading.Thread(target=self.server.run, name="cona-api", daemon=True)
        self._api_thread.start()
        deadline = time.monotonic() + LISTEN_TIMEOUT_S
        while not self.server.started:
            if not self._api_thread.is_alive() or time.monotonic() > deadline:
                raise ChainUnavailable(f"the API could not listen on {host}:{port}",
                                       hint="is the port in use? set CONA_API_PORT or pass --port")
            time.sleep(0.02)
        self.api_url = f"http://{host}:{port}"

    def settle_heap(self) -> None:
        """Keep the garbage collector from stalling requests, once the host's long-lived objects exist.

        Once the market is up, the heap holds hundreds of thousands of long-lived objects (py-evm's
        state, compiled ABIs, the topology, modules) that a full collection would traverse every
        time: measured at 80-120 ms, a pause of every thread, the API's included. Freezing them moves
        them out of the collector's generations (they are still freed by reference counting); the
        young generations are collected as before, only less often.
        """
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 50, 50)


def tune() -> None:
    """Bound how long a request waits for the GIL behind the engine loop and the embedded chain.

    The API's event loop shares the interpreter with the embedded chain (py-evm) and the engine
    loop, both pure-Python CPU work in other threads. With the default 5 ms switch interval a
    request waits several intervals for the GIL behind them; 0.5 ms bounds that wait. What
    they run matters more than the interval: the engine (20 Hz), the views and every agent
    ask the chain for its head and newest block, which eth-tester built and normalised anew
    each time under the chain lock (profiled: about a third of the GIL during `cona bench
    api`); ``EmbeddedRpc`` now answers those from the pending header and kept blocks.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def open_chain(settings: ConaSettings, *, keys: Sequence[bytes] = (), data_dir: Path | None = None) -> Chain:
    """Open the chain (the embedded one kept in ``data_dir``); a node's signers are ``keys`` (the first
    deploys), else, on a local development node, the project's development accounts."""
    chain = Chain.open(settings, keys=keys, data_dir=data_dir)
    if not chain.backend.accounts and chain.backend.chain_id in LOCAL_CHAIN_IDS:
        project = chain.project
        chain.backend.accounts = dev_accounts(project.mnemonic, project.dev_account_count)
        log.info("chain %d is a development chain: using the project's %d development accounts",
                 chain.backend.chain_id, project.dev_account_count)
    return chain


@dataclass(frozen=True)
class HostKeys:
    """The unlocked keys a host was given: the admin (deploys) and the orchestrator (the engine signs)."""

    admin: bytes | None = None
    orchestrator: bytes | None = None


def unlock_key(key_file: Path | None, passphrase_file: Path | None, option: str) -> bytes | None:
    """The private key in the V3 keystore ``key_file`` (passphrase from ``passphrase_file`` or a prompt)."""
    if key_file is None:
        return None
    from provider_agent import keystore

    try:
        return keystore.unlock(key_file, keystore.read_passphrase(passphrase_file)).key
    except ConaError as exc:
        raise ConfigError(f"--{option.replace('_', '-')}: {exc.message}", field=option, hint=exc.hint) from None


def claim_state(engine_dir: Path, dep: Deployment, *, fresh: bool = False) -> None:
    """Keep the engine state only if it belongs to this chain and market (a new anvil reuses the
    chain id: its old index, batches and journal would describe blocks that no longer exist);
    ``fresh`` starts it afresh regardless (a market deployed just now has no state to resume)."""
    claim_for_market(engine_dir, market_mark(dep), fresh=fresh, what="engine state")


def orchestrator_signer(chain: Chain, dep: Deployment, key: bytes | None, key_file: Path | None = None) -> Signer:
    """The engine's signer: ``key`` (unlocked from ``key_file``), which must be the deployment's
    orchestrator or one the market's timelock added since (``Market.set_orchestrator``: one key per
    domain's engine); without it, the chain's own key for the role (development keys, on local chains
    only). The contract takes assignments from no one else."""
    want = dep.roles["orchestrator"]
    if key is not None:
        signer = Signer(key)
        if signer.address != want and not _allowed(chain, dep, signer.address):
            raise ConfigError(f"the key in {key_file or 'the orchestrator keystore'} is {signer.address}, which the "
                              f"market does not list as an orchestrator (the deployment's is {want})",
                              field="orchestrator_key_file",
                              hint="use the orchestrator's keystore, or add this key with `cona admin orchestrator`")
        return signer
    found = [s for s in chain.signers if s.address == want]
    if not found:
        raise ConfigError(f"no key for the orchestrator {want} on {chain.backend.describe()}",
                          field="orchestrator_key_file",
                          hint="pass --orchestrator-key-file (development keys are used on local chains only)")
    return found[0]


def _allowed(chain: Chain, dep: Deployment, address: str) -> bool:
    from marketplace.chain.market import Market

    return bool(Market.from_deployment(chain, dep).is_orchestrator(address))


class StopSignals:
    """While open, Ctrl-C (SIGINT) and SIGTERM ask the process to stop instead of interrupting
    it; the previous handlers come back on exit. ``wait`` blocks until one arrives."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def wait(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        while not self.event.wait(0.2) and not should_stop():
            pass
