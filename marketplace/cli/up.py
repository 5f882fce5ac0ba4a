"""``cona up``: the whole market in one command. A ``Host`` (``marketplace.host``: the chain, the
contracts, the engine loop and the API) plus demo provider agents.

The engine runs on a real topology (``marketplace/data/topologies/Geant2012.graphml``); its
state (event index, specs, batch inputs, results) lives in ``<state dir>/engine``. The demo
agents are real ``cona-agent`` processes with hardware profiles captured on real machines
(``marketplace.demo``), supervised by the host, started once the API listens.

The embedded chain lives in this process and is served to other processes at ``/rpc``;
``--chain anvil`` starts a managed anvil; ``--rpc-url`` uses any node. Ctrl-C (or
SIGTERM) stops everything in reverse order: the agents, the API, the engine, then the chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table

from marketplace.cli.contracts import deployment_table
from marketplace.cli.options import ChainOpt, JsonOpt, RpcOpt, settings
from marketplace.cli.output import console, emit, out

if TYPE_CHECKING:
    from marketplace.demo import DemoProvider
    from marketplace.host import Host


def up(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
       port: Optional[int] = typer.Option(None, "--port", help="API port (default CONA_API_PORT, 8000)"),
       providers: int = typer.Option(5, "--providers", min=0, max=5,
                                     help="demo provider agents to start (real hardware profiles)"),
       once: bool = typer.Option(False, "--once", help="bring everything up, print, and stop")) -> None:
    """Start the market: the chain, the contracts, the engine with its API, and demo provider agents."""
    # the host pulls in the chain, the engine and the web stack: imported when the command runs,
    # so that `cona --help` and the light commands start fast
    from marketplace import demo
    from marketplace.host import Host, HostConfig, StopSignals

    chosen = demo.DEMO_PROVIDERS[:providers]
    host = Host(settings(chain, rpc_url), HostConfig(port=port)).start()
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
        "logs": str(host.supervisor.log_dir)}
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
