"""``cona serve``: the engine and the API as one process against a chain that already runs.

Where ``cona up`` owns its chain, ``serve`` attaches to one: ``--rpc-url URL`` (an anvil or any
node) or ``--chain anvil`` (a managed anvil started here). Both are a ``marketplace.host.Host``.
The market comes from the deployment record in the data directory
(``--data-dir DIR``, else ``CONA_DATA_DIR``, else ``ROOT/.cona``:
``<data dir>/deployments/<chain id>.json``); with ``--deploy`` it is deployed when no record
fits the chain (once: later starts reuse it), paid for by ``--admin-key-file`` off a development
chain. The engine's state (event index, specs, batch inputs, results, the idempotency journals)
lives in ``<data dir>/engine/<chain id>`` and is kept between runs, so a restarted ``serve``
resumes from the chain and that directory: an order placed by a request that died with the
process is found again, never placed twice. One process holds a data directory at a time.

The orchestrator key: ``--orchestrator-key-file`` (a V3 keystore, passphrase from
``--passphrase-file`` or a prompt), else the development account holding the orchestrator
role on a local chain (anvil, chain id 31337 or 1337, same mnemonic as ``brownie-config.yaml``).
The key must be the deployment's orchestrator: the contract accepts assignments from no one else.

In a multi-domain market (``cona up --domains N`` starts one ``serve`` per domain) the engine
runs one domain: ``--domain D --federation FILE`` (the federation document, see
``marketplace.federation.config``) with its own orchestrator key, which the market's timelock
must list; it floods LSAs with the other engines and exchanges domain summaries with them.

One line of JSON on stdout once the API listens (``api``, ``chain_id``, ``orchestrator``,
``market``, ``engine_dir``, ``pid``), for scripts and tests. SIGTERM or Ctrl-C stop the API,
then the engine loop (the turn in progress completes), then the chain; exit status 0.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from marketplace.cli.options import DataDirOpt, PassphraseOpt, settings
from marketplace.cli.output import fail, run
from marketplace.errors import ConaError, ConfigError
from marketplace.settings import ConaSettings

log = logging.getLogger(__name__)

serve_app = typer.Typer(help="Run the engine and the API against an existing chain.", add_completion=False)


@serve_app.command("serve")
def serve(chain_kind: Optional[str] = typer.Option(None, "--chain", help="anvil (managed) or rpc"),
          rpc_url: Optional[str] = typer.Option(None, "--rpc-url", help="JSON-RPC URL of the chain (implies rpc)"),
          deploy: bool = typer.Option(False, "--deploy", help="deploy the market when none is recorded for the "
                                                             "chain (else use the record)"),
          key_file: Optional[Path] = typer.Option(None, "--orchestrator-key-file",
                                                  help="V3 keystore of the orchestrator"),
          passphrase_file: Optional[Path] = PassphraseOpt,
          admin_key_file: Optional[Path] = typer.Option(None, "--admin-key-file",
                                                        help="V3 keystore of the admin, who pays for and owns a "
                                                             "deployment made with --deploy"),
          data_dir: Optional[Path] = DataDirOpt,
          host: Optional[str] = typer.Option(None, "--host", help="API host (default CONA_API_HOST)"),
          port: Optional[int] = typer.Option(None, "--port", help="API port (default CONA_API_PORT; 0 picks one)"),
          topology: Optional[Path] = typer.Option(None, "--topology", help="topology file (default GEANT 2012)"),
          period: float = typer.Option(0.05, "--period", help="engine loop period, seconds"),
          heartbeat_interval: float = typer.Option(1.0, "--heartbeat-interval", help="expected agent heartbeat, s"),
          miss_limit: int = typer.Option(3, "--miss-limit", help="heartbeats missed before a provider fails"),
          domain: Optional[int] = typer.Option(None, "--domain", min=1, help="this engine's domain (multi-domain)"),
          federation: Optional[Path] = typer.Option(None, "--federation", help="the federation document "
                                                                              "(multi-domain market)"),
          log_level: str = typer.Option("INFO", "--log-level", help="log level of the marketplace loggers")) -> None:
    """Run the engine and the API against an existing chain (Ctrl-C or SIGTERM stops it cleanly)."""
    # the host pulls in the chain, the engine and the web stack: imported when the command runs
    from marketplace.engine.service import EngineConfig
    from marketplace.host import Deploy, Host, HostConfig, StopSignals

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("marketplace").setLevel(log_level.upper())
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if host is not None:
        overrides["api_host"] = host
    if (domain is None) != (federation is None):
        raise fail(ConfigError("--domain and --federation go together", field="domain",
                               hint="a multi-domain engine runs one domain of a federation"))
    config = HostConfig(port=port, deploy=Deploy.ONCE if deploy else Deploy.NEVER, engine_period=period,
                        orchestrator_key_file=key_file, passphrase_file=passphrase_file, admin_key_file=admin_key_file,
                        federation=federation, domain=domain,
                        engine=EngineConfig(heartbeat_interval=heartbeat_interval, miss_limit=miss_limit),
                        **({"topology": topology} if topology is not None else {}))
    # the handlers go in before the host starts: a SIGTERM while it comes up stops it cleanly once up
    with StopSignals() as signals:
        try:
            served = Host(_settings(chain_kind, rpc_url, overrides), config).start()
        except ConaError as exc:
            raise fail(exc) from None
        try:
            served.settle_heap()
            sys.stdout.write(json.dumps(served.info()) + "\n")
            sys.stdout.flush()
            log.info("cona serve: API at %s, engine state in %s", served.api_url, served.engine_dir)
            signals.wait()
            log.info("cona serve: stopping")
        finally:
            served.stop()


def _settings(chain_kind: Optional[str], rpc_url: Optional[str], overrides: dict[str, Any]) -> ConaSettings:
    s = settings(chain_kind, rpc_url, **overrides)
    if s.chain == "embedded":
        raise fail(ConfigError("cona serve attaches to a chain that outlives it; the embedded chain lives in one "
                               "process", field="chain", hint="use `cona up`, or --chain anvil / --rpc-url URL"))
    return s


if __name__ == "__main__":  # pragma: no cover
    run(serve_app, prog_name="cona serve")
