"""The provider's on-chain account: connecting with its own key, and the registry/market calls
behind ``cona-agent register|stake|status|pause|resume|unbond|withdraw`` and the daemon.

The agent speaks JSON-RPC to one URL (the market's ``/rpc`` or a node) and signs locally:
its key never leaves the process. The contract addresses come from the engine
(``GET /v1/deployment``) or from a deployment record file; either way the record must name
the chain the URL serves (chain id checked), or nothing is sent.

Invariants:
- every write goes through the transaction writer of ``Chain`` (nonces, revert decoding),
  with its idempotency journal under the agent's state directory when one is given;
- prices are given per device class by name (``gpu=3600000000000000``), wei per unit-hour;
  a class not named is priced 0, which the registry reads as "not offered".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment
from marketplace.chain.market import DEVICE_CLASSES, Market, ProviderStatus
from marketplace.chain.writer import Signer
from marketplace.client import ApiClient
from marketplace.errors import AgentError, ChainMismatch, InputError
from marketplace.resources.model import DeviceClass
from marketplace.settings import PACKAGE_ROOT, ConaSettings

log = logging.getLogger(__name__)

#: a hint per custom error a provider's own call can hit: what to do about it
HINTS = {
    "StakeTooLow": "stake at least the registry's minimum (see `cona-agent status`)",
    "AlreadyRegistered": "this key is registered already; use `cona-agent stake` to add stake",
    "NotRegistered": "register first with `cona-agent register`",
    "WrongStatus": "the provider is not in the status this command needs (see `cona-agent status`)",
    "LiveLeases": "wait until your running leases end (see `cona-agent status`), then try again",
    "StillBonded": "the unbonding period has not passed yet (see unbond_at in `cona-agent status`)",
    "NothingToWithdraw": "there is nothing to withdraw yet",
    "InsufficientBalance": "the market balance is lower than the amount asked",
}


def parse_prices(items: Sequence[str]) -> list[int]:
    """``["gpu=3600", "cpu=100"]`` -> prices per device class (CPU, GPU, NPU, TPU), wei per unit-hour."""
    prices = [0] * DEVICE_CLASSES
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"price {item!r} is not CLASS=WEI", field="price", hint="for example gpu=3600000000000000")
        dc = DeviceClass.parse(name)
        try:
            wei = int(value)
        except ValueError:
            raise InputError(f"price {item!r}: {value!r} is not an integer number of wei", field="price") from None
        if wei < 0:
            raise InputError(f"price {item!r} is negative", field="price")
        prices[int(dc) - 1] = wei
    if not any(prices):
        raise InputError("give at least one price (--price CLASS=WEI)", field="price")
    return prices


def fetch_deployment(engine_url: str, timeout: float = 10.0) -> Deployment:
    """The market's deployment record as the engine serves it (``GET /v1/deployment``)."""
    with ApiClient(engine_url, timeout=timeout, unreachable_hint="is the engine running?") as api:
        return api.deployment()


def load_deployment_file(path: Path) -> Deployment:
    try:
        return Deployment.from_dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise InputError(f"no deployment record at {path}", field="deployment") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a deployment record: {exc}", field="deployment") from None


@dataclass
class Account:
    """An open chain, the market clients and the provider's signer."""

    chain: Chain
    deployment: Deployment
    market: Market
    signer: Signer

    @property
    def address(self) -> str:
        return self.signer.address

    @property
    def registry(self):  # noqa: ANN201  (marketplace.chain.market.Registry)
        return self.market.registry

    @classmethod
    def open(cls, *, rpc_url: str, key: bytes, deployment: Deployment,
             journal_path: Path | None = None) -> "Account":
        settings = ConaSettings(root=PACKAGE_ROOT, chain="rpc", rpc_url=rpc_url)
        chain = Chain.open(settings, keys=["0x" + key.hex()], journal_path=journal_path)
        try:
            if chain.backend.chain_id != deployment.chain_id:
                raise ChainMismatch(f"{rpc_url} serves chain {chain.backend.chain_id}, but the deployment is on "
                                    f"chain {deployment.chain_id}", hint="point --rpc-url at the market's chain")
            market = Market.from_deployment(chain, deployment)
        except Exception:
            chain.close()
            raise
        return cls(chain, deployment, market, Signer(key))

    def close(self) -> None:
        self.chain.close()

    # -- reads -----------------------------------------------------------------------

    def status(self, address: str | None = None) -> dict[str, Any]:
        who = address or self.address
        info = self.registry.provider(who)
        eth = int(self.chain.backend.request("eth_getBalance", [who, "latest"]), 16)
        return {
            "address": who,
            "status": info.status.name.lower(),
            "registered": info.status != ProviderStatus.NONE,
            "stake": str(info.stake),
            "min_stake": str(self.registry.min_stake),
            "domain": info.domain,
            "live_leases": info.live_leases,
            "unbond_at": info.unbond_at,
            "hardware": "0x" + info.hardware.hex(),
            "prices": {DeviceClass(i + 1).name.lower(): str(p) for i, p in enumerate(info.prices)},
            "eligible": self.registry.is_eligible(who),
            "withdrawable_registry": str(self.registry.released(who)),
            "withdrawable_market": str(self.market.balance(who)),
            "eth_balance": str(eth),
            "chain_id": self.deployment.chain_id,
        }


def attachment_digest(attachment: str) -> bytes:
    """The registry's 32-byte ``metadata``: keccak-256 of the attachment node's name, so the
    engine can check an LSA's attachment against what the provider registered."""
    from eth_utils import keccak

    if not attachment:
        raise InputError("the attachment node is empty", field="attachment")
    return keccak(attachment.encode())


def withdraw_all(acct: Account) -> dict[str, str]:
    """Withdraw the market balance and any released stake; returns the amounts (wei, as strings)."""
    out = {"market": "0", "registry": "0", "market_tx": "", "registry_tx": ""}
    bal = acct.market.balance(acct.address)
    if bal > 0:
        tx = acct.market.withdraw(acct.signer, bal)
        out["market"], out["market_tx"] = str(bal), tx.tx_hash
    rel = acct.registry.released(acct.address)
    if rel > 0:
        tx = acct.registry.withdraw(acct.signer)
        out["registry"], out["registry_tx"] = str(rel), tx.tx_hash
    if bal == 0 and rel == 0:
        raise AgentError(f"{acct.address} has nothing to withdraw", hint="earnings arrive when leases settle")
    return out
