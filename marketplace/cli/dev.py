"""``cona dev``: the local-chain conveniences a walkthrough needs, refused on any other chain.

``advance-time`` moves a development chain's clock forward and mines a block (past a dispute
window, say); ``fund`` sends test ETH from the faucet, development account ``FAUCET_ACCOUNT``.
Both reach the chain through the market's API (``<api>/rpc``) and check first that its chain
id is a development chain's (``marketplace.cli.remote.DEV_CHAIN_IDS``).
"""

from __future__ import annotations

from typing import Optional

import typer

from marketplace.cli.keys import dev_signer
from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit, eth, run
from marketplace.cli.remote import ApiOpt, connect, require_dev_chain
from marketplace.errors import InputError

#: the dev account ``cona dev fund`` pays from: the last of the 20, which no role or demo provider uses
FAUCET_ACCOUNT = 19

dev_app = typer.Typer(help="Local development chains only: move time, fund accounts.", no_args_is_help=True)


@dev_app.command("advance-time")
def advance_time(seconds: int = typer.Argument(..., min=1, max=366 * 24 * 3600, help="seconds to move forward"),
                 api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Move a local chain's clock forward and mine a block (e.g. past a dispute window)."""
    m = connect(api)
    try:
        require_dev_chain(m, "`cona dev advance-time`")
        before = m.market.chain_time()
        m.chain.backend.increase_time(seconds)
        after = m.market.chain_time()
    finally:
        m.close()
    emit({"chain_id": m.chain_id, "before": before, "after": after}, as_json,
         f"chain {m.chain_id}: block time {before} -> {after} (+{after - before} s)")


@dev_app.command("fund")
def fund(address: str = typer.Argument(..., help="the account to fund"),
         amount: float = typer.Option(10.0, "--eth", min=0.000001, max=1000.0, help="ETH to send"),
         api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Send ETH from a development account (the faucet, dev account 19) on a local chain."""
    from eth_utils import to_checksum_address

    try:
        to = to_checksum_address(address)
    except ValueError:
        raise InputError(f"not an address: {address!r}", field="address") from None
    m = connect(api)
    try:
        faucet = dev_signer(m, FAUCET_ACCOUNT)
        rec = m.chain.writer.transact(faucet, to=to, value=int(amount * 10**18), label=f"fund {to}")
        bal = int(m.chain.backend.request("eth_getBalance", [to, "latest"]), 16)
    finally:
        m.close()
    emit({"address": to, "sent": str(int(amount * 10**18)), "balance": str(bal), "tx": rec.tx_hash}, as_json,
         f"sent {amount} ETH to {to} (tx {rec.tx_hash}); balance {eth(bal)}")


if __name__ == "__main__":  # pragma: no cover
    run(dev_app, prog_name="cona dev")
