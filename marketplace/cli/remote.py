"""A market as a buyer reaches it: its web API, and its chain through the API's ``/rpc``.

Every buyer command (``cona quote``, ``cona order ...``, ``cona dev ...``) takes ``--api URL``
(default ``$CONA_API_URL``, else ``http://127.0.0.1:8000``). Reads need only the API
(``api_client``); commands that sign or read the chain ``connect``: the deployment comes from
``GET /v1/deployment`` and the chain from ``<api>/rpc``, whose chain id must be the
deployment's (``ChainMismatch`` otherwise).

Development chains: ``DEV_CHAIN_IDS`` names the local chains where the well-known development
keys and time travel are allowed; ``require_dev_chain`` refuses every other chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import typer

from marketplace.client import ApiClient
from marketplace.errors import ChainMismatch, Rejected
from marketplace.settings import DEV_CHAIN_IDS

DEFAULT_API = "http://127.0.0.1:8000"
#: chain ids of local development chains, where the well-known dev keys and time travel are allowed:
#: eth-tester/py-evm (the embedded chain), anvil and hardhat, ganache and geth --dev
#: requests a buyer command sends at most when the API cannot be reached (each write is idempotent)
ATTEMPTS = 3

ApiOpt = typer.Option(None, "--api", help="the market's API URL (default $CONA_API_URL or http://127.0.0.1:8000)")


def api_url(api: Optional[str]) -> str:
    return (api or os.environ.get("CONA_API_URL") or DEFAULT_API).rstrip("/")


def api_client(api: Optional[str]) -> ApiClient:
    """The market's API for a buyer command (problem details come back as ``ConaError``s)."""
    return ApiClient(api_url(api), attempts=ATTEMPTS,
                     unreachable_hint="is `cona up` running? pass --api URL or set CONA_API_URL")


@dataclass
class RemoteMarket:
    """The API, the market's chain over ``<api>/rpc`` and the typed market client."""

    api: ApiClient
    chain: Any
    deployment: Any
    market: Any

    @property
    def chain_id(self) -> int:
        return int(self.deployment.chain_id)

    @property
    def is_dev(self) -> bool:
        return self.chain_id in DEV_CHAIN_IDS

    def close(self) -> None:
        self.chain.close()
        self.api.close()


def connect(api: Optional[str]) -> RemoteMarket:
    """The market behind ``--api``, its chain opened over ``<api>/rpc`` (close it when done)."""
    from marketplace.chain.contracts import Chain
    from marketplace.chain.market import Market
    from marketplace.settings import ConaSettings

    client = api_client(api)
    try:
        dep = client.deployment()
        chain = Chain.open(ConaSettings(chain="rpc", rpc_url=f"{client.base}/rpc"))
    except BaseException:
        client.close()
        raise
    try:
        if chain.backend.chain_id != dep.chain_id:
            raise ChainMismatch(f"{client.base}/rpc serves chain {chain.backend.chain_id}, the deployment is on "
                                f"{dep.chain_id}")
        market = Market.from_deployment(chain, dep)
    except BaseException:
        chain.close()
        client.close()
        raise
    return RemoteMarket(client, chain, dep, market)


def require_dev_chain(m: RemoteMarket, what: str) -> None:
    """Refuse ``what`` unless the market's chain is a local development chain."""
    require_dev_chain_id(m.chain_id, what)


def require_dev_chain_id(chain_id: int, what: str) -> None:
    """Refuse ``what`` unless ``chain_id`` is a local development chain's."""
    if int(chain_id) not in DEV_CHAIN_IDS:
        raise Rejected(f"{what} works on local development chains only; chain {chain_id} is not one",
                       reason="not-a-dev-chain", field="chain_id",
                       hint=f"development chain ids: {', '.join(f'{k} ({v})' for k, v in DEV_CHAIN_IDS.items())}")
