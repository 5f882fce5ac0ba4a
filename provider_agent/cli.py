"""``cona-agent``: the provider agent's command line (thin: parse, call the library, format).

Commands: ``discover`` (this machine, or a captured dump with ``--from DIR``). Other agent
commands join ``app`` as further ``@app.command()`` functions.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from marketplace.errors import ConaError
from marketplace.resources.model import NodeDescriptor
from provider_agent import probe
from provider_agent.discovery import Discovery

log = logging.getLogger(__name__)

app = typer.Typer(help="CONA provider agent.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """CONA provider agent."""


def _flops(value: float) -> str:
    return f"{value / 1e12:g} T"


def _table(node: NodeDescriptor) -> Table:
    table = Table(title=f"{node.hostname}  arch={node.arch}  numa={node.numa_nodes}  "
                        f"memory_mib={node.memory_mib}  disk_gib={node.disk_gib}")
    for col in ("class", "model", "count", "units", "MHz", "mem MiB", "BW GB/s", "peak FLOPS", "interconnect",
                "features", "share"):
        table.add_column(col, overflow="fold")
    for d in node.devices:
        table.add_row(d.device_class.name, d.model, str(d.count), str(d.compute_units), str(d.clock_mhz),
                      str(d.memory_mib), str(d.memory_bandwidth_gbps),
                      " ".join(f"{p.name.lower()}={_flops(v)}" for p, v in d.flops) or "-",
                      d.interconnect or "-", " ".join(sorted(d.features)) or "-", str(d.share_milli))
    return table


def _print(result: Discovery, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        return
    console = Console()
    if console.width < 160:  # a descriptor row does not fit 80 columns; let the terminal wrap instead
        console = Console(width=160)
    console.print(_table(result.descriptor))
    console.print(f"digest 0x{result.descriptor.digest().hex()}", soft_wrap=True)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/dim]")
    for w in result.warnings:
        console.print(f"[yellow]warning: {w}[/yellow]")


@app.command()
def discover(
    from_dir: Optional[Path] = typer.Option(None, "--from", help="discover from a captured dump directory"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    disk_path: str = typer.Option("/", "--disk-path", help="live probe: the filesystem whose free space is offered"),
) -> None:
    """Describe this machine's hardware (or a dump's) as a NodeDescriptor with its digest and warnings."""
    try:
        result = probe.discover_dump(from_dir) if from_dir is not None else probe.discover_live(disk_path)
    except ConaError as exc:
        if as_json:
            typer.echo(json.dumps({"error": exc.to_dict()}), err=True)
        else:
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print(result, as_json)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    app(args=argv)


if __name__ == "__main__":
    main()
