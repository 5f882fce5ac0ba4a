"""``cona``: the command line, assembled from its command groups. Thin: each group parses its
arguments, builds settings, calls the library and prints through ``marketplace.cli.output``.

This module only wires the groups together (one module per group, as brownie did); it holds
no command itself, and no group imports it, so each group also runs alone as
``python -m marketplace.cli.<group>``. Every command can print ``--json`` for scripts; a
``ConaError`` is one line with its hint and exit status 2 (``output.run``); a mistyped command
gets click's "did you mean" suggestion.
"""

from __future__ import annotations

import typer

from marketplace.cli import admin, artifacts, audit, bench, contracts, dev, orders, output, quote, serve, tier, up
from marketplace.peering.cli import peer_app

app = typer.Typer(help="CONA: an open market for computing power.", no_args_is_help=True,
                  add_completion=True, pretty_exceptions_enable=False)

app.command("compile")(contracts.compile)
app.command("deploy")(contracts.deploy)
app.command("up")(up.up)
app.command("quote")(quote.quote)
app.command("providers")(quote.providers)
app.command("topology")(quote.topology)
app.command("serve")(serve.serve)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(tier.tier_app, name="tier", help="VIP tier credentials and zero-knowledge tier proofs.")
app.add_typer(audit.audit_app, name="audit", help="Auditor: order, provider and escrow history from chain data alone.")
app.add_typer(orders.order_app, name="order", help="Buyers: place, watch, explain, cancel and dispute orders.")
app.add_typer(artifacts.artifact_app, name="artifact", help="Buyers: upload, download and build artifacts by sha256.")
app.add_typer(dev.dev_app, name="dev", help="Local development chains only: advance time, fund accounts.")
app.add_typer(admin.admin_app, name="admin", help="Operator: market terms, orchestrators, least stake (timelock).")
app.add_typer(peer_app, name="peer", help="Engine peers: flood Compute LSAs between processes (IS-IS style).")

def main(argv: list[str] | None = None) -> None:
    """Run ``cona``: a ``ConaError`` becomes one line with its hint and exit status 2, never a traceback."""
    output.run(app, argv)


if __name__ == "__main__":
    main()
