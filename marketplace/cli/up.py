"""``cona up``: the whole market in one command. A ``Host`` (``marketplace.host``: the chain, the
contracts, the engine loop and the API) plus demo provider agents.

Durable by default: the whole market lives in its data directory (``--data-dir DIR``, else
``CONA_DATA_DIR``, else ``<project>/.cona``; layout in ``marketplace.datadir``): the embedded
chain (every block fsynced before it is answered), the deployment record, the engine's state
and the demo agents' homes with their journals. A restart, after Ctrl-C or a kill -9 of any
process or of the whole tree, resumes that market: same contracts, orders, balances and
leases in flight. ``--fresh`` starts over (refused, like any start, while another market runs
on the directory).

The engine runs on a real topology (``marketplace/data/topologies/Geant2012.graphml``). The
demo agents are real ``cona-agent`` processes with hardware profiles captured on real machines
(``marketplace.demo``), supervised by the host (started again when one dies), started once
the API listens. They are paid with development accounts, so they need a local development
chain; elsewhere ``--providers 0``.

The embedded chain lives in this process and is served to other processes at ``/rpc``;
``--chain anvil`` starts a managed anvil (which keeps nothing across restarts); ``--rpc-url``
uses any node, signing with ``--orchestrator-key-file`` and, to deploy there once,
``--deploy --admin-key-file``. Ctrl-C (or SIGTERM) stops everything: the engine loop, the
agents, the API, then the chain.

``--domains N`` starts a decentralised market instead (``marketplace.federation.launch``): one
engine process per domain, each with its own orchestrator key registered through the timelock,
the engines joined as flooding peers and domain speakers, each demo agent attached to its
domain's engine, on one managed anvil (or ``--rpc-url``). Domain 1's engine listens on ``--port``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from marketplace.cli.contracts import deployment_table
from marketplace.cli.options import ChainOpt, DataDirOpt, JsonOpt, PassphraseOpt, RpcOpt, settings
from marketplace.cli.output import console, emit, fail, out
from marketplace.errors import ConaError, ConfigError

if TYPE_CHECKING:
    from marketplace.demo import DemoProvider
    from marketplace.host import Host


FreshOpt = typer.Option(False, "--fresh", help="start over: wipe the market kept in the data directory")
DeployOpt = typer.Option(False, "--deploy", help="deploy the market when none is recorded for the chain "
                                                "(automatic on a development chain)")
OrchestratorKeyOpt = typer.Option(None, "--orchestrator-key-file",
                                  help="V3 keystore of the orchestrator (else a development key)")
AdminKeyOpt = typer.Option(None, "--admin-key-file",
                           help="V3 keystore of the admin, who pays for and owns a deployment made with --deploy")


def up(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
       port: Optional[int] = typer.Option(None, "--port", help="API port (default CONA_API_PORT, 8000)"),
       providers: int = typer.Option(5, "--providers", min=0, max=5,
                                     help="demo provider agents to start (real hardware profiles; development "
                                          "chains only)"),
       data_dir: Optional[Path] = DataDirOpt,
       fresh: bool = FreshOpt, deploy: bool = DeployOpt, key_file: Optional[Path] = OrchestratorKeyOpt,
       passphrase_file: Optional[Path] = PassphraseOpt, admin_key_file: Optional[Path] = AdminKeyOpt,
       admin_passphrase_file: Optional[Path] = typer.Option(None, "--admin-passphrase-file",
                                                            help="the admin keystore's passphrase file (default "
                                                                 "--passphrase-file)"),
       domains: int = typer.Option(0, "--domains", min=0, max=64,
                                   help="one engine process per domain, N domains (0: one engine for all)"),
       once: bool = typer.Option(False, "--once", help="bring everything up, print, and stop")) -> None:
    """Start the market: the chain, the contracts, the engine with its API, and demo provider agents."""
    from marketplace.datadir import DataDir

    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    s = settings(chain, rpc_url, **overrides)
    if domains:
        _up_domains(s, domains, port, providers, as_json, once, single_only=(
            ("--fresh", fresh), ("--deploy", deploy), ("--orchestrator-key-file", key_file),
            ("--admin-key-file", admin_key_file)))
        return
    try:
        DataDir(s.state_dir).check_free()  # refused at once, not after the imports below
    except ConaError as exc:
        raise fail(exc) from None
    # the host pulls in the chain, the engine and the web stack: imported when the command runs,
    # so that `cona --help` and the light commands start fast
    from marketplace import demo
    from marketplace.host import Deploy, Host, HostConfig, StopSignals

    chosen = demo.DEMO_PROVIDERS[:providers]
    config = HostConfig(port=port, fresh=fresh, deploy=Deploy.ONCE if deploy else Deploy.DEV,
                        orchestrator_key_file=key_file, passphrase_file=passphrase_file,
                        admin_key_file=admin_key_file, admin_passphrase_file=admin_passphrase_file,
                        dev_chain_for=f"{len(chosen)} demo provider(s)" if chosen else None)
    try:
        host = Host(s, config).start()
    except ConaError as exc:
        raise fail(exc) from None
    try:
        addresses = demo.launch(host, chosen) if chosen else []
        host.settle_heap()
        _print_up(host, chosen, addresses, as_json)
        if once:
            return
        console.print("[green]CONA is up.[/] Ctrl-C stops everything.")
        with StopSignals() as signals:
            signals.wait()
        console.print("stopping")
    finally:
        host.stop()


def _print_up(host: Host, chosen: tuple[DemoProvider, ...], addresses: list[str], as_json: bool) -> None:
    assert host.deployment is not None
    dep = host.deployment.to_dict()
    api = host.api_url
    info: dict[str, Any] = {
        **dep, "api": api, "rpc": f"{api}/rpc", "docs": f"{api}/docs", "dashboard": f"{api}/",
        "providers": [{"name": p.name, "address": a, "attachment": p.attachment, "domain": p.domain}
                      for p, a in zip(chosen, addresses)],
        "logs": str(host.supervisor.log_dir), "data_dir": str(host.data.path)}
    emit(info, as_json, deployment_table(dep))
    if as_json:
        return
    out.print(_providers_table(chosen, addresses))
    out.print(f"Dashboard {api}/")
    out.print(f"API       {api}   (OpenAPI at {api}/docs)")
    out.print(f"JSON-RPC  {api}/rpc")
    out.print("Try:")
    out.print(f"  curl -s {api}/v1/providers")
    out.print(f"  .venv/bin/cona quote --api {api} --device-class gpu --count 1 --min-memory-mib 40000")
    out.print(f"  .venv/bin/cona audit escrow --rpc-url {api}/rpc")


def _providers_table(chosen: tuple[DemoProvider, ...], addresses: list[str]) -> Table:
    """The demo providers started: profile, address, topology node, domain."""
    table = Table(title="demo providers (real hardware profiles)")
    for col in ("profile", "address", "node", "domain"):
        table.add_column(col)
    for p, a in zip(chosen, addresses):
        table.add_row(p.name, a, p.attachment, str(p.domain))
    return table


def _up_domains(s: Any, domains: int, port: Optional[int], providers: int, as_json: bool, once: bool,
                single_only: tuple[tuple[str, Any], ...] = ()) -> None:
    """``cona up --domains N``: the chain, N engine processes, the demo agents in their domains.
    ``single_only``: options of the one-engine market, refused here when given."""
    given = [name for name, value in single_only if value]
    if given:
        raise fail(ConfigError(f"{', '.join(given)} cannot be combined with --domains", field="domains",
                               hint="the multi-domain launcher deploys its own market, with development keys"))
    from marketplace import demo
    from marketplace.federation.launch import Launch
    from marketplace.host import StopSignals

    launch = Launch(s, domains=domains, port=port).start()
    try:
        chosen = launch.demo_providers(providers)
        addresses = demo.launch(launch, chosen, engines=launch.engine_urls(), rpc_url=launch.rpc_url) \
            if chosen else []
        _print_domains(launch, chosen, addresses, as_json)
        if once:
            return
        console.print(f"[green]CONA is up[/] with {domains} domains. Ctrl-C stops everything.")
        with StopSignals() as signals:
            signals.wait()
        console.print("stopping")
    finally:
        launch.stop()


def _print_domains(launch: Any, chosen: tuple, addresses: list[str], as_json: bool) -> None:
    api = launch.api_url
    dep = launch.deployment.to_dict()
    info = {**dep, **launch.info(), "api": api, "rpc": f"{api}/rpc", "docs": f"{api}/docs", "dashboard": f"{api}/",
            "providers": [{"name": p.name, "address": a, "attachment": p.attachment, "domain": p.domain}
                          for p, a in zip(chosen, addresses)],
            "logs": str(launch.supervisor.log_dir)}
    emit(info, as_json, deployment_table(dep))
    if as_json:
        return
    table = Table(title="domains: one engine each")
    for col in ("domain", "engine API", "peering", "home node", "neighbours", "orchestrator"):
        table.add_column(col)
    for d, e in info["domains"].items():
        table.add_row(d, e["api"], e["peer"], str(e["home"]), ",".join(map(str, e["neighbours"])), e["orchestrator"])
    out.print(table)
    out.print(_providers_table(chosen, addresses))
    out.print(f"API (domain 1) {api}   JSON-RPC {api}/rpc   chain {launch.rpc_url}")
