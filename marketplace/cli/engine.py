"""``cona audit replay BATCH``: rerun one committed matching batch and check it against the chain.

Opens the chain (``--chain``/``--rpc-url``; for a market that ``cona up`` runs on its embedded
chain, point at its ``/rpc``: ``--rpc-url http://127.0.0.1:8000/rpc``), finds the market in the
deployment record, reads the batch's ``BatchCommitted`` event (and the ``Assigned`` events that
name the batch, from the same ``assignBatch`` transaction), loads the batch's inputs from the
engine's state directory (``<state dir>/engine/<chain id>/batches/<inputsHash>.json``, or
``--engine-dir``; for a market of ``cona up --domains N``, each domain's engine's directory
``<state dir>/domains/<d>/engine/<chain id>`` too), checks their hash, reruns the deterministic matcher and compares the
decisions' hash with the committed one.

Exit status: 0 reproduced, 1 the decisions differ, 2 an error (no such batch, inputs missing
or tampered with, chain unreachable). Sub-app ``engine_app`` (command ``replay``); ``cona
audit`` (``marketplace.cli.audit``) carries the same command.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import typer

from marketplace.cli.options import ChainOpt, JsonOpt, RpcOpt, settings
from marketplace.cli.output import run
from marketplace.settings import DEFAULT_TOPOLOGY

log = logging.getLogger(__name__)

engine_app = typer.Typer(help="The engine's verifiable matching records.", no_args_is_help=True)


@engine_app.command("replay")
def replay(batch: str = typer.Argument(..., help="batch id (0x + 64 hex), from a BatchCommitted event"),
           chain_kind: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt,
           engine_dir: Optional[Path] = typer.Option(None, "--engine-dir", help="the engine's state directory"),
           topology: Optional[Path] = typer.Option(None, "--topology", help="topology file the engine ran on"),
           as_json: bool = JsonOpt) -> None:
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import load_deployment
    from marketplace.chain.indexer import EventIndexer
    from marketplace.chain.market import Market
    from marketplace.engine.service import replay_batch
    from marketplace.routing import RoutingTable, load_topology

    s = settings(chain_kind, rpc_url)
    chain = Chain.open(s)
    try:
        dep = load_deployment(chain, s.state_dir)
        market = Market.from_deployment(chain, dep)
        indexer = EventIndexer(chain.backend, {"ComputeMarket": (market.address, chain.abis["ComputeMarket"])},
                               start_block=dep.block)
        chain_id = str(dep.chain_id)
        state = [engine_dir] if engine_dir else [s.state_dir / "engine" / chain_id,
                                                   *sorted(s.state_dir.glob(f"domains/*/engine/{chain_id}"))]
        routing = RoutingTable(load_topology(topology or DEFAULT_TOPOLOGY))
        result = replay_batch(indexer, market, state, batch, routing=routing)
    finally:
        chain.close()
    if as_json:
        typer.echo(json.dumps(result, indent=1))
    else:
        _print_replay(result)
    raise typer.Exit(0 if result["reproduced"] else 1)


def _print_replay(r: dict[str, Any]) -> None:
    verdict = "reproduced" if r["reproduced"] else "DIFFERENT"
    typer.echo(f"batch {r['batch_id']} (block {r['block']}, tx {r['tx']}): {r['orders']} orders, "
               f"{r['providers']} providers")
    typer.echo(f"  inputs hash    {r['inputs_hash']} (matches the chain)")
    typer.echo(f"  decisions hash {r['decisions_hash']} on chain, {r['replayed_decisions_hash']} replayed: "
               f"{verdict}")
    assigned = ", ".join(map(str, r["assigned"])) or "none"
    typer.echo(f"  assigned on chain in the same transaction: orders {assigned}")
    for oid, provider, _, backups in r["decisions"]:
        typer.echo(f"  order {oid} -> {provider} (backups: {', '.join(backups) or 'none'})")


if __name__ == "__main__":  # pragma: no cover
    run(engine_app, prog_name="cona audit")
