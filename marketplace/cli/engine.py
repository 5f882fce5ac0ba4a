"""``cona audit replay BATCH``: rerun one committed matching batch and check it against the chain.

Opens the chain (``--chain``/``--rpc-url``; for a market that ``cona up`` runs on its embedded
chain, point at its ``/rpc``: ``--rpc-url http://127.0.0.1:8000/rpc``), finds the market in the
deployment record, reads the batch's ``BatchCommitted`` event (and the ``Assigned`` events that
name the batch, from the same ``assignBatch`` transaction), loads the batch's inputs from the
engine's state directory (``<state dir>/engine/<chain id>/batches/<inputsHash>.json``, or
``--engine-dir``), checks their hash, reruns the deterministic matcher and compares the
decisions' hash with the committed one.

Exit status: 0 reproduced, 1 the decisions differ, 2 an error (no such batch, inputs missing
or tampered with, chain unreachable). Sub-app ``engine_app`` (command ``replay``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

log = logging.getLogger(__name__)

engine_app = typer.Typer(help="The engine's verifiable matching records.", no_args_is_help=True)


@engine_app.command("replay")
def replay(batch: str = typer.Argument(..., help="batch id (0x + 64 hex), from a BatchCommitted event"),
           chain_kind: Optional[str] = typer.Option(None, "--chain", help="embedded, anvil or rpc"),
           rpc_url: Optional[str] = typer.Option(None, "--rpc-url", help="JSON-RPC URL (implies --chain rpc)"),
           engine_dir: Optional[Path] = typer.Option(None, "--engine-dir", help="the engine's state directory"),
           topology: Optional[Path] = typer.Option(None, "--topology", help="topology file the engine ran on"),
           as_json: bool = typer.Option(False, "--json", help="print JSON for scripts")) -> None:
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import load_deployment
    from marketplace.chain.indexer import EventIndexer
    from marketplace.chain.market import Market
    from marketplace.cli.up import TOPOLOGY
    from marketplace.engine.service import replay_batch
    from marketplace.errors import ConaError
    from marketplace.routing import RoutingTable, load_topology
    from marketplace.settings import ConaSettings

    kw = {}
    if rpc_url:
        kw = {"chain": "rpc", "rpc_url": rpc_url}
    elif chain_kind:
        kw = {"chain": chain_kind}
    settings = ConaSettings(**kw)
    try:
        chain = Chain.open(settings)
    except ConaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    try:
        dep = load_deployment(chain, settings.state_dir)
        market = Market.from_deployment(chain, dep)
        indexer = EventIndexer(chain.backend, {"ComputeMarket": (market.address, chain.abis["ComputeMarket"])},
                               start_block=dep.block)
        state = engine_dir or settings.state_dir / "engine" / str(dep.chain_id)
        routing = RoutingTable(load_topology(topology or TOPOLOGY))
        out = replay_batch(indexer, market, state, batch, routing=routing)
    except ConaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    finally:
        chain.close()
    if as_json:
        typer.echo(json.dumps(out, indent=1))
    else:
        verdict = "reproduced" if out["reproduced"] else "DIFFERENT"
        typer.echo(f"batch {out['batch_id']} (block {out['block']}, tx {out['tx']}): {out['orders']} orders, "
                   f"{out['providers']} providers")
        typer.echo(f"  inputs hash    {out['inputs_hash']} (matches the chain)")
        typer.echo(f"  decisions hash {out['decisions_hash']} on chain, {out['replayed_decisions_hash']} replayed: "
                   f"{verdict}")
        assigned = ", ".join(map(str, out["assigned"])) or "none"
        typer.echo(f"  assigned on chain in the same transaction: orders {assigned}")
        for oid, provider, _, backups in out["decisions"]:
            typer.echo(f"  order {oid} -> {provider} (backups: {', '.join(backups) or 'none'})")
    raise typer.Exit(0 if out["reproduced"] else 1)


if __name__ == "__main__":  # pragma: no cover
    from marketplace.cli.main import main

    main(command=engine_app, prog_name="cona audit")
