"""Whose key signs a buyer's command, and the buyer's own signed transactions.

A buyer's key never leaves this process. It is one of:

- ``--key-file`` (an Ethereum V3 keystore) with ``--passphrase-file`` (its first line) or a
  prompt, never a passphrase argument (``keystore_signer``);
- ``--dev-account N``: account N of the project's well-known development mnemonic, refused
  unless the market's chain is a local development chain (``dev_signer``).

``signed_call`` signs ``ComputeMarket.<fn>(order)`` as the buyer's own EIP-1559 transaction
(for the API's relay of ``cancel`` and ``dispute``), after estimating its gas, so a call the
contract would refuse raises its decoded custom error before anything is signed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from marketplace.cli.remote import RemoteMarket, require_dev_chain
from marketplace.errors import InputError
from marketplace.passphrase import read_passphrase

KeyFileOpt = typer.Option(None, "--key-file", help="the buyer's Ethereum V3 keystore", dir_okay=False)
PassOpt = typer.Option(None, "--passphrase-file", help="the keystore's passphrase, first line (default: prompt)",
                       dir_okay=False)
DevOpt = typer.Option(None, "--dev-account", min=0, max=999,
                      help="sign with development account N (local dev chains only)")


def dev_signer(m: RemoteMarket, n: int) -> Any:
    """Development account ``n`` of the project's mnemonic; refused on any non-dev chain."""
    from marketplace.chain.backends import dev_accounts
    from marketplace.chain.writer import Signer
    from marketplace.settings import ConaSettings

    require_dev_chain(m, "--dev-account")
    return Signer(dev_accounts(ConaSettings().project().mnemonic, n + 1)[n].key)


def keystore_signer(key_file: Path, passphrase_file: Optional[Path]) -> Any:
    """The signer in an Ethereum V3 keystore file (passphrase from a file or a prompt, never an argument)."""
    from eth_keyfile import decode_keyfile_json

    from marketplace.chain.writer import Signer

    try:
        doc = json.loads(Path(key_file).read_text())
    except FileNotFoundError:
        raise InputError(f"no keystore at {key_file}", field="key_file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{key_file} is not a V3 keystore: {exc}", field="key_file") from None
    phrase = read_passphrase(passphrase_file)
    try:
        key = decode_keyfile_json(doc, phrase.encode())
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise InputError(f"wrong passphrase for {key_file}", field="passphrase") from None
        raise InputError(f"{key_file} is not a V3 keystore: {exc}", field="key_file") from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"{key_file} is not a V3 keystore: missing {exc}", field="key_file") from None
    return Signer(bytes(key))


def buyer_signer(m: RemoteMarket, key_file: Optional[Path], passphrase_file: Optional[Path],
                 dev_account: Optional[int]) -> Any:
    """The signer the options name: exactly one of ``--key-file`` and ``--dev-account``."""
    if (key_file is None) == (dev_account is None):
        raise InputError("give exactly one of --key-file FILE or --dev-account N", field="key_file",
                         hint="--dev-account is for local development chains only")
    if key_file is not None:
        return keystore_signer(key_file, passphrase_file)
    return dev_signer(m, dev_account)


def signed_call(m: RemoteMarket, signer: Any, fn: str, order_id: int) -> tuple[bytes, str]:
    """The buyer's own signed ``ComputeMarket.<fn>(order_id)`` (EIP-1559); gas estimated first, so a
    call the contract would refuse raises its decoded custom error before anything is signed."""
    from marketplace.chain.writer import TxRequest

    data = m.market.contract.abi.encode_call(fn, [order_id])
    req = TxRequest(to=m.market.address, data=data, label=f"ComputeMarket.{fn}({order_id})")
    w = m.chain.writer
    gas = w.estimate_gas(signer.address, req)
    nonce = int(m.chain.backend.request("eth_getTransactionCount", [signer.address, "pending"]), 16)
    return signer.sign_1559(chain_id=m.chain_id, nonce=nonce, tip=w.tip, max_fee=w.max_fee(), gas=gas,
                            to=m.market.address, value=0, data=data)
