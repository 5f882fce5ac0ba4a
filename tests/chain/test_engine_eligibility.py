"""The engine's pre-write eligibility check follows the registry through its events alone.

The check is the contract's ``isEligible`` (Active, stake at least minStake) computed from the
synced index: a raised ``minStake`` must stop the engine from sending an ``assignBatch`` the
contract would revert, a lowered one must let the order through, and a restarted engine must
read the same minimum back from the events it replays. Real hardware dumps and the GEANT
topology, as in ``test_engine.py`` (whose world and helpers this reuses).
"""

from __future__ import annotations

import pytest

from marketplace.chain.lifecycle import OrderState
from tests.chain.test_engine import ETH, assigned_events, make_engine, market_up, w, world  # noqa: F401

pytestmark = pytest.mark.chain


def _nonce(w, address: str) -> int:
    return int(w.chain.backend.request("eth_getTransactionCount", [address, "latest"]), 16)


def test_a_raised_min_stake_stops_the_assignment_until_it_is_lowered_again_also_after_a_restart(w, tmp_path):
    engine = make_engine(w, tmp_path)
    market_up(w, engine)  # every provider staked 2 ETH against a minimum of 1 ETH
    operator = next(s for s in w.signers if s.address == w.dep.roles["operator"])
    w.market.registry.set_min_stake(operator, 3 * ETH)
    spec = w.spec(min_memory_mib=40960)
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    orchestrator = engine.orchestrator.address
    before = _nonce(w, orchestrator)
    engine.step()
    # no provider is eligible any more: nothing is written (no reverted batch), the order stays Open
    assert engine.provider_table.min_stake == 3 * ETH
    assert _nonce(w, orchestrator) == before
    assert w.market.state(oid) == OrderState.OPEN
    assert assigned_events(engine, oid) == []
    engine.close()

    # a restarted engine replays the SettingChanged events to the same minimum (and, like the
    # first one, refuses the LSAs of providers below it)
    engine = make_engine(w, tmp_path)
    assert engine.provider_table.min_stake == 3 * ETH
    assert engine.submit_lsa(w.lsa(3, seq=2)).outcome.name == "REJECTED"

    w.market.registry.set_min_stake(operator, ETH)
    for i in (3, 4, 5):
        assert engine.submit_lsa(w.lsa(i, seq=3)).outcome.name == "INSTALLED"
    for _ in range(3):  # a pending order comes back in a later round
        engine.step()
        if w.market.state(oid) == OrderState.ASSIGNED:
            break
    assert engine.provider_table.min_stake == ETH
    assert w.market.state(oid) == OrderState.ASSIGNED
    assert len(assigned_events(engine, oid)) == 1
    engine.close()
