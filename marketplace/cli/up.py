"""``cona up``: the main job. Chain, contracts and API now; the engine and demo agents as they land.

The embedded chain lives in this process and is served to other processes at ``/rpc``;
``--chain anvil`` starts a managed anvil; ``--rpc-url`` uses any node. Ctrl-C (or
SIGTERM) stops everything in reverse order: the children, the API, then the chain.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import uvicorn

from marketplace.api.app import ApiState, create_app
from marketplace.chain.backends import free_port
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, deploy_market
from marketplace.errors import ChainUnavailable
from marketplace.settings import ConaSettings
from marketplace.supervisor import Supervisor

log = logging.getLogger(__name__)


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

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.chain.close()


def start(settings: ConaSettings, *, port: int | None = None) -> Running:
    chain = Chain.open(settings)
    try:
        deployment = deploy_market(chain, state_dir=settings.state_dir)
        app = create_app(ApiState(chain=chain, deployment=deployment.to_dict()))
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
        return Running(settings, chain, deployment, server, thread, supervisor,
                       f"http://{settings.api_host}:{port}")
    except BaseException:
        chain.close()
        raise


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
