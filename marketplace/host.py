"""The host: one CONA process that runs the market's engine and its web API against a chain.

The composition root of the service. ``cona up`` is a host with its own chain (embedded, or a
managed anvil) plus demo provider agents as supervised child processes; ``cona serve`` is a
host attached to a chain that outlives it. A ``Host`` builds the parts in this order and
``start`` returns once the API listens:

1. the chain connection (on a local development node without accounts of its own, the
   project's development accounts, so the orchestrator can sign);
2. the market: deployed anew (``HostConfig.deploy``) or found in the deployment record;
3. the engine's state directory ``<state dir>/engine/<chain id>``, claimed for this chain and
   market (``market.json``: a directory left by another chain or market is started afresh, and
   so is every embedded chain's, which is new in every process); where the state outlives the
   process (any chain but the embedded one), every write the engine signs is journalled
   before it is sent, so a restart re-sends the same bytes instead of a second transaction;
4. the engine (signing as the deployment's orchestrator) and its loop in a thread;
5. the API (``marketplace.api.app``) under uvicorn in another thread.

``stop`` takes them down in reverse: the supervised children, the API (no new requests), the
engine loop (the turn in progress completes), the chain. It is idempotent, and a ``start``
that fails stops what it had started before raising: nothing is left half up.

Where the process-wide parts go: the engine and the API are built in ``_engine`` and
``_api_state``, from this host's chain and deployment, so a part both need (one event index
of the market's logs for the whole process) is made once here and handed to each.

Runtime tuning (``tune`` and ``settle_heap``): the API's event loop shares the interpreter
with the engine loop and, with the embedded chain, py-evm; see the comments there for the
figures behind each setting.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import uvicorn

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import dev_accounts, free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, deploy_market, load_deployment
from marketplace.chain.writer import IdempotencyJournal, Signer
from marketplace.engine.service import Engine, EngineConfig
from marketplace.errors import ChainUnavailable, ConfigError
from marketplace.settings import DEFAULT_TOPOLOGY, ConaSettings
from marketplace.supervisor import Supervisor

log = logging.getLogger(__name__)

#: chain ids of development nodes whose funded accounts come from the project mnemonic
LOCAL_CHAIN_IDS = (31337, 1337)
SWITCH_INTERVAL_S = 0.0005
GC_GEN0_THRESHOLD = 50_000
#: how long the API may take to listen, and each thread to stop
LISTEN_TIMEOUT_S = 20.0
JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HostConfig:
    """What a host runs: where the API listens, the market, and how the engine loop turns."""

    #: the API port (None: ``settings.api_port``; 0: a free port)
    port: int | None = None
    #: deploy the market's contracts first; else use the deployment record in the state directory
    deploy: bool = True
    topology: Path = DEFAULT_TOPOLOGY
    #: seconds between two turns of the engine loop
    engine_period: float = 0.05
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: the orchestrator's V3 keystore (else a development key holding the role, on local chains)
    orchestrator_key_file: Path | None = None
    passphrase_file: Path | None = None


class Host:
    """The chain, the deployment, the engine and its loop, the API server and the supervised
    children of one process (see the module docstring for the order and the invariants)."""

    def __init__(self, settings: ConaSettings, config: HostConfig | None = None) -> None:
        self.settings = settings
        self.config = config or HostConfig()
        self.supervisor = Supervisor(settings.state_dir / "logs")
        self.chain: Chain | None = None
        self.deployment: Deployment | None = None
        self.engine_dir: Path | None = None
        self.engine: Engine | None = None
        self.orchestrator: Signer | None = None
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
            self.chain = open_chain(self.settings)
            self.deployment = self._deployment(self.chain)
            self.engine_dir = self.settings.state_dir / "engine" / str(self.deployment.chain_id)
            claim_state(self.engine_dir, self.deployment, fresh=self.settings.chain == "embedded")
            if self.settings.chain != "embedded":
                self.chain.writer.journal = IdempotencyJournal(self.engine_dir / "journal.jsonl")
            self.orchestrator = orchestrator_signer(self.chain, self.deployment, self.config.orchestrator_key_file,
                                                    self.config.passphrase_file)
            self.engine = self._engine()
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
        """Children, then the API (no new requests), the engine loop, the chain. Idempotent."""
        self.supervisor.stop_all()
        if self.server is not None:
            self.server.should_exit = True
            if self._api_thread is not None:
                self._api_thread.join(timeout=JOIN_TIMEOUT_S)
            self.server = None
        self._stop_engine.set()
        if self._engine_thread is not None:
            self._engine_thread.join(timeout=JOIN_TIMEOUT_S)
            self._engine_thread = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        if self.chain is not None:
            self.chain.close()
            self.chain = None

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

    def _deployment(self, chain: Chain) -> Deployment:
        if self.config.deploy:
            return deploy_market(chain, state_dir=self.settings.state_dir)
        return load_deployment(chain, self.settings.state_dir)

    def _engine(self) -> Engine:
        """The engine, which opens the process's one event index (kept in its state directory); the API
        reads the same index (``_api_state``), so one ``cona up`` indexes the chain once."""
        assert self.chain is not None and self.deployment is not None and self.engine_dir is not None
        return Engine(self.chain, self.deployment, topology=self.config.topology, state_dir=self.engine_dir,
                      config=self.config.engine, orchestrator=self.orchestrator)

    def _api_state(self) -> ApiState:
        assert self.chain is not None and self.deployment is not None
        return ApiState(chain=self.chain, deployment=self.deployment.to_dict(), engine=self.engine,
                        indexer=self.engine.indexer if self.engine is not None else None)

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


def open_chain(settings: ConaSettings) -> Chain:
    """Open the chain; on a local development node, add the project's development accounts."""
    chain = Chain.open(settings)
    if not chain.backend.accounts and chain.backend.chain_id in LOCAL_CHAIN_IDS:
        project = chain.project
        chain.backend.accounts = dev_accounts(project.mnemonic, project.dev_account_count)
        log.info("chain %d is a development chain: using the project's %d development accounts",
                 chain.backend.chain_id, project.dev_account_count)
    return chain


def claim_state(engine_dir: Path, dep: Deployment, *, fresh: bool = False) -> None:
    """Keep the engine state only if it belongs to this chain and market (a new anvil reuses the
    chain id: its old index, batches and journal would describe blocks that no longer exist);
    ``fresh`` starts it afresh regardless (the embedded chain is new in every process, with the
    same genesis and addresses, so the mark cannot tell)."""
    mark = engine_dir / "market.json"
    want = {"genesis": dep.genesis, "market": dep.contracts["ComputeMarket"]}
    if engine_dir.exists():
        try:
            have = None if fresh else json.loads(mark.read_text())
        except (OSError, ValueError):
            have = None
        if have != want:
            if not fresh:
                log.warning("engine state in %s belongs to another chain or market (%s); starting it afresh",
                            engine_dir, have)
            shutil.rmtree(engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(want))


def orchestrator_signer(chain: Chain, dep: Deployment, key_file: Path | None,
                        passphrase_file: Path | None) -> Signer:
    """The signer of the deployment's orchestrator role: the key in ``key_file`` (a V3 keystore,
    passphrase from ``passphrase_file`` or a prompt), else the chain's own key for the role
    (development keys, on local chains only). The contract takes assignments from no one else."""
    want = dep.roles["orchestrator"]
    if key_file is not None:
        from provider_agent import keystore

        signer = Signer(keystore.unlock(key_file, keystore.read_passphrase(passphrase_file)).key)
        if signer.address != want:
            raise ConfigError(f"the key in {key_file} is {signer.address}, the deployment's orchestrator is {want}",
                              field="orchestrator_key_file", hint="use the orchestrator's keystore")
        return signer
    found = [s for s in chain.signers if s.address == want]
    if not found:
        raise ConfigError(f"no key for the orchestrator {want} on {chain.backend.describe()}",
                          field="orchestrator_key_file",
                          hint="pass --orchestrator-key-file (development keys are used on local chains only)")
    return found[0]


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
