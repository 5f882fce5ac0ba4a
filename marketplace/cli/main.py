"""``cona``: the command line. Thin: it parses arguments, builds settings, calls the library, prints.

Every command can print ``--json`` for scripts. Errors from the ``ConaError`` tree are
printed as one line with a hint (no traceback) and exit with status 2; a mistyped
command gets click's "did you mean" suggestion.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from marketplace.errors import ConaError
from marketplace.settings import ConaSettings

console = Console(stderr=True)
out = Console()


app = typer.Typer(help="CONA: an open market for computing power.", no_args_is_help=True,
                  add_completion=True, pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks: one JSON object of figures on stdout.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _add_subcommands() -> None:
    """Command groups that live in their own modules (one module per group, as brownie did)."""
    from bench.gas import bench_gas
    from marketplace.cli import buyer
    from marketplace.cli.audit import audit_app
    from marketplace.cli.engine import replay
    from marketplace.cli.serve import serve
    from marketplace.cli.tier import tier_app
    from marketplace.peering.cli import peer_app

    app.add_typer(tier_app, name="tier", help="VIP tier credentials and zero-knowledge tier proofs.")
    app.add_typer(audit_app, name="audit", help="Auditor: order, provider and escrow history from chain data alone.")
    bench_app.command("gas")(bench_gas)
    audit_app.command("replay")(replay)
    app.command("quote")(buyer.quote)
    app.command("providers")(buyer.providers)
    app.command("topology")(buyer.topology)
    app.add_typer(buyer.order_app, name="order", help="Buyers: place, watch, explain, cancel and dispute orders.")
    app.add_typer(buyer.dev_app, name="dev", help="Local development chains only: advance time, fund accounts.")
    app.command("serve")(serve)
    app.add_typer(peer_app, name="peer", help="Engine peers: flood Compute LSAs between processes (IS-IS style).")



ChainOpt = typer.Option(None, "--chain", help="chain backend: embedded, anvil or rpc")
RpcOpt = typer.Option(None, "--rpc-url", help="JSON-RPC URL (implies --chain rpc)")
JsonOpt = typer.Option(False, "--json", help="print JSON for scripts")


def settings(chain: Optional[str] = None, rpc_url: Optional[str] = None) -> ConaSettings:
    overrides: dict[str, Any] = {}
    if rpc_url:
        overrides["rpc_url"] = rpc_url
        overrides["chain"] = "rpc"
    if chain:
        overrides["chain"] = chain
    return ConaSettings(**overrides)


def emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
    elif table is not None:
        out.print(table)
    else:
        out.print(data)


# ---------------------------------------------------------------------------- commands


@app.command()
def compile(as_json: bool = JsonOpt, check: bool = typer.Option(False, "--check",
            help="only check that committed artifacts match their sources")) -> None:
    """Compile contracts/ into contracts/build/ (native solc if installed, else solc-js)."""
    from marketplace.chain.compiler import check_artifacts, compile_project

    cfg = settings().project()
    if check:
        problems = check_artifacts(cfg)
        emit({"fresh": not problems, "problems": problems}, as_json)
        raise typer.Exit(1 if problems else 0)
    report = compile_project(cfg)
    for w in report.warnings:
        console.print(f"[yellow]warning[/] {w}")
    emit({"compiler": report.compiler, "artifacts": list(report.artifacts)}, as_json)


@app.command()
def deploy(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt) -> None:
    """Deploy the market contracts and print their addresses (and write them to the state directory)."""
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import deploy_market

    s = settings(chain, rpc_url)
    ch = Chain.open(s)
    try:
        dep = deploy_market(ch, state_dir=s.state_dir)
        emit(dep.to_dict(), as_json, _deployment_table(dep.to_dict()))
    finally:
        ch.close()


def _deployment_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"CONA on {data['backend']} (chain id {data['chain_id']})")
    table.add_column("contract")
    table.add_column("address")
    for name, addr in data["contracts"].items():
        table.add_row(name, addr)
    return table


@app.command()
def up(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
       port: Optional[int] = typer.Option(None, "--port", help="API port (default CONA_API_PORT, 8000)"),
       providers: int = typer.Option(5, "--providers", min=0, max=5,
                                     help="demo provider agents to start (real hardware profiles)"),
       once: bool = typer.Option(False, "--once", help="bring everything up, print, and stop")) -> None:
    """Start the market: the chain, the contracts, the engine with its API, and demo provider agents."""
    from marketplace import demo
    from marketplace.cli.up import start, wait_for_signal

    chosen = demo.DEMO_PROVIDERS[:providers]
    addresses: list[str] = []
    running = start(settings(chain, rpc_url), port=port,
                    agents=[lambda r: addresses.extend(demo.launch(r, chosen))] if chosen else [])
    try:
        dep = running.deployment.to_dict()
        api = running.api_url
        info = {**dep, "api": api, "rpc": f"{api}/rpc", "docs": f"{api}/docs", "dashboard": f"{api}/",
                "providers": [{"name": p.name, "address": a, "attachment": p.attachment, "domain": p.domain}
                              for p, a in zip(chosen, addresses)],
                "logs": str(running.supervisor.log_dir)}
        emit(info, as_json, _deployment_table(dep))
        if not as_json:
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
        if once:
            return
        console.print("[green]CONA is up.[/] Ctrl-C stops everything.")
        wait_for_signal()
        console.print("stopping")
    finally:
        running.stop()


@bench_app.command("chain")
def bench_chain(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """Contract transactions per second through the writer (embedded, anvil, batched) and the web3 baseline."""
    from bench import chain as bench_mod

    emit(bench_mod.run(quick=quick), True)


@bench_app.command("route")
def bench_route(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """Convergence layer: SPF at 10k/100k nodes (and networkx), incremental updates, LSA decode and
    verify rates, flooding convergence across five peer processes."""
    from bench import flood, lsa, route

    emit({**route.run(quick=quick), **lsa.run(quick=quick), **flood.run(quick=quick)}, True)


@bench_app.command("match")
def bench_match(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """Matching on the Alibaba GPU trace at 1k/10k/100k providers against first fit, and order placed to
    lease on chain through the engine (embedded chain), with the heartbeat failure-detection time."""
    from bench import lease, match

    emit({**match.run(quick=quick), **lease.run(quick=quick)}, True)


@bench_app.command("api")
def bench_api(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """API reads at a bounded open-loop load of 1,000 req/s against `cona up` (p50/p99 from the scheduled
    send time), and order placed to lease through HTTP."""
    from bench import api

    emit(api.run(quick=quick), True)


@bench_app.command("zk")
def bench_zk(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """Tier proofs: prove and verify time in Python, gas on chain, at ring sizes 4, 16 and 32."""
    from bench import zk as bench_mod

    emit(bench_mod.run(quick=quick), True)


@bench_app.command("runtime")
def bench_runtime(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """Workload start-up in the provider agent's runtimes: wasm compile and start, a container with every limit
    on, and its overhead over the same static program run natively."""
    from bench import runtime as bench_mod

    emit(bench_mod.run(quick=quick), True)


_add_subcommands()


def main(argv: list[str] | None = None, *, command: typer.Typer | None = None, prog_name: str | None = None) -> None:
    """Run ``cona`` (or one of its command groups alone, for ``python -m marketplace.cli.<group>``):
    a ``ConaError`` becomes one line with its hint and exit status 2, never a traceback."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        (command or app)(args=argv, prog_name=prog_name, standalone_mode=True)
    except ConaError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        if exc.hint:
            console.print(f"[dim]hint:[/] {exc.hint}")
        sys.exit(2)


if __name__ == "__main__":
    main()
