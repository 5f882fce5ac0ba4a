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
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from marketplace.cli.contracts import deployment_table
from marketplace.cli.options import ChainOpt, DataDirOpt, JsonOpt, PassphraseOpt, RpcOpt, settings
from marketplace.cli.output import console, emit, fail, out
from marketplace.errors import ConaError

if TYPE_CHECKING:
    from marketplace.demo import DemoProvider
    from marketplace.host import Host


def up(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
       port: Optional[int] = typer.Option(None, "--port", help="API port (default CONA_API_PORT, 8000)"),
       providers: int = typer.Option(5, "--providers", min=0, max=5,
                                     help="demo provider agents to start (real hardware profiles; development "
                                          "chains only)"),
       data_dir: Optional[Path] = DataDirOpt,
       fresh: bool = typer.Option(False, "--fresh", help="start over: wipe the market kept in the data directory"),
       deploy: bool = typer.Option(False, "--deploy", help="deploy the market when none is recorded for the chain "
                                                          "(automatic on a development chain)"),
       key_file: Optional[Path] = typer.Option(None, "--orchestrator-key-file",
                                               help="V3 keystore of the orchestrator (else a development key)"),
       passphrase_file: Optional[Path] = PassphraseOpt,
       admin_key_file: Optional[Path] = typer.Option(None, "--admin-key-file",
                                                     help="V3 keystore of the admin, who pays for and owns a "
                                                          "deployment made with --deploy"),
       admin_passphrase_file: Optional[Path] = typer.Option(None, "--admin-passphrase-file",
                                                            help="the admin keystore's passphrase file (default "
                                                                 "--passphrase-file)"),
       once: bool = typer.Option(False, "--once", help="bring everything up, print, and stop")) -> None:
    """Start the market: the chain, the contracts, the engine with its API, and demo provider agents."""
    from marketplace.datadir import DataDir

    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    s = settings(chain, rpc_url, **overrides)
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
    table = Table(title="demo providers (real hardware profiles)")
    for col in ("profile", "address", "node", "domain"):
        table.add_column(col)
    for p, a in zip(chosen, addresses):
        table.add_row(p.name, a, p.attachment, str(p.domain))
    out.print(table)
    out.print(f"Dashboard {api}/")
    out.print(f"API       {api}   (OpenAPI at {api}/docs)")
    out.print(f"JSON-RPC  {api}/rpc")
    out.print("Try:")
    out.print(f"  curl -s {api}/v1/providers")
    out.print(f"  .venv/bin/cona quote --api {api} --device-class gpu --count 1 --min-memory-mib 40000")
    out.print(f"  .venv/bin/cona audit escrow --rpc-url {api}/rpc")
