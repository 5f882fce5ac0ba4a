"""Market fixtures: one deployment per chain backend and payment asset, made once per session
(before any snapshot); each test then runs isolated between a snapshot and a revert."""

from __future__ import annotations

import pytest

from marketplace.chain.contracts import Chain
from tests.chain.market_env import Env, make_env

_envs: dict[tuple[str, str], Env] = {}


def _env(chain: Chain, asset: str) -> Env:
    key = (chain.backend.name, asset)
    if key not in _envs:
        _envs[key] = make_env(chain, asset)
    return _envs[key]


@pytest.fixture(scope="session")
def eth_market(chain: Chain) -> Env:
    return _env(chain, "eth")


@pytest.fixture(scope="session")
def token_market(chain: Chain) -> Env:
    return _env(chain, "token")


@pytest.fixture
def env(eth_market: Env, isolated) -> Env:
    """The ETH-settled market on this chain, isolated per test."""
    return eth_market


@pytest.fixture
def token_env(token_market: Env, isolated) -> Env:
    """The DemoToken-settled market on this chain, isolated per test."""
    return token_market
