"""``cona dev``: the local-chain conveniences a walkthrough needs, refused on any other chain.

``advance-time`` moves a development chain's clock forward and mines a block (past a dispute
window, say); ``fund`` sends test ETH from the faucet (development account 19,
``marketplace.settings.FAUCET_ACCOUNT``).
Both ask the market's development endpoints (``POST <api>/dev/advance-time``, ``<api>/dev/fund``:
``marketplace.api.routes.dev``), which exist only when the market runs a local development chain
and answer only on loopback; ``/rpc`` relays neither. The chain id is checked first
(``marketplace.cli.remote.DEV_CHAIN_IDS``), so another chain is refused with a clear message.
"""

from __future__ import annotations

from typing import Optional

import typer

from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit, eth, run
from marketplace.cli.remote import ApiOpt, api_url, require_dev_chain_id
from marketplace.client import ApiClient
from marketplace.errors import InputError

def dev_client(api: Optional[str]) -> ApiClient:
    """The market's API, each request sent once: moving a clock or paying is not repeated on a
    transport error (``remote.api_client`` retries, which only idempotent writes may)."""
    return ApiClient(api_url(api), attempts=1, unreachable_hint="is `cona up` running? pass --api URL or set "
                                                                 "CONA_API_URL")


dev_app = typer.Typer(help="Local development chains only: move time, fund accounts.", no_args_is_help=True)


@dev_app.command("advance-time")
def advance_time(seconds: int = typer.Argument(..., min=1, max=366 * 24 * 3600, help="seconds to move forward"),
                 api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Move a local chain's clock forward and mine a block (e.g. past a dispute window)."""
    with dev_client(api) as client:
        require_dev_chain_id(client.deployment().chain_id, "`cona dev advance-time`")
        out = client.post("/dev/advance-time", {"seconds": seconds})
    emit(out, as_json, f"chain {out['chain_id']}: block time {out['before']} -> {out['after']} "
                       f"(+{out['after'] - out['before']} s)")


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
    with dev_client(api) as client:
        require_dev_chain_id(client.deployment().chain_id, "`cona dev fund`")
        out = client.post("/dev/fund", {"address": to, "wei": str(int(amount * 10**18))})
    emit(out, as_json, f"sent {amount} ETH to {out['address']} (tx {out['tx']}); balance {eth(int(out['balance']))}")


if __name__ == "__main__":  # pragma: no cover
    run(dev_app, prog_name="cona dev")
