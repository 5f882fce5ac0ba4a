"""``cona peer ...``: run an engine peer and query a running one over its control socket.

Thin: ``run`` hands its arguments to ``marketplace.peering.node``; ``status`` and
``originate`` send one control request and print the reply.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from marketplace.peering.harness import control

peer_app = typer.Typer(help="Engine peers: flooding Compute LSAs between engines.", no_args_is_help=True)

ControlOpt = typer.Option(..., "--control", help="the peer's control socket path (its --control)")


@peer_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(ctx: typer.Context) -> None:
    """Run a peer in the foreground; options as ``python -m marketplace.peering.node --help``."""
    from marketplace.peering.node import main

    raise typer.Exit(main(list(ctx.args)))


@peer_app.command("status")
def status(control_path: str = ControlOpt) -> None:
    """A running peer's LSDB size and digest, adjacencies and counters, as JSON."""
    typer.echo(json.dumps(control(control_path, {"cmd": "status"}), indent=2, sort_keys=True))


@peer_app.command("originate")
def originate(file: Path = typer.Argument(..., exists=True, dir_okay=False), control_path: str = ControlOpt) -> None:
    """Have a running peer originate (and then refresh) the LSAs an origination file describes."""
    typer.echo(json.dumps(control(control_path, {"cmd": "originate", "file": str(file.resolve())})))
