"""Tier queues with ageing, reservation pre-emption (never of a bound lease), idempotent unreserve."""

from __future__ import annotations

import pytest

from marketplace.matching import InMemoryBinder, MatchingConfig, Outcome, ReservationState, Scheduler
from marketplace.matching.errors import LeaseBound
from marketplace.matching.queue import OrderQueue, TierAgeing
from tests.unit.matching_fixtures import gpu, order, provider

pytestmark = pytest.mark.unit


def test_higher_tier_first_then_ageing_lets_low_tiers_through():
    q = OrderQueue(TierAgeing(ageing_s=10.0))
    q.push(order("old-t0", gpu(), tier=0, at=0.0))
    q.push(order("new-t3", gpu(), tier=3, at=5.0))  # 5 s later, 3 tiers higher: first
    q.push(order("late-t3", gpu(), tier=3, at=31.0))  # more than 3 * ageing_s later: after old-t0
    q.push(order("t1", gpu(), tier=1, at=0.0))
    assert [o.order_id for o in q.snapshot()] == ["new-t3", "t1", "old-t0", "late-t3"]
    assert q.priority(q.snapshot()[2], now=30.0) == pytest.approx(3.0)


def test_low_tier_is_eventually_served_under_a_stream_of_high_tiers():
    s = Scheduler([provider("openb-node-0143")], config=MatchingConfig(ageing_s=5.0, batch_size=1))
    s.submit(order("low", gpu(), tier=0, at=0.0))
    served_at = None
    for t in range(40):
        s.submit(order(f"vip{t}", gpu(), tier=3, at=float(t)))
        r = s.schedule_round(float(t))
        for d in r.decisions:
            if d.outcome == Outcome.BOUND:
                if d.order_id == "low":
                    served_at = t
                s.release(d.order_id)
    assert served_at is not None and served_at <= 16  # within ~3 * ageing_s of waiting


def test_higher_tier_preempts_an_unbound_reservation_and_never_a_bound_lease():
    binder = InMemoryBinder(defer=True)  # chain writes not yet confirmed: reservations stay pre-emptible
    s = Scheduler([provider("openb-node-0000")], binder=binder)  # 2 GPUs
    s.submit(order("t0", gpu(2), tier=0))
    r1 = s.schedule_round(0.0)
    assert r1.by_order()["t0"].outcome == Outcome.RESERVED
    s.submit(order("t2", gpu(2), tier=2, at=1.0))
    r2 = s.schedule_round(1.0)
    d = r2.by_order()
    assert d["t0"].outcome == Outcome.PREEMPTED and d["t2"].outcome == Outcome.RESERVED
    assert d["t2"].preempted == ("t0",)
    assert "t0" in s.queue and s.state_of("t0") is None
    s.confirm("t2")
    assert s.state_of("t2") == ReservationState.BOUND
    # a still higher tier cannot take a bound lease
    s.submit(order("t3", gpu(2), tier=3, at=2.0))
    r3 = s.schedule_round(2.0)
    assert r3.by_order()["t3"].outcome == Outcome.PENDING
    assert s.state_of("t2") == ReservationState.BOUND
    with pytest.raises(LeaseBound):
        s.unreserve("t2")


def test_same_tier_does_not_preempt():
    s = Scheduler([provider("openb-node-0000")], binder=InMemoryBinder(defer=True))
    s.submit(order("a", gpu(2), tier=1))
    s.schedule_round(0.0)
    s.submit(order("b", gpu(2), tier=1, at=1.0))
    assert s.schedule_round(1.0).by_order()["b"].outcome == Outcome.PENDING


def test_unreserve_is_idempotent():
    s = Scheduler([provider("openb-node-0000")], binder=InMemoryBinder(defer=True))
    s.submit(order("a", gpu(1)))
    s.schedule_round(0.0)
    assert s.index.used_milli(gpu().device_class) == 1000
    assert s.unreserve("a") is True
    assert s.unreserve("a") is False
    assert s.unreserve("never-seen") is False
    assert s.index.used_milli(gpu().device_class) == 0
    assert "a" in s.queue and len(s.queue) == 1
