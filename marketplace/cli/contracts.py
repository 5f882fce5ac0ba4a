"""``cona compile`` and ``cona deploy``: the market's contracts, built and put on a chain.

``compile`` turns ``contracts/`` into ``contracts/build/`` (native solc when installed, else
solc-js), or with ``--check`` only says whether the committed artifacts match their sources
(exit 1 when they do not). ``deploy`` deploys and wires the market on the chosen chain and
writes the deployment record to the state directory, where every later command finds it.
"""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from marketplace.cli.options import ChainOpt, JsonOpt, RpcOpt, settings
from marketplace.cli.output import console, emit


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


def deploy(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt) -> None:
    """Deploy the market contracts and print their addresses (and write them to the state directory)."""
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import deploy_market

    s = settings(chain, rpc_url)
    ch = Chain.open(s)
    try:
        dep = deploy_market(ch, state_dir=s.state_dir)
        emit(dep.to_dict(), as_json, deployment_table(dep.to_dict()))
    finally:
        ch.close()


def deployment_table(data: dict[str, Any]) -> Table:
    """A deployment record (``Deployment.to_dict()``) as a table of contract addresses."""
    table = Table(title=f"CONA on {data['backend']} (chain id {data['chain_id']})")
    table.add_column("contract")
    table.add_column("address")
    for name, addr in data["contracts"].items():
        table.add_row(name, addr)
    return table
