"""``cona serve``: the engine and the API as one process against a chain that already runs.

Where ``cona up`` owns its chain, ``serve`` attaches to one: ``--rpc-url URL`` (an anvil or any
node) or ``--chain anvil`` (a managed anvil started here). The market comes from the deployment
record in the state directory (``<state dir>/deployments/<chain id>.json``), or is deployed
first with ``--deploy``. The engine's state (event index, specs, batch inputs, results, the
idempotency journals) lives in ``<state dir>/engine/<chain id>`` and is kept between runs, so a
restarted ``serve`` resumes from the chain and that directory: an order placed by a request
that died with the process is found again, never placed twice.

The orchestrator key: ``--orchestrator-key-file`` (a V3 keystore, passphrase from
``--passphrase-file`` or a prompt), else the development account holding the orchestrator
role on a local chain (anvil, chain id 31337 or 1337, same mnemonic as ``brownie-config.yaml``).
The key must be the deployment's orchestrator: the contract accepts assignments from no one else.

One line of JSON on stdout once the API listens (``api``, ``chain_id``, ``orchestrator``,
``engine_dir``, ``pid``), for scripts and tests. SIGTERM or Ctrl-C stop the API, then the
engine loop (the turn in progress completes), then the chain; exit status 0.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import typer

log = logging.getLogger(__name__)

#: chain ids of development nodes whose funded accounts come from the project mnemonic
LOCAL_CHAIN_IDS = (31337, 1337)

serve_app = typer.Typer(help="Run the engine and the API against an existing chain.", add_completion=False)


def _orchestrator(chain: Any, dep: Any, key_file: Path | None, passphrase_file: Path | None) -> Any:
    """The signer for the deployment's orchestrator role (see the module docstring)."""
    from marketplace.chain.writer import Signer
    from marketplace.errors import ConfigError

    want = dep.roles["orchestrator"]
    if key_file is not None:
        from provider_agent import keystore

        ident = keystore.unlock(key_file, keystore.read_passphrase(passphrase_file))
        signer = Signer(ident.key)
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


def _open_chain(settings: Any) -> Any:
    """Open the chain; on a local development node, add the project's development accounts."""
    from marketplace.chain.backends import dev_accounts
    from marketplace.chain.contracts import Chain

    chain = Chain.open(settings)
    if not chain.backend.accounts and chain.backend.chain_id in LOCAL_CHAIN_IDS:
        project = chain.project
        chain.backend.accounts = dev_accounts(project.mnemonic, project.dev_account_count)
        log.info("chain %d is a development chain: using the project's %d development accounts",
                 chain.backend.chain_id, project.dev_account_count)
    return chain


def _claim(engine_dir: Path, dep: Any) -> None:
    """Keep the engine state only if it belongs to this chain and market (a new anvil reuses the
    chain id: its old index, batches and journal would describe blocks that no longer exist)."""
    import shutil

    mark = engine_dir / "market.json"
    want = {"genesis": dep.genesis, "market": dep.contracts["ComputeMarket"]}
    if engine_dir.exists():
        try:
            have = json.loads(mark.read_text())
        except (OSError, ValueError):
            have = None
        if have != want:
            log.warning("engine state in %s belongs to another chain or market (%s); starting it afresh",
                        engine_dir, have)
            shutil.rmtree(engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps(want))


class Served:
    """A running ``serve``: the chain, the engine and its loop thread, the API server thread."""

    def __init__(self, settings: Any, *, deploy: bool = False, key_file: Path | None = None,
                 passphrase_file: Path | None = None, port: int | None = None, topology: Path | None = None,
                 period: float = 0.05, heartbeat_interval: float = 1.0, miss_limit: int = 3) -> None:
        import uvicorn

        from marketplace.api.app import ApiState, create_app
        from marketplace.chain.backends import free_port
        from marketplace.chain.deploy import deploy_market, load_deployment
        from marketplace.chain.writer import IdempotencyJournal
        from marketplace.cli.up import TOPOLOGY
        from marketplace.engine.service import Engine, EngineConfig
        from marketplace.errors import ChainUnavailable, ConfigError

        if settings.chain == "embedded":
            raise ConfigError("cona serve attaches to a chain that outlives it; the embedded chain lives in one "
                              "process", field="chain", hint="use `cona up`, or --chain anvil / --rpc-url URL")
        self.stop_event = threading.Event()
        self.chain = _open_chain(settings)
        self.engine = None
        self.server = None
        try:
            dep = deploy_market(self.chain, state_dir=settings.state_dir) if deploy else \
                load_deployment(self.chain, settings.state_dir)
            self.deployment = dep
            self.engine_dir = settings.state_dir / "engine" / str(dep.chain_id)
            _claim(self.engine_dir, dep)
            # every write the engine signs is journalled before it is sent, so a restart re-sends
            # the same bytes instead of a second transaction (writer.py's idempotency invariant)
            self.chain.writer.journal = IdempotencyJournal(self.engine_dir / "journal.jsonl")
            signer = _orchestrator(self.chain, dep, key_file, passphrase_file)
            config = EngineConfig(heartbeat_interval=heartbeat_interval, miss_limit=miss_limit)
            self.engine = Engine(self.chain, dep, topology=topology or TOPOLOGY, state_dir=self.engine_dir,
                                 config=config, orchestrator=signer)
            self.loop = threading.Thread(target=self.engine.run, args=(self.stop_event, period),
                                         name="cona-engine", daemon=True)
            self.loop.start()
            app = create_app(ApiState(chain=self.chain, deployment=dep.to_dict(), engine=self.engine))
            port = settings.api_port if port is None else port
            if port == 0:
                port = free_port()
            self.server = uvicorn.Server(uvicorn.Config(app, host=settings.api_host, port=port, log_level="warning",
                                                        access_log=False))
            # uvicorn must not install its own signal handlers: this process owns SIGTERM/SIGINT
            self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            self.api = threading.Thread(target=self.server.run, name="cona-api", daemon=True)
            self.api.start()
            deadline = time.monotonic() + 20
            while not self.server.started:
                if not self.api.is_alive() or time.monotonic() > deadline:
                    raise ChainUnavailable(f"the API could not listen on {settings.api_host}:{port}",
                                           hint="is the port in use? pass --port")
                time.sleep(0.02)
            self.url = f"http://{settings.api_host}:{port}"
            self.orchestrator = signer.address
        except BaseException:
            self.close()
            raise

    def info(self) -> dict[str, Any]:
        return {"api": self.url, "chain_id": self.deployment.chain_id, "orchestrator": self.orchestrator,
                "market": self.deployment.contracts["ComputeMarket"], "engine_dir": str(self.engine_dir),
                "pid": os.getpid()}

    def close(self) -> None:
        """API first (no new requests), then the engine loop, then the chain. Idempotent."""
        if self.server is not None:
            self.server.should_exit = True
            self.api.join(timeout=10)
            self.server = None
        self.stop_event.set()
        if self.engine is not None:
            self.loop.join(timeout=10)
            self.engine.close()
            self.engine = None
        if self.chain is not None:
            self.chain.close()
            self.chain = None


@serve_app.command("serve")
def serve(chain_kind: Optional[str] = typer.Option(None, "--chain", help="anvil (managed) or rpc"),
          rpc_url: Optional[str] = typer.Option(None, "--rpc-url", help="JSON-RPC URL of the chain (implies rpc)"),
          deploy: bool = typer.Option(False, "--deploy", help="deploy the market first (else use the record)"),
          key_file: Optional[Path] = typer.Option(None, "--orchestrator-key-file",
                                                  help="V3 keystore of the orchestrator"),
          passphrase_file: Optional[Path] = typer.Option(None, "--passphrase-file",
                                                         help="file whose first line is the keystore passphrase"),
          data_dir: Optional[Path] = typer.Option(None, "--state-dir", help="state directory (default CONA_DATA_DIR "
                                                                            "or ROOT/.cona)"),
          host: Optional[str] = typer.Option(None, "--host", help="API host (default CONA_API_HOST)"),
          port: Optional[int] = typer.Option(None, "--port", help="API port (default CONA_API_PORT; 0 picks one)"),
          topology: Optional[Path] = typer.Option(None, "--topology", help="topology file (default GEANT 2012)"),
          period: float = typer.Option(0.05, "--period", help="engine loop period, seconds"),
          heartbeat_interval: float = typer.Option(1.0, "--heartbeat-interval", help="expected agent heartbeat, s"),
          miss_limit: int = typer.Option(3, "--miss-limit", help="heartbeats missed before a provider fails"),
          log_level: str = typer.Option("INFO", "--log-level", help="log level of the marketplace loggers")) -> None:
    """Run the engine and the API against an existing chain (Ctrl-C or SIGTERM stops it cleanly)."""
    from marketplace.errors import ConaError
    from marketplace.settings import ConaSettings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("marketplace").setLevel(log_level.upper())
    kw: dict[str, Any] = {}
    if rpc_url:
        kw.update(chain="rpc", rpc_url=rpc_url)
    elif chain_kind:
        kw["chain"] = chain_kind
    if data_dir is not None:
        kw["data_dir"] = data_dir
    if host is not None:
        kw["api_host"] = host
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        served = Served(ConaSettings(**kw), deploy=deploy, key_file=key_file, passphrase_file=passphrase_file,
                        port=port, topology=topology, period=period, heartbeat_interval=heartbeat_interval,
                        miss_limit=miss_limit)
    except ConaError as exc:
        typer.echo(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), err=True)
        raise typer.Exit(2)
    try:
        sys.stdout.write(json.dumps(served.info()) + "\n")
        sys.stdout.flush()
        log.info("cona serve: API at %s, engine state in %s", served.url, served.engine_dir)
        while not stop.wait(0.2):
            pass
        log.info("cona serve: stopping")
    finally:
        served.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":  # pragma: no cover
    from marketplace.cli.main import main

    main(command=serve_app, prog_name="cona serve")
