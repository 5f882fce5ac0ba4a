"""Development conveniences at ``/dev``: time travel and test ETH, on a local development chain, from
this machine only. Never part of ``/rpc``.

``POST /dev/advance-time`` moves the chain's clock forward and mines a block (past a dispute
window, say: ``cona dev advance-time``); ``POST /dev/fund`` sends test ETH from the faucet,
development account ``FAUCET_ACCOUNT`` of the project's well-known mnemonic (``cona dev fund``; on a
chain funding fewer accounts, the last one).

Where they exist: the router is mounted only when the market runs a development chain
(``dev_chain``: ``ApiState.dev`` when the composition root decides, else the chain id is one of
``DEV_CHAIN_IDS``: the embedded chain, anvil/hardhat, ganache/geth --dev; ``make run`` and
``cona up`` run the embedded chain). On any other chain the paths do not exist (404).

Who may call them: a client on a loopback address (127.0.0.0/8, ::1) only; any other gets a
403 problem. A reverse proxy on the same machine makes every client look local: do not put one
in front of a development market.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from marketplace.api.bounds import declare_body_limit
from marketplace.api.deps import ApiState, Svc
from marketplace.errors import InputError, Rejected
from marketplace.limits import MAX_SMALL_BODY_BYTES
from marketplace.settings import DEV_CHAIN_IDS, FAUCET_ACCOUNT

log = logging.getLogger(__name__)

#: the most a single request may move the clock (a year and a day) or send (ETH)
MAX_ADVANCE_S = 366 * 24 * 3600
MAX_FUND_WEI = 1000 * 10**18


class LoopbackOnly(Rejected):
    http_status = 403
    code = "dev-loopback-only"


def dev_chain(state: ApiState) -> bool:
    """Whether ``state`` runs a local development chain (the routes here are mounted only then)."""
    if state.dev is not None:
        return state.dev
    return state.chain.backend.chain_id in DEV_CHAIN_IDS


async def from_loopback(request: Request) -> None:
    """Refuse any client that is not on this machine."""
    host = request.client.host if request.client is not None else ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        log.warning("development request from %s refused (loopback only)", host or "an unknown client")
        raise LoopbackOnly(f"the development endpoints answer on loopback only, not to {host or 'this client'}",
                           reason="loopback-only", field="client")


router = APIRouter(prefix="/dev", tags=["development"], dependencies=[Depends(from_loopback)])


class AdvanceIn(BaseModel):
    seconds: int = Field(ge=1, le=MAX_ADVANCE_S, description="how far to move the chain's clock")


class Advanced(BaseModel):
    chain_id: int
    before: int = Field(description="the latest block's timestamp before")
    after: int = Field(description="the timestamp of the block mined at the new time")


class FundIn(BaseModel):
    address: str = Field(description="the account to fund", max_length=42)
    wei: str = Field(description="how much test ETH to send, in wei (a decimal string)", pattern=r"^[0-9]{1,30}$")


class Funded(BaseModel):
    address: str
    sent: str
    balance: str = Field(description="the account's balance after, in wei")
    tx: str


_PROBLEM_403 = {403: {"description": "The client is not on a loopback address"}}


def faucet_key(chain: Any) -> bytes:
    """The faucet's key: development account ``FAUCET_ACCOUNT`` (the last one, when the chain funds fewer)."""
    from marketplace.chain.backends import dev_accounts

    accounts = chain.backend.accounts or dev_accounts(chain.project.mnemonic, FAUCET_ACCOUNT + 1)
    return bytes(accounts[min(FAUCET_ACCOUNT, len(accounts) - 1)].key)


def _time(state: ApiState) -> int:
    return int(state.chain.backend.latest_block()["timestamp"], 16)


@router.post("/advance-time", response_model=Advanced, responses=_PROBLEM_403,
             openapi_extra=declare_body_limit(MAX_SMALL_BODY_BYTES),
             summary="Development chains only: move the chain's clock forward and mine a block")
def advance_time(body: AdvanceIn, services: Svc) -> dict[str, Any]:
    state = services.state
    before = _time(state)
    state.chain.backend.increase_time(body.seconds)
    after = _time(state)
    log.info("development time travel: +%d s, block time %d -> %d", body.seconds, before, after)
    return {"chain_id": state.chain.backend.chain_id, "before": before, "after": after}


@router.post("/fund", response_model=Funded, responses=_PROBLEM_403,
             openapi_extra=declare_body_limit(MAX_SMALL_BODY_BYTES),
             summary="Development chains only: send test ETH from the faucet account")
def fund(body: FundIn, services: Svc) -> dict[str, Any]:
    from eth_utils import to_checksum_address

    from marketplace.chain.writer import Signer

    try:
        to = to_checksum_address(body.address)
    except ValueError:
        raise InputError(f"not an address: {body.address!r}", field="address") from None
    amount = int(body.wei)
    if not 0 < amount <= MAX_FUND_WEI:
        raise InputError(f"wei must be within 1..{MAX_FUND_WEI}", field="wei")
    chain = services.state.chain
    faucet = Signer(faucet_key(chain))
    rec = chain.writer.transact(faucet, to=to, value=amount, label=f"fund {to}")
    balance = int(chain.backend.request("eth_getBalance", [to, "latest"]), 16)
    log.info("development faucet: %d wei to %s (tx %s)", amount, to, rec.tx_hash)
    return {"address": to, "sent": str(amount), "balance": str(balance), "tx": rec.tx_hash}
