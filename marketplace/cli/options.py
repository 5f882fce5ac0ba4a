"""The options several ``cona`` command groups share, and the settings they build.

A chain is named the same way everywhere (``--chain embedded|anvil|rpc``, ``--rpc-url URL``,
which implies ``rpc``), and so are ``--json``, ``--data-dir`` (``cona up`` and ``cona serve``)
and ``--passphrase-file``. ``settings`` turns those two options into the
one ``ConaSettings`` of the command; anything not given comes from ``CONA_*`` variables.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from marketplace.settings import ConaSettings

ChainOpt = typer.Option(None, "--chain", help="chain backend: embedded, anvil or rpc")
RpcOpt = typer.Option(None, "--rpc-url", help="JSON-RPC URL (implies --chain rpc)")
JsonOpt = typer.Option(False, "--json", help="print JSON for scripts")
DataDirOpt: Any = typer.Option(None, "--data-dir", help="the market's data directory (default CONA_DATA_DIR, "
                                                        "else ROOT/.cona)")
PassphraseOpt: Any = typer.Option(None, "--passphrase-file", help="file whose first line is the keystore passphrase")


def settings(chain: Optional[str] = None, rpc_url: Optional[str] = None, **overrides: Any) -> ConaSettings:
    """The command's settings: ``--rpc-url`` implies ``--chain rpc``; an explicit ``--chain`` wins."""
    if rpc_url:
        overrides["rpc_url"] = rpc_url
        overrides["chain"] = "rpc"
    if chain:
        overrides["chain"] = chain
    return ConaSettings(**overrides)
