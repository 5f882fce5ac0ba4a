"""``cona up``: the main job. Chain, contracts, the engine (its loop in a thread) and the API.

The engine runs on a real topology (``marketplace/data/topologies/Geant2012.graphml``); its
state (event index, specs, batch inputs, results) lives in ``<state dir>/engine``. Demo agents
are started through the ``agents`` hook: callables that get the ``Running`` market once the
API listens (e.g. to launch agent processes under ``running.supervisor``).

The embedded chain lives in this process and is served to other processes at ``/rpc``;
``--chain anvil`` starts a managed anvil; ``--rpc-url`` uses any node. Ctrl-C (or
SIGTERM) stops everything in reverse order: the children, the API, then the chain.
"""

from __future__ import annotations

import gc
import logging
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import uvicorn

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, deploy_market
from marketplace.engine.service import Engine
from marketplace.errors import ChainUnavailable
from marketplace.settings import ConaSettings
from marketplace.supervisor import Supervisor

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
GC_GEN0_THRESHOLD = 50_000
TOPOLOGY = Path(__file__).resolve().parent.parent / "data" / "topologies" / "Geant2012.graphml"


@dataclass
class Running:
    """A market brought up by ``start``; ``stop`` takes it down. Used by ``cona up`` and e2e tests."""

    settings: ConaSettings
    chain: Chain
    deployment: Deployment
    server: uvicorn.Server
    thread: threading.Thread
    supervisor: Supervisor
    api_url: str
    engine: Engine | None = None
    engine_stop: threading.Event | None = None
    engine_thread: threading.Thread | None = None

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.engine_stop is not None:
            self.engine_stop.set()
        if self.engine_thread is not None:
            self.engine_thread.join(timeout=10)
        if self.engine is not None:
            self.engine.close()
        self.chain.close()


def start(settings: ConaSettings, *, port: int | None = None, agents: Sequence[Callable[[Running], Any]] = (),
          topology: Path = TOPOLOGY, engine_period: float = 0.05) -> Running:
    """Bring the market up; ``agents`` are called with the running market once the API listens."""
    # The API's event loop shares the interpreter with the embedded chain (py-evm) and the engine
    # loop, both pure-Python CPU work in other threads. With the default 5 ms switch interval a
    # request waits several intervals for the GIL behind them; 0.5 ms bounds that wait. What
    # they run matters more than the interval: the engine (20 Hz), the views and every agent
    # ask the chain for its head and newest block, which eth-tester built and normalised anew
    # each time under the chain lock (profiled: about a third of the GIL during `cona bench
    # api`); ``EmbeddedRpc`` now answers those from the pending header and kept blocks.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    chain = Chain.open(settings)
    stop_engine = threading.Event()
    engine = None
    try:
        deployment = deploy_market(chain, state_dir=settings.state_dir)
        engine_dir = settings.state_dir / "engine" / str(deployment.chain_id)
        if settings.chain == "embedded" and engine_dir.exists():
            shutil.rmtree(engine_dir)  # the embedded chain starts afresh: its old index and leases are void
        engine = Engine(chain, deployment, topology=topology, state_dir=engine_dir)
        engine_thread = threading.Thread(target=engine.run, args=(stop_engine, engine_period), name="cona-engine",
                                         daemon=True)
        engine_thread.start()
        app = create_app(ApiState(chain=chain, deployment=deployment.to_dict(), engine=engine))
        port = settings.api_port if port is None else port
        if port == 0:
            port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host=settings.api_host, port=port, log_level="warning",
                                               access_log=False))
        thread = threading.Thread(target=server.run, name="cona-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ChainUnavailable(f"the API could not listen on {settings.api_host}:{port}",
                                       hint="is the port in use? set CONA_API_PORT or pass --port")
            time.sleep(0.02)
        supervisor = Supervisor(settings.state_dir / "logs")
        running = Running(settings, chain, deployment, server, thread, supervisor,
                          f"http://{settings.api_host}:{port}", engine, stop_engine, engine_thread)
    except BaseException:
        stop_engine.set()
        chain.close()
        raise
    try:
        for agent in agents:
            agent(running)
    except BaseException:
        running.stop()  # an agent that cannot start takes the rest down with it: no half-up market
        raise
    _settle_heap()
    return running


def _settle_heap() -> None:
    """Keep the garbage collector from stalling requests.

    Once the market is up, the heap holds hundreds of thousands of long-lived objects (py-evm's
    state, compiled ABIs, the topology, modules) that a full collection would traverse every
    time: measured at 80-120 ms, a pause of every thread, the API's included. Freezing them moves
    them out of the collector's generations (they are still freed by reference counting); the
    young generations are collected as before, only less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 50)


def wait_for_signal(should_stop: Callable[[], bool] = lambda: False) -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.2) and not should_stop():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
