"""Shared set-up for the market tests: a deployed market per chain and asset, with named roles.

Accounts (the dev mnemonic's first ten): 0 operator, 1 orchestrator, 2 arbiter,
3-5 providers, 6-8 buyers, 9 a stranger. Providers register in the tests that need them;
buyers are funded here only with their ETH (and DemoToken when settling in it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from eth_utils import keccak

from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.intents import OrderIntent
from marketplace.chain.market import Market, wait_until
from marketplace.chain.registry import Registry
from marketplace.chain.writer import Signer
from marketplace.errors import TransactionReverted

ETH = 10**18
PARAMS = dict(min_stake=ETH, unbonding_period=3600, fee_bps=200, accept_window=60, dispute_window=300,
              miss_slash_bps=500, fail_slash_bps=1000)
GPU = 2
CPU = 1
PRICE = 36 * 10**14  # 0.0036 per unit-hour: 1e12 per unit-second
REQUIREMENT = keccak(b'{"class":"GPU","count":1,"min_vram_mib":40960}')


@dataclass
class Env:
    chain: Chain
    market: Market
    operator: Signer
    orchestrator: Signer
    arbiter: Signer
    providers: list[Signer]
    buyers: list[Signer]
    stranger: Signer

    @property
    def registry(self) -> Registry:
        return self.market.registry

    def register(self, provider: Signer, stake: int = 2 * ETH, prices=(PRICE, PRICE, PRICE, PRICE), domain: int = 1):
        return self.registry.register(provider, hardware=keccak(provider.address.encode()), domain=domain,
                                      prices=list(prices), stake=stake)

    def intent(self, buyer: Signer, *, units: int = 1, duration: int = 3600, max_price: int = PRICE,
               tier: int = 0, **kw) -> OrderIntent:
        return self.market.intent(buyer.address, requirement=REQUIREMENT, device_class=GPU, units=units,
                                  duration=duration, max_price=max_price, tier=tier, **kw)

    def open_order(self, buyer: Signer, **kw) -> int:
        it = self.intent(buyer, **kw)
        if self.market.balance(buyer.address) < it.escrow():
            self.market.deposit(buyer, it.escrow())
        return self.market.place(buyer, it)

    def complete(self, provider: Signer, oid: int, usage: int, result: bytes = b"\x11" * 32):
        """``complete`` once enough time has elapsed for ``usage`` unit-seconds (the contract caps usage
        at units x seconds since the lease started)."""
        o = self.market.order(oid)
        wait_until(self.market, o.started_at + -(-usage // o.units))
        return self.market.complete(provider, oid, result, usage)

    def running_order(self, buyer: Signer, provider: Signer, backups=(), **kw) -> int:
        oid = self.open_order(buyer, **kw)
        self.market.assign(self.orchestrator, oid, provider.address, PRICE, [b.address for b in backups])
        self.market.accept(provider, oid)
        return oid

    def fund_token(self, *accounts: Signer, amount: int = 1000 * ETH) -> None:
        token = self.market.token
        assert token is not None
        for acct in accounts:
            token.transact(self.operator, "mint", acct.address, amount)

    def assert_balanced(self) -> None:
        for check in (self.market.escrow_check(), self.registry.escrow_check()):
            assert check.balanced, check


def make_env(chain: Chain, asset: str) -> Env:
    dep = deploy_market(chain, params=MarketParams(asset=asset, **PARAMS))
    s = chain.signers
    env = Env(chain, Market.from_deployment(chain, dep), s[0], s[1], s[2], s[3:6], s[6:9], s[9])
    if asset == "token":
        env.fund_token(*env.providers, *env.buyers, env.stranger)
    return env


@contextlib.contextmanager
def reverts(error: str, **args):
    """Expects a revert with the named custom error (``WrongState``) and, if given, these arguments."""
    with pytest.raises(TransactionReverted) as info:
        yield info
    name = info.value.error or ""
    assert name.split(".")[-1] == error, f"reverted with {name} {info.value.error_args}, expected {error}"
    for key, value in args.items():
        assert info.value.error_args.get(key) == value, (key, info.value.error_args)
