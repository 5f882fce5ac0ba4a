"""``cona audit``: order, provider and batch histories and the escrow check, read from the chain only.

Runs in a fresh process with no engine: it opens the chain (``--chain``/``--rpc-url``),
finds the market in the deployment record of the state directory (or ``--market
ADDR``), brings an event index up to the head and answers from logs and contract views
(``marketplace.chain.audit``). The index is kept in ``<state dir>/index/`` so the next
audit reads only new blocks; it is a cache, rebuilt from the chain when deleted.

Exit status: 0 when the history replays to the contract's state (or the books balance, or the
batch's events agree with its record),
1 when the auditor found a discrepancy (printed), 2 on an error (unknown order, no
deployment, chain unreachable).

``cona audit replay`` (``marketplace.cli.engine``) reruns a matching batch. Wired into ``cona``
as ``app.add_typer(audit_app, name="audit")``; also runnable alone as ``python -m marketplace.cli.audit``.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

import typer
from rich.table import Table

from marketplace.cli.engine import replay
from marketplace.cli.options import ChainOpt, JsonOpt, RpcOpt, settings
from marketplace.cli.output import emit, out, run, wide

log = logging.getLogger(__name__)

audit_app = typer.Typer(help="Audit the market from chain data alone: histories and the escrow check.",
                        no_args_is_help=True)

MarketOpt = typer.Option(None, "--market", help="ComputeMarket address (default: the deployment record)")
FromOpt = typer.Option(0, "--from-block", min=0, help="first block to index (default 0: the whole chain)")
NoCacheOpt = typer.Option(False, "--no-cache", help="index in memory instead of the state directory")


@contextmanager
def _auditor(chain: Optional[str], rpc_url: Optional[str], market: Optional[str], from_block: int,
             no_cache: bool) -> Iterator[Any]:
    from marketplace.chain.audit import Auditor, index_path
    from marketplace.chain.contracts import Chain
    from marketplace.chain.deploy import load_deployment

    s = settings(chain, rpc_url)
    ch = Chain.open(s)
    auditor = None
    try:
        if market is None:
            market = load_deployment(ch, s.state_dir).address("ComputeMarket")
        genesis = ch.backend.request("eth_getBlockByNumber", ["0x0", False])["hash"]
        db = None if no_cache else index_path(s.state_dir, ch.backend.chain_id, genesis, market)
        auditor = Auditor.open(ch, market_address=market, db_path=db, start_block=from_block)
        yield auditor
    finally:
        if auditor is not None:
            auditor.close()
        ch.close()


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _short(h: str) -> str:
    return h[:10] + "…" if len(h) > 12 else h


def _amounts(entry: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in entry.amounts.items())


def _other_args(entry: Any) -> str:
    from marketplace.chain.audit import AMOUNT_ARGS

    skip = set(AMOUNT_ARGS) | {"order", "requirement", "digest", "result"}
    return " ".join(f"{k}={_short(str(v))}" for k, v in entry.args.items() if k not in skip)


def _events_table(title: str, entries: Any, with_state: bool) -> Table:
    table = Table(title=title)
    for col in ("block", "time (UTC)", "event", "tx", "log") + (("state",) if with_state else ()) + ("amounts",
                                                                                                       "details"):
        table.add_column(col, no_wrap=col in ("block", "tx", "log"))
    for e in entries:
        row = [str(e.block), _when(e.timestamp), e.event, _short(e.tx_hash), str(e.log_index)]
        if with_state:
            row.append(e.state or "")
        table.add_row(*row, _amounts(e), _other_args(e))
    return table


def _verdict(ok: bool, mismatches: Any, what: str) -> None:
    if ok:
        out.print(f"[green]{what}[/]")
    else:
        out.print("[red]discrepancies:[/]")
        for m in mismatches:
            out.print(f"  - {m}")


@audit_app.command("order")
def order(order_id: int = typer.Argument(..., help="the order id"), chain: Optional[str] = ChainOpt,
          rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt, market: Optional[str] = MarketOpt,
          from_block: int = FromOpt, no_cache: bool = NoCacheOpt) -> None:
    """Every transition of an order (block, time, tx, amounts), its state, and the replay check."""
    with _auditor(chain, rpc_url, market, from_block, no_cache) as auditor:
        h = auditor.order(order_id)
    if as_json:
        emit(h.to_dict(), True)
    else:
        out.print(_events_table(f"order {h.order_id} on {h.market} (as of block {h.block})", h.transitions, True))
        if h.slashes:
            out.print(_events_table("slashes", h.slashes, False))
        m = h.money
        out.print(f"state {h.state.name} (events replay to {h.replayed_state.name});  buyer {h.order.buyer}")
        out.print(f"matching batch {h.batch_id}" if h.batch_id else "matching batch: none (not assigned by a batch)")
        out.print(f"escrow {m.escrow} = paid {m.paid} (fees {m.fees}) + refunded {m.refunded} + remaining "
                  f"{m.remaining};  compensated from slashes {m.compensated}, burned {m.burned}")
        _verdict(h.consistent, h.mismatches, "the events replay to the contract's state")
    raise typer.Exit(0 if h.consistent else 1)


@audit_app.command("provider")
def provider(address: str = typer.Argument(..., help="the provider's address"), chain: Optional[str] = ChainOpt,
             rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt, market: Optional[str] = MarketOpt,
             from_block: int = FromOpt, no_cache: bool = NoCacheOpt) -> None:
    """A provider's registration, stake changes, status, slashes, leases and earnings."""
    with _auditor(chain, rpc_url, market, from_block, no_cache) as auditor:
        h = auditor.provider(address)
    if as_json:
        emit(h.to_dict(), True)
    else:
        out.print(_events_table(f"provider {h.address} (as of block {h.block})", h.events, False))
        leases = Table(title="leases")
        for col in ("order", "assigned at block", "outcome", "paid", "fee", "earned", "slashed"):
            leases.add_column(col)
        for x in h.leases:
            leases.add_row(str(x.order_id), str(x.assigned_block), x.outcome, str(x.paid), str(x.fee),
                           str(x.earned), str(x.slashed))
        out.print(leases)
        out.print(f"status {h.status.name}, stake {h.stake}, live leases {h.live_leases}, slashed {h.slashed}")
        out.print(f"earned {h.earned}, withdrawn {h.withdrawn}, withdrawable {h.market_balance}")
        _verdict(h.consistent, h.mismatches, "the events replay to the registry's record")
    raise typer.Exit(0 if h.consistent else 1)


@audit_app.command("batch")
def batch(batch_id: str = typer.Argument(..., help="the batch id (0x + 64 hex), e.g. from `cona order batch ID`"),
          chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
          market: Optional[str] = MarketOpt, from_block: int = FromOpt, no_cache: bool = NoCacheOpt) -> None:
    """A matching batch: its BatchCommitted (block, time, tx, hashes) and every order it assigned."""
    with _auditor(chain, rpc_url, market, from_block, no_cache) as auditor:
        b = auditor.batch(batch_id)
    if as_json:
        emit(b.to_dict(), True)
    else:
        out.print(f"batch {b.batch_id} on {b.market}")
        out.print(f"  recorded at block {b.block} ({_when(b.timestamp)} UTC), tx {b.tx_hash}, log {b.log_index}")
        out.print(f"  inputs hash    {b.inputs_hash}")
        out.print(f"  decisions hash {b.decisions_hash}")
        table = Table(title=f"{b.orders} orders assigned in that transaction (as of block {b.as_of})")
        for col in ("order", "provider", "price", "backups", "accept by", "log"):
            table.add_column(col, no_wrap=col in ("order", "provider", "log"))
        for a in b.assignments:
            table.add_row(str(a.order_id), a.provider, str(a.price), ", ".join(_short(x) for x in a.backups) or "-",
                          _when(a.accept_deadline), str(a.log_index))
        out.print(table)
        _verdict(b.consistent, b.mismatches, "the batch's events agree with the contract's record")
    raise typer.Exit(0 if b.consistent else 1)


@audit_app.command("escrow")
def escrow(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
           market: Optional[str] = MarketOpt, from_block: int = FromOpt, no_cache: bool = NoCacheOpt) -> None:
    """Whether the market and the registry hold what they owe, by their books and by their events."""
    with _auditor(chain, rpc_url, market, from_block, no_cache) as auditor:
        a = auditor.escrow()
    if as_json:
        emit(a.to_dict(), True)
    else:
        table = Table(title=f"escrow as of block {a.block}")
        for col in ("contract", "holds", "owes (its books)", "owes (its events)", "balanced"):
            table.add_column(col)
        table.add_row("ComputeMarket", str(a.market.held), str(a.market.owed), str(a.owed_from_events),
                      "yes" if a.market.balanced else "NO")
        table.add_row("ProviderRegistry", str(a.registry.held), str(a.registry.owed),
                      str(a.staked_from_events + a.released_from_events), "yes" if a.registry.balanced else "NO")
        out.print(table)
        roles = Table(title="owed by role")
        roles.add_column("to")
        roles.add_column("amount")
        for role, amount in a.owed_by_role.items():
            roles.add_row(role, str(amount))
        out.print(roles)
        _verdict(a.balanced, a.mismatches, "balanced: each contract holds what it owes, and its events agree")
    raise typer.Exit(0 if a.balanced else 1)


@audit_app.command("governance")
def governance(chain: Optional[str] = ChainOpt, rpc_url: Optional[str] = RpcOpt, as_json: bool = JsonOpt,
               market: Optional[str] = MarketOpt, from_block: int = FromOpt, no_cache: bool = NoCacheOpt) -> None:
    """Who governs the market (its admin, the timelock's delay) and every change of its terms,
    orchestrators and least stake, checked against the contracts."""
    with _auditor(chain, rpc_url, market, from_block, no_cache) as auditor:
        g = auditor.governance()
    if as_json:
        emit(g.to_dict(), True)
    else:
        delay = "not a timelock" if g.admin_delay is None else f"timelock, least delay {g.admin_delay} s"
        out.print(f"market {g.market} as of block {g.block}: admin {g.admin} ({delay})")
        table = Table(title="terms by version (orders keep the version they were placed under)")
        for col in ("version", "since", "fee bps", "slash bps miss/fail/dispute", "windows s accept/dispute/arbitration",
                    "run grace s", "arbiter", "tx"):
            table.add_column(col)
        for v in g.terms:
            t = v.terms
            table.add_row(str(v.version), _when(v.entry.timestamp), str(t.fee_bps),
                          f"{t.miss_slash_bps}/{t.fail_slash_bps}/{t.dispute_slash_bps}",
                          f"{t.accept_window}/{t.dispute_window}/{t.arbitration_window}", str(t.run_grace),
                          _short(t.arbiter), _short(v.entry.tx_hash))
        wide().print(table)
        for who, allowed in g.orchestrators.items():
            out.print(f"orchestrator {who}: {'allowed' if allowed else 'revoked'}")
        _verdict(g.consistent, g.mismatches, "consistent: every change is an event and the contracts agree")
    raise typer.Exit(0 if g.consistent else 1)


audit_app.command("replay")(replay)

if __name__ == "__main__":  # ``python -m marketplace.cli.audit ...``: the group alone, with cona's error handling
    run(audit_app, prog_name="cona audit")
