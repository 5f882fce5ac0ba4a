"""The contracts' state machines in ``marketplace.chain.lifecycle``: one table, pure folds."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import pytest

from marketplace.chain.lifecycle import (FINAL_STATES, HAPPY_PATH, ORDER_EVENTS, TRANSITIONS, ZERO_ADDRESS,
                                         LifecycleViolation, OrderState, ProviderBook, ProviderStatus, allowed,
                                         fold_order, fold_provider, replay_order, state_after)

pytestmark = pytest.mark.unit

BUYER = "0x" + "b0" * 20
P1, P2, P3 = ("0x" + f"{i:02x}" * 20 for i in (1, 2, 3))


@dataclass(frozen=True)
class Ev:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    block_number: int = 1
    timestamp: int = 100
    tx_hash: str = ""
    log_index: int = 0


def _events(*specs: tuple[str, dict[str, Any]]) -> list[Ev]:
    return [Ev(n, {"order": 7, **a}, block_number=i + 1, timestamp=100 + i, tx_hash=f"0x{i:064x}")
            for i, (n, a) in enumerate(specs)]


PLACED = ("OrderPlaced", {"buyer": BUYER, "digest": "0x" + "11" * 32, "requirement": "0x" + "22" * 32,
                          "deviceClass": 1, "units": 2, "duration": 60, "maxPrice": "1000", "tier": 0,
                          "escrow": "5000"})
ASSIGNED = ("Assigned", {"provider": P1, "price": 900, "backups": [P2, P3], "acceptDeadline": 160,
                         "batchId": "0x" + "33" * 32})


def test_the_table_names_every_order_event_and_only_those():
    assert set(ORDER_EVENTS) == set(TRANSITIONS)
    assert "BatchCommitted" not in TRANSITIONS and "Deposited" not in TRANSITIONS
    assert all(not allowed(name, s) for name in TRANSITIONS for s in FINAL_STATES)  # terminal states are terminal
    assert [s for s in HAPPY_PATH] == [OrderState.OPEN, OrderState.ASSIGNED, OrderState.RUNNING,
                                       OrderState.COMPLETED, OrderState.SETTLED]


@pytest.mark.parametrize("nxt, want", [(ZERO_ADDRESS, OrderState.REFUNDED), (P2, OrderState.ASSIGNED)])
@pytest.mark.parametrize("name", ["AcceptanceTimedOut", "OrderFailed"])
def test_a_handover_goes_to_the_next_backup_or_refunds(name, nxt, want):
    assert state_after(name, {"next": nxt}, OrderState.RUNNING) is want
    assert state_after(name, {"next": nxt.upper().replace("0X", "0x")}, OrderState.RUNNING) is want


def test_an_event_that_moves_no_order_keeps_the_state():
    assert state_after("Deposited", {}, OrderState.RUNNING) is OrderState.RUNNING


def test_the_happy_path_folds_terms_lease_and_money():
    evs = _events(PLACED, ASSIGNED, ("Accepted", {"provider": P1, "startedAt": 105}),
                  ("Completed", {"provider": P1, "result": "0x" + "44" * 32, "usage": 90}),
                  ("Settled", {"provider": P1, "paid": "1500", "fee": "30", "refund": "3500"}))
    r = replay_order(evs)
    f = r.fold
    assert not r.problems
    assert f.state is OrderState.SETTLED and f.state.final
    assert (f.buyer, f.provider, f.price, f.units, f.max_price, f.escrow) == (BUYER, P1, 900, 2, 1000, 0)
    assert (f.paid, f.fees, f.refunded, f.usage, f.started_at) == (1500, 30, 3500, 90, 105)
    assert f.batch == "0x" + "33" * 32 and f.placed_block == 1 and f.updated_block == 5
    assert [s for s, _ in f.timeline] == list(HAPPY_PATH)
    assert [s for _, s in r.steps] == list(HAPPY_PATH)


def test_failover_moves_to_the_backup_then_refunds_when_none_is_left():
    evs = _events(PLACED, ASSIGNED, ("Accepted", {"provider": P1, "startedAt": 105}),
                  ("OrderFailed", {"provider": P1, "next": P3, "served": 10, "paid": "100", "fee": "2",
                                   "compensation": "50", "refund": "0", "acceptDeadline": 200, "price": 950}),
                  ("Burned", {"provider": P1, "amount": "7"}),
                  ("AcceptanceTimedOut", {"late": P3, "next": ZERO_ADDRESS, "compensation": "50", "refund": "4900",
                                          "acceptDeadline": 0, "price": 950}))
    r = replay_order(evs)
    assert not r.problems, r.problems
    f = r.fold
    assert f.state is OrderState.REFUNDED
    assert (f.paid, f.compensated, f.burned, f.refunded, f.served, f.escrow, f.next_backup, f.price) == (
        100, 100, 7, 4900, 10, 0, 2, 950)


def test_a_lease_past_its_end_expires_and_an_ignored_dispute_lapses():
    expired = replay_order(_events(PLACED, ASSIGNED, ("Accepted", {"provider": P1, "startedAt": 105}),
                                   ("Expired", {"provider": P1, "compensation": "0", "refund": "5000"})))
    assert not expired.problems and expired.fold.state is OrderState.REFUNDED and expired.fold.escrow == 0
    lapsed = replay_order(_events(PLACED, ASSIGNED, ("Accepted", {"provider": P1, "startedAt": 105}),
                                  ("Completed", {"provider": P1, "result": "0x" + "44" * 32, "usage": 90}),
                                  ("Disputed", {"by": BUYER}),
                                  ("DisputeLapsed", {"provider": P1, "paid": "25", "fee": "1", "refund": "4975"})))
    f = lapsed.fold
    assert not lapsed.problems and f.state is OrderState.RESOLVED and f.disputed_at == 104
    assert (f.paid, f.refunded, f.escrow) == (25, 4975, 0)


def test_a_handover_to_a_provider_that_is_not_a_remaining_backup_is_a_finding():
    evs = _events(PLACED, ASSIGNED, ("AcceptanceTimedOut", {"late": P1, "next": "0x" + "99" * 20, "compensation": 0,
                                                            "refund": 0, "acceptDeadline": 300, "price": 1}))
    with pytest.raises(LifecycleViolation):
        fold_order(replay_order(evs[:2]).fold, evs[2].name, evs[2].args)
    r = replay_order(evs)
    assert any("not among the remaining backups" in p for p in r.problems)
    assert r.fold.state is OrderState.ASSIGNED


def test_replay_reports_illegal_transitions_repeated_transactions_and_negative_escrow():
    evs = _events(PLACED, ("Accepted", {"provider": P1, "startedAt": 1}))
    assert any("illegal transition: Accepted" in p for p in replay_order(evs).problems)
    twice = _events(PLACED, ASSIGNED)
    twice[1] = Ev(twice[1].name, twice[1].args, tx_hash=twice[0].tx_hash)
    assert any("two transitions in one transaction" in p for p in replay_order(twice).problems)
    over = _events(PLACED, ("Cancelled", {"buyer": BUYER, "refund": "9999"}))
    assert any("escrow below zero" in p for p in replay_order(over).problems)


def test_folds_are_values():
    f = replay_order(_events(PLACED)).fold
    with pytest.raises(FrozenInstanceError):
        f.state = OrderState.SETTLED  # type: ignore[misc]
    g = fold_order(f, *ASSIGNED, block=2)
    assert f.state is OrderState.OPEN and g.state is OrderState.ASSIGNED
    assert fold_order(g, "Deposited", {}) is g
    with pytest.raises(LifecycleViolation):
        fold_order(None, "Deposited", {})


def test_the_provider_fold_follows_status_stake_and_leases_and_flags_a_wrong_stake_figure():
    evs = [Ev("Registered", {"provider": P1, "stake": "100", "domain": 3, "hardware": "0x" + "aa" * 32,
                             "prices": [1, 2, 3, 4]}),
           Ev("StakeAdded", {"provider": P1, "amount": "50", "stake": "150"}),
           Ev("LeaseCountChanged", {"provider": P1, "liveLeases": 2}),
           Ev("Slashed", {"provider": P1, "order": 7, "amount": "30", "stake": "120"}),
           Ev("ProviderPaused", {"provider": P1}),
           Ev("Registered", {"provider": P2, "stake": "10", "domain": 1}),
           Ev("StakeAdded", {"provider": P2, "amount": "5", "stake": "99"}),
           Ev("Deposited", {"account": P2, "amount": 1})]
    book = ProviderBook.of(evs)
    a, b = book.providers[P1], book.providers[P2]
    assert (a.status, a.stake, a.live_leases, a.slashed, a.domain, a.prices) == (ProviderStatus.PAUSED, 120, 2, 30, 3,
                                                                                  (1, 2, 3, 4))
    assert (b.status, b.stake) == (ProviderStatus.ACTIVE, 15)
    assert len(book.problems) == 1 and "reports stake 99" in book.problems[0]
    exited, problem = fold_provider(a, "ProviderExited", {"provider": P1, "released": "120"})
    assert exited.status is ProviderStatus.EXITED and exited.stake == 0 and problem is None
