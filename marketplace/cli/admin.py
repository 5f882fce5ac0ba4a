"""``cona admin``: the operator's changes to the market, through the deployment's timelock.

Every role and setting change (new terms for orders placed from then on, an engine's orchestrator
key, the registry's least stake) is one call the timelock makes: the first run of a command
schedules it in public (``CallScheduled``) and, where the delay is 0 (a local development chain),
applies it at once; elsewhere it prints when the change becomes executable, and the same command
with ``--execute`` then applies it (the same arguments give the same operation). The operator signs
with its keystore (``--key-file``), or on a development chain with ``--dev-account 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from eth_utils import is_address, to_checksum_address

from marketplace.cli.keys import DevOpt, PassOpt, buyer_signer
from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit, run
from marketplace.cli.remote import ApiOpt, connect
from marketplace.errors import InputError

admin_app = typer.Typer(help="Operator: market terms, orchestrators and the least stake, through the timelock.",
                        no_args_is_help=True)

KeyOpt = typer.Option(None, "--key-file", help="the operator's Ethereum V3 keystore", dir_okay=False)
ExecuteOpt = typer.Option(False, "--execute", help="apply a change scheduled earlier, once its delay has passed")


def _address(value: str, name: str) -> str:
    if not is_address(value):
        raise InputError(f"{name} is not an address: {value!r}", field=name)
    return to_checksum_address(value)


def _apply(api: Optional[str], key_file: Optional[Path], passphrase_file: Optional[Path], dev_account: Optional[int],
           build: Any, execute: bool, as_json: bool) -> None:
    """Schedule (and, with no delay, apply) the change ``build(market)`` returns, or ``--execute`` it."""
    from marketplace.chain.timelock import Change

    m = connect(api)
    try:
        operator = buyer_signer(m, key_file, passphrase_file, dev_account)
        change: Change = build(m.market)
        timelock = m.market.timelock
        tx = timelock.execute(operator, change) if execute else timelock.apply(operator, change)
        doc = {"change": change.description, "operation": "0x" + timelock.operation_id(change).hex(),
               "tx": tx.tx_hash, "applied": True}
    finally:
        m.close()
    emit(doc, as_json, f"applied {doc['change']} (operation {doc['operation']}, tx {doc['tx']})")


@admin_app.command("terms")
def terms(fee_bps: Optional[int] = typer.Option(None, "--fee-bps", min=0),
          miss_slash_bps: Optional[int] = typer.Option(None, "--miss-slash-bps", min=0),
          fail_slash_bps: Optional[int] = typer.Option(None, "--fail-slash-bps", min=0),
          dispute_slash_bps: Optional[int] = typer.Option(None, "--dispute-slash-bps", min=0),
          accept_window: Optional[int] = typer.Option(None, "--accept-window", min=0, help="seconds"),
          dispute_window: Optional[int] = typer.Option(None, "--dispute-window", min=0, help="seconds"),
          arbitration_window: Optional[int] = typer.Option(None, "--arbitration-window", min=0, help="seconds"),
          run_grace: Optional[int] = typer.Option(None, "--run-grace", min=0, help="seconds"),
          arbiter: Optional[str] = typer.Option(None, "--arbiter", help="the arbiter of new orders"),
          execute: bool = ExecuteOpt, key_file: Optional[Path] = KeyOpt, passphrase_file: Optional[Path] = PassOpt,
          dev_account: Optional[int] = DevOpt, api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """New terms for orders placed from now on (orders already placed keep theirs)."""
    from dataclasses import replace

    from marketplace.chain.timelock import Change

    given = {k: v for k, v in dict(fee_bps=fee_bps, miss_slash_bps=miss_slash_bps, fail_slash_bps=fail_slash_bps,
                                   dispute_slash_bps=dispute_slash_bps, accept_window=accept_window,
                                   dispute_window=dispute_window, arbitration_window=arbitration_window,
                                   run_grace=run_grace).items() if v is not None}
    if arbiter is not None:
        given["arbiter"] = _address(arbiter, "arbiter")
    if not given:
        raise InputError("name at least one term to change", field="terms", hint="e.g. --fee-bps 150")
    _apply(api, key_file, passphrase_file, dev_account,
           lambda market: Change.call(market.contract, "setSettings", replace(market.terms(), **given).as_tuple()),
           execute, as_json)


@admin_app.command("orchestrator")
def orchestrator(address: str = typer.Argument(..., help="an engine's orchestrator key"),
                 revoke: bool = typer.Option(False, "--revoke", help="take the role away"),
                 execute: bool = ExecuteOpt, key_file: Optional[Path] = KeyOpt,
                 passphrase_file: Optional[Path] = PassOpt, dev_account: Optional[int] = DevOpt,
                 api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """Allow (or, with --revoke, stop) an engine's key to place signed orders, assign and report failures."""
    from marketplace.chain.timelock import Change

    who = _address(address, "address")
    _apply(api, key_file, passphrase_file, dev_account,
           lambda market: Change.call(market.contract, "setOrchestrator", who, not revoke), execute, as_json)


@admin_app.command("min-stake")
def min_stake(wei: int = typer.Argument(..., min=0, help="the least stake, in wei of the payment asset"),
              execute: bool = ExecuteOpt, key_file: Optional[Path] = KeyOpt, passphrase_file: Optional[Path] = PassOpt,
              dev_account: Optional[int] = DevOpt, api: Optional[str] = ApiOpt, as_json: bool = JsonOpt) -> None:
    """The least stake that makes a provider eligible for new leases."""
    from marketplace.chain.timelock import Change

    _apply(api, key_file, passphrase_file, dev_account,
           lambda market: Change.call(market.registry.contract, "setMinStake", wei), execute, as_json)


if __name__ == "__main__":
    run(admin_app)
