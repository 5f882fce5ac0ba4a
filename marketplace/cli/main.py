"""``cona``: the command line. Thin: it parses arguments, builds settings, calls the library, prints.

Every command can print ``--json`` for scripts. Errors from the ``ConaError`` tree are
printed as one line with a hint (no traceback) and exit with status 2; a mistyped
command gets click's "did you mean" suggestion.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
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
       once: bool = typer.Option(False, "--once", help="deploy, print, and exit instead of serving")) -> None:
    """Start the market: the chain, the contracts, and (as they land) the engine, API and demo agents."""
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import deploy_market

    s = settings(chain, rpc_url)
    ch = Chain.open(s)
    try:
        dep = deploy_market(ch, state_dir=s.state_dir)
        emit(dep.to_dict(), as_json, _deployment_table(dep.to_dict()))
        if once:
            return
        console.print("[green]CONA is up.[/] Press Ctrl-C to stop.")
        stop = {"flag": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
        try:
            while not stop["flag"]:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        console.print("stopping")
    finally:
        ch.close()


@bench_app.command("chain")
def bench_chain(as_json: bool = JsonOpt, quick: bool = typer.Option(False, "--quick", help="a short smoke run")) -> None:
    """Contract transactions per second through the writer (embedded, anvil, batched) and the web3 baseline."""
    from bench import chain as bench_mod

    emit(bench_mod.run(quick=quick), True if as_json else True)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, standalone_mode=True)
    except ConaError as exc:
        console.print(f"[red]error:[/] {exc.message}")
        if exc.hint:
            console.print(f"[dim]hint:[/] {exc.hint}")
        sys.exit(2)


if __name__ == "__main__":
    main()
