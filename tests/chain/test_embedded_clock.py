"""The embedded chain's honest clock (``marketplace/chain/clock.py``, ``embedded_chain``): block
timestamps follow the wall clock and never run ahead of it, whatever the load; windows the
contracts enforce last their length in wall seconds; development time travel is an offset.

The wall clock is a ``ManualWall`` the test moves by hand, so "60 real seconds" takes no time.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from marketplace.chain.backends import EmbeddedBackend
from marketplace.chain.clock import ChainClock
from marketplace.chain.contracts import Chain
from marketplace.errors import InputError
from tests.chain.market_env import PRICE, make_env, reverts

pytestmark = pytest.mark.chain

START = 1_800_000_000.25


class ManualWall:
    """A wall clock that moves only when told."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def manual(project):
    wall = ManualWall()
    chain = Chain(EmbeddedBackend(project.mnemonic, 10, clock=ChainClock(wall)), project)
    env = make_env(chain, "eth")
    yield wall, env
    chain.close()


@pytest.fixture
def world(manual):
    wall, env = manual
    snap = env.chain.backend.snapshot()
    yield wall, env
    env.chain.backend.revert(snap)
    env.chain.writer.forget_nonces()


def _stamps(backend, first: int) -> list[int]:
    return [int(backend.request("eth_getBlockByNumber", [hex(n), False])["timestamp"], 16)
            for n in range(first, backend.block_number() + 1)]


def test_a_burst_of_blocks_in_one_second_shares_that_second(world):
    wall, env = world
    backend = env.chain.backend
    first = backend.block_number() + 1
    for _ in range(100):
        env.market.deposit(env.buyers[0], 1)
    stamps = _stamps(backend, first)
    assert len(stamps) == 100
    assert set(stamps) == {int(wall.now)}  # eth-tester stamped these 100 blocks over 100 seconds


def test_an_idle_chain_stamps_its_next_block_when_it_is_mined(world):
    wall, env = world
    backend = env.chain.backend
    env.market.deposit(env.buyers[0], 1)
    wall.advance(600)  # ten idle minutes
    env.market.deposit(env.buyers[0], 1)
    assert _stamps(backend, backend.block_number())[-1] == int(wall.now)  # not the parent's time plus one


def test_a_60_second_acceptance_window_lasts_60_wall_seconds_under_load(world):
    wall, env = world
    provider, buyer = env.providers[0], env.buyers[0]
    env.register(provider)
    oid = env.open_order(buyer)
    env.market.assign(env.orchestrator, oid, provider.address, PRICE, [])
    deadline = env.market.order(oid).accept_deadline
    assert deadline == int(wall.now) + 60
    for _ in range(100):  # load: a hundred blocks while the provider thinks
        env.market.deposit(env.buyers[1], 1)
    with reverts("AcceptanceNotExpired"):
        env.market.timeout_acceptance(env.stranger, oid)
    wall.advance(60)
    with reverts("AcceptanceNotExpired"):  # the deadline second itself still belongs to the provider
        env.market.timeout_acceptance(env.stranger, oid)
    wall.advance(1)
    env.market.timeout_acceptance(env.stranger, oid)


def test_time_travel_is_an_offset_on_the_wall_clock(world):
    wall, env = world
    backend = env.chain.backend
    backend.increase_time(300)  # what `cona dev advance-time 300` does
    assert _stamps(backend, backend.block_number())[-1] == int(wall.now) + 300
    wall.advance(5)
    env.market.deposit(env.buyers[0], 1)
    assert _stamps(backend, backend.block_number())[-1] == int(wall.now) + 300  # time runs on from there


def test_a_revert_takes_back_the_time_travel_since_its_snapshot(world):
    wall, env = world
    backend = env.chain.backend
    snap = backend.snapshot()
    backend.increase_time(86_400)
    backend.revert(snap)
    env.chain.writer.forget_nonces()
    backend.mine()
    assert _stamps(backend, backend.block_number())[-1] == int(wall.now)


def test_the_next_timestamp_can_be_set_but_not_below_the_latest(world):
    wall, env = world
    backend = env.chain.backend
    backend.request("evm_setNextBlockTimestamp", [int(wall.now) + 1000])
    backend.mine()
    assert _stamps(backend, backend.block_number())[-1] == int(wall.now) + 1000
    answer = backend.forward({"jsonrpc": "2.0", "id": 1, "method": "evm_setNextBlockTimestamp",
                              "params": [int(wall.now)]})
    assert answer["error"]["code"] == -32602 and "lower than the latest" in answer["error"]["message"]
    answer = backend.forward({"jsonrpc": "2.0", "id": 2, "method": "evm_increaseTime", "params": [-5]})
    assert answer["error"]["code"] == -32602 and "only move forward" in answer["error"]["message"]


def test_blocks_never_run_ahead_of_the_real_wall_clock(project):
    chain = Chain(EmbeddedBackend(project.mnemonic, 4), project)
    try:
        backend = chain.backend
        first = backend.block_number() + 1
        probe = chain.deploy("ChainProbe", 100)
        receipts = chain.writer.transact_many(chain.signers[1], [probe.request("bump", 1, gas=90_000)
                                                                 for _ in range(200)])
        after = time.time()
        assert all(r.ok for r in receipts)
        stamps = _stamps(backend, first)
        assert stamps == sorted(stamps) and stamps[-1] <= after
    finally:
        chain.close()


def test_the_clock_refuses_to_go_backwards():
    clock = ChainClock(ManualWall(), offset=10)
    assert clock.stamp(0) == int(START) + 10 and clock.stamp(int(START) + 99) == int(START) + 99
    with pytest.raises(InputError, match="only move forward"):
        clock.advance(-1)
    with pytest.raises(InputError, match="lower than the latest"):
        clock.set_next(5, latest=6)


def test_gas_estimated_in_one_second_suffices_for_the_next(world):
    # a lease failed in its first second: estimated with nothing served, mined a second later with
    # one second served, which pays the provider and the fee recipient (two fresh storage slots)
    wall, env = world
    provider, backup, buyer = env.providers[0], env.providers[1], env.buyers[2]
    env.register(provider)
    env.register(backup)
    oid = env.running_order(buyer, provider, backups=[backup])  # a backup takes over: no refund yet
    req = env.market.request("fail", oid)
    call = {"from": env.orchestrator.address, "to": req.to, "data": "0x" + req.data.hex()}
    limit = env.chain.writer.estimate_gas(env.orchestrator.address, req)
    wall.advance(1)
    needed = int(env.chain.backend.request("eth_estimateGas", [call]), 16)  # what the next second takes
    assert limit >= needed
    receipt = env.chain.writer.transact(env.orchestrator, dataclasses.replace(req, gas=limit))
    assert receipt.ok and env.market.order(oid).served == 1
