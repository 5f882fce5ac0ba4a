"""The three-way adjacency of RFC 5303 and its hold timer, driven without sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.peering.adjacency import Adjacency
from marketplace.peering.wire import AdjState, Hello

pytestmark = pytest.mark.unit


def exchange(a: Adjacency, b: Adjacency, now: float = 0.0, rounds: int = 3) -> None:
    for _ in range(rounds):
        b.on_hello(a.hello(), now)
        a.on_hello(b.hello(), now)


def test_two_ends_come_up_through_initializing():
    a, b = Adjacency(1, 3000), Adjacency(2, 3000)
    t = b.on_hello(a.hello(), 0.0)
    assert b.state == AdjState.INITIALIZING and b.neighbor_id == 1 and not t.went_up
    t = a.on_hello(b.hello(), 0.0)  # b names a: a goes straight to UP
    assert a.state == AdjState.UP and t.went_up and t.neighbor_id == 2
    t = b.on_hello(a.hello(), 0.0)
    assert b.state == AdjState.UP and t.went_up


def test_hold_timer_uses_the_peers_hold_time_and_brings_it_down():
    a, b = Adjacency(1, 1000), Adjacency(2, 4000)
    exchange(a, b, now=10.0)
    assert a.on_timer(13.9) is None  # b advertised 4 s
    t = a.on_timer(14.0)
    assert t is not None and t.went_down and a.state == AdjState.DOWN and a.neighbor_id == 0
    assert b.on_timer(11.0).went_down  # a advertised 1 s


def test_every_hello_restarts_the_hold_timer():
    a, b = Adjacency(1, 1000), Adjacency(2, 1000)
    exchange(a, b, now=0.0)
    for now in (0.9, 1.8, 2.7):
        a.on_hello(b.hello(), now)
        assert a.on_timer(now + 0.5) is None
    assert a.state == AdjState.UP


def test_restarted_peer_saying_down_drops_us_to_initializing_then_up_again():
    a, b = Adjacency(1, 3000), Adjacency(2, 3000)
    exchange(a, b)
    fresh = Adjacency(2, 3000)  # b restarted with the same id
    t = a.on_hello(fresh.hello(), 1.0)
    assert t.went_down and a.state == AdjState.INITIALIZING
    exchange(a, fresh, now=1.0)
    assert a.state == fresh.state == AdjState.UP


def test_hello_naming_someone_else_is_down_for_us():
    a = Adjacency(1, 3000)
    a.on_hello(Hello(2, 3000, AdjState.DOWN), 0.0)
    a.on_hello(Hello(2, 3000, AdjState.INITIALIZING, neighbor_id=99), 0.0)
    assert a.state == AdjState.INITIALIZING  # not UP: it has not heard us


def test_up_from_a_stranger_keeps_us_down():
    a = Adjacency(1, 3000)
    assert a.on_hello(Hello(2, 3000, AdjState.UP, neighbor_id=1), 0.0) is None
    assert a.state == AdjState.DOWN


def test_changed_neighbour_id_restarts_the_handshake():
    a, b = Adjacency(1, 3000), Adjacency(2, 3000)
    exchange(a, b)
    a.on_hello(Hello(3, 3000, AdjState.DOWN), 1.0)
    assert a.state == AdjState.INITIALIZING and a.neighbor_id == 3


def test_own_hello_looped_back_never_forms_an_adjacency():
    a = Adjacency(1, 3000)
    for _ in range(3):
        a.on_hello(a.hello(), 0.0)
    assert a.state == AdjState.DOWN


def test_close_brings_it_down_once():
    a, b = Adjacency(1, 3000), Adjacency(2, 3000)
    exchange(a, b)
    assert a.on_close().went_down
    assert a.on_close() is None


def test_node_id_must_be_positive():
    with pytest.raises(ValueError):
        Adjacency(0, 1000)


hellos = st.builds(Hello, st.integers(1, 4), st.integers(1, 5000), st.sampled_from(AdjState), st.integers(0, 4))


@given(st.lists(st.one_of(hellos, st.just("timer"), st.just("close")), max_size=30))
def test_invariants_hold_under_any_sequence_of_events(events):
    a = Adjacency(1, 3000)
    now = itertools.count()
    for ev in events:
        t = float(next(now))
        if ev == "timer":
            a.on_timer(t)
        elif ev == "close":
            a.on_close()
        else:
            before = a.state
            a.on_hello(ev, t)
            if a.state == AdjState.UP and before != AdjState.UP:
                assert ev.neighbor_id == 1 and ev.state != AdjState.DOWN  # UP only from a hello naming us
        assert (a.neighbor_id != 0) == (a.state != AdjState.DOWN)
        assert a.neighbor_id != 1
