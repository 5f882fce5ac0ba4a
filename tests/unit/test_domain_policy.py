"""Inter-domain policy and damping on small hand-checked graphs: MRAI batching, Gao-Rexford export
and preference (with siblings), withdrawals that do not hunt (root cause and tombstones), and
route flap damping of a flapping neighbour or session."""

from __future__ import annotations

import math

import pytest

from marketplace.resources.model import DeviceClass
from marketplace.routing.asgraph import AsGraph
from marketplace.routing.domain_policy import (
    DampingConfig,
    DomainConfig,
    FlapDamper,
    Relation,
    RouteClass,
    exports,
    learned_class,
)
from marketplace.routing.domain_sim import DomainNetwork
from marketplace.routing.domain_values import DomainSummary, Message, Neighbor, ProviderCapacity, Withdrawal
from marketplace.routing.domains import DomainRouter
from marketplace.routing.errors import DomainError

pytestmark = pytest.mark.unit

GPU = DeviceClass.GPU
C, P, R, S = Relation.CUSTOMER, Relation.PROVIDER, Relation.PEER, Relation.SIBLING
OFFER = [ProviderCapacity("p", GPU, 8, 4, 1.0, 1.0)]


def summary(origin: int, path: tuple[int, ...], *, seq: int = 1, lat: float = 1.0) -> DomainSummary:
    return DomainSummary(origin, GPU, 8, 4, 1.0, path, lat, seq)


def path_of(routers: dict[int, DomainRouter], asn: int, origin: int) -> tuple[int, ...] | None:
    route = routers[asn].best(origin, GPU)
    return None if route is None else route.summary.as_path


# ---------------------------------------------------------------------- the rules themselves


def test_export_and_class_tables():
    assert Relation.CUSTOMER.reverse is P and P.reverse is C and R.reverse is R and S.reverse is S
    for rel in Relation:
        assert exports(RouteClass.LOCAL, rel) and exports(RouteClass.CUSTOMER, rel)
    for cls in (RouteClass.PEER, RouteClass.PROVIDER):
        assert [exports(cls, rel) for rel in (C, P, R, S)] == [True, False, False, True]
    assert [learned_class(rel, RouteClass.PROVIDER) for rel in (C, P, R)] == [
        RouteClass.CUSTOMER, RouteClass.PROVIDER, RouteClass.PEER]
    assert learned_class(S, RouteClass.LOCAL) is RouteClass.CUSTOMER  # a sibling's own route
    assert learned_class(S, RouteClass.PROVIDER) is RouteClass.PROVIDER  # keeps its class across the sibling


def test_configs_refuse_bad_values():
    for bad in (dict(mrai_s=-1), dict(mrai_s=math.inf), dict(mrai_jitter=1.0), dict(tombstone_s=0),
                dict(max_path_len=0)):
        with pytest.raises(DomainError):
            DomainConfig(**bad)
    for bad in (dict(reuse=7000), dict(half_life_s=0), dict(withdrawal_penalty=-1)):
        with pytest.raises(DomainError):
            DampingConfig(**bad)
    with pytest.raises(DomainError, match="latency"):
        Neighbor(-1.0)


# ---------------------------------------------------------------------- MRAI


def test_mrai_batches_changes_and_sends_only_the_latest_state():
    r = DomainRouter(10, [1, 2], config=DomainConfig(mrai_s=30, mrai_jitter=0))
    out = r.receive(Message(1, 10, summary(99, (1, 7, 99))), 0.0)
    assert [(m.receiver, m.body[0].as_path) for m in out] == [(2, (10, 1, 7, 99))]  # first one at once
    assert r.next_due() is None
    assert r.receive(Message(1, 10, summary(99, (1, 99), lat=5.0)), 1.0) == []  # timer running: batched
    assert r.receive(Message(1, 10, summary(99, (1, 99), lat=3.0)), 2.0) == []
    assert r.next_due() == 30.0
    assert r.poll(29.9) == []
    out = r.poll(30.0)
    assert [(m.receiver, m.body[0].as_path, m.body[0].min_latency_ms) for m in out] == [(2, (10, 1, 99), 3.0)]
    assert r.next_due() is None
    # a withdrawal is not held by the timer that restarted at 30 s
    out = r.receive(Message(1, 10, Withdrawal(99, GPU)), 31.0)
    assert [(m.receiver, type(m.body[0])) for m in out] == [(2, Withdrawal)]


def test_mrai_jitter_stays_in_the_rfc_range_and_is_reproducible():
    def intervals(seed: int) -> list[float]:
        r = DomainRouter(10, [1, 2], config=DomainConfig(mrai_s=30, seed=seed))
        got = []
        for k in range(5):
            t = k * 100.0  # the previous timer has long expired: this advertisement goes at once
            assert r.receive(Message(1, 10, summary(99, (1, 99), lat=float(k + 1))), t)
            r.receive(Message(1, 10, summary(99, (1, 99), lat=float(k + 50))), t + 1)  # held by the timer
            got.append(r.next_due() - t)
            r.poll(t + 40)
        return got

    first = intervals(0)
    assert all(22.5 <= d <= 30.0 for d in first) and len(set(first)) > 1
    assert intervals(0) == first and intervals(1) != first


def _three_ways(mrai_s: float) -> tuple[dict[int, DomainRouter], DomainNetwork]:
    # origin 1 reaches AS2 over 1-5-6-2 (3 hops, 1.5 ms), 1-3-2 (2 hops, 2 ms) and 1-2 (1 hop, 100 ms);
    # AS4 hangs off AS2 and sees every change of AS2's best
    links = {(1, 2): 100.0, (1, 3): 1.0, (3, 2): 1.0, (1, 5): 0.5, (5, 6): 0.5, (6, 2): 0.5, (2, 4): 1.0}
    nbrs: dict[int, dict[int, float]] = {}
    for (a, b), lat in links.items():
        nbrs.setdefault(a, {})[b] = lat
        nbrs.setdefault(b, {})[a] = lat
    cfg = DomainConfig(mrai_s=mrai_s, mrai_jitter=0)
    routers = {a: DomainRouter(a, nb, config=cfg) for a, nb in nbrs.items()}
    return routers, DomainNetwork(routers)


def test_mrai_saves_the_intermediate_paths_hand_checked():
    got = {}
    for mrai in (0.0, 30.0):
        routers, net = _three_ways(mrai)
        net.originate(1, OFFER)
        conv = net.run()
        assert path_of(routers, 4, 1) == (2, 1)
        got[mrai] = (routers[4].counters["updates_in"], conv.sim_s)
    # without MRAI AS4 hears (2,6,5,1) at 2.5 ms, (2,3,1) at 3 ms, (2,1) at 101 ms; with it, the first and,
    # when AS2's timer (started when it sent at 1.5 ms) expires, the last: 1.5 ms + 30 s + 1 ms of link
    assert got[0.0][0] == 3 and got[0.0][1] == pytest.approx(0.101)
    assert got[30.0][0] == 2 and got[30.0][1] == pytest.approx(30.0025)


# ---------------------------------------------------------------------- Gao-Rexford

T1, T2, A, B, E, D, X, SIB, Q = 1, 2, 10, 20, 30, 40, 50, 11, 60
#   T1 ==peer== T2 --peer-- X          provider above customer; D is a customer of A, E and T1;
#   |  \         |                     SIB is A's sibling and has its own provider Q
#   A   \        B
#   | \  \       |
#  SIB  D ------ E   (D customer of E)
#   |
#   Q (provider of SIB)
POLICY_LINKS = [(T1, T2, R), (T1, A, C), (T2, B, C), (A, D, C), (B, E, C), (E, D, C), (T1, D, C), (T2, X, R),
                (A, SIB, S), (SIB, Q, P)]


def policy_net() -> tuple[dict[int, DomainRouter], DomainNetwork]:
    routers = AsGraph.from_links(POLICY_LINKS).routers(latency_ms=1.0)
    return routers, DomainNetwork(routers)


def test_provider_and_peer_routes_go_only_to_customers_valley_free():
    routers, net = policy_net()
    net.originate(A, OFFER)
    net.run()
    assert path_of(routers, T1, A) == (A,)
    assert path_of(routers, T2, A) == (T1, A)  # a peer route at T2 ...
    assert path_of(routers, X, A) is None  # ... is not given to T2's peer X
    assert path_of(routers, B, A) == (T2, T1, A)  # not (E, D, A): D never gives its provider A's route upward
    assert path_of(routers, E, A) == (B, T2, T1, A)
    assert path_of(routers, D, A) == (A,)
    assert path_of(routers, SIB, A) == (A,) and routers[SIB].best(A, GPU).route_class is RouteClass.CUSTOMER
    assert path_of(routers, Q, A) == (SIB, A)  # a sibling's own route goes up like a customer's


def test_customer_route_is_preferred_over_a_shorter_peer_route():
    routers, net = policy_net()
    net.originate(D, OFFER)
    net.run()
    assert path_of(routers, T1, D) == (D,)
    assert path_of(routers, T2, D) == (B, E, D)  # customer route, 3 hops, over the peer route (T1, D)
    assert routers[T2].best(D, GPU).route_class is RouteClass.CUSTOMER
    assert path_of(routers, X, D) == (T2, B, E, D)  # a customer route reaches peers
    assert path_of(routers, Q, D) == (SIB, A, D)


def test_a_providers_route_keeps_its_class_across_a_sibling():
    routers, net = policy_net()
    net.originate(B, OFFER)
    net.run()
    assert path_of(routers, X, B) == (T2, B)
    assert path_of(routers, A, B) == (T1, T2, B) and routers[A].best(B, GPU).route_class is RouteClass.PROVIDER
    sib = routers[SIB].best(B, GPU)
    assert sib.summary.as_path == (A, T1, T2, B) and sib.route_class is RouteClass.PROVIDER
    assert path_of(routers, Q, B) is None  # SIB does not give a provider's route to its own provider
    assert path_of(routers, D, B) == (E, B)


@pytest.mark.parametrize("origin", [T1, T2, A, B, E, D, X, SIB, Q])
def test_every_withdrawal_leaves_no_route_behind(origin):
    routers, net = policy_net()
    net.originate(origin, OFFER)
    announce = net.run()
    net.originate(origin, [])
    withdraw = net.run()
    assert all(r.best(origin, GPU) is None for r in routers.values())
    assert withdraw.messages <= announce.messages
    assert all(not r.rejected for r in routers.values())


# ---------------------------------------------------------------------- withdrawals that do not hunt


def clique(n: int, *, root_cause: bool) -> tuple[dict[int, DomainRouter], DomainNetwork]:
    cfg = DomainConfig(mrai_s=0.0, root_cause_withdrawals=root_cause, damping=None)
    routers = {a: DomainRouter(a, {b: 1.0 for b in range(1, n + 1) if b != a}, config=cfg) for a in range(1, n + 1)}
    return routers, DomainNetwork(routers)


def test_root_cause_withdrawal_costs_one_message_per_advertisement_on_a_clique():
    n = 6
    routers, net = clique(n, root_cause=True)
    net.originate(1, OFFER)
    announce = net.run()
    assert announce.messages == (n - 1) ** 2  # the origin to each, each to the n-2 others
    net.originate(1, [])
    withdraw = net.run()
    assert withdraw.messages == (n - 1) ** 2 and all(r.best(1, GPU) is None for r in routers.values())
    # the same without root cause: every AS falls back to paths through its neighbours, which are just as dead
    routers, net = clique(n, root_cause=False)
    net.originate(1, OFFER)
    net.run()
    net.originate(1, [])
    hunting = net.run()
    assert all(r.best(1, GPU) is None for r in routers.values())
    assert hunting.messages > 2 * withdraw.messages


def test_tombstone_refuses_a_withdrawn_summary_still_in_flight():
    r = DomainRouter(10, [1, 2], config=DomainConfig(mrai_s=0, tombstone_s=10))
    r.receive(Message(1, 10, summary(99, (1, 99))), 0.0)
    r.receive(Message(2, 10, summary(99, (2, 99))), 0.0)
    out = r.receive(Message(1, 10, Withdrawal(99, GPU, seq=1)), 1.0)
    assert r.best(99, GPU) is None  # AS2's copy of the same sequence went too: no hunting
    assert [(m.receiver, m.body[0]) for m in out] == [(2, Withdrawal(99, GPU, 1))]  # forwarded with its cause
    r.receive(Message(2, 10, summary(99, (2, 5, 99))), 2.0)  # sent by AS2 before it heard of the withdrawal
    assert r.best(99, GPU) is None and r.counters["stale_refused"] == 1
    r.receive(Message(2, 10, summary(99, (2, 99), seq=2)), 3.0)  # the origin is back with a newer sequence
    assert r.best(99, GPU).summary.seq == 2
    r.receive(Message(1, 10, summary(99, (1, 99), seq=1)), 20.0)  # after tombstone_s an old sequence passes
    assert r.best(99, GPU).via == 1


def test_origin_sequence_numbers_start_above_seq_base():
    r = DomainRouter(10, [1], seq_base=1_000)
    out = r.originate(OFFER)
    assert out[0].body[0].seq == 1_001
    assert r.originate([ProviderCapacity("p", GPU, 8, 2, 1.0, 1.0)], 1.0) == []  # within the MRAI interval
    assert r.poll(30.0)[0].body[0].seq == 1_002
    assert r.originate([], 31.0)[0].body[0] == Withdrawal(10, GPU, 1_002)  # withdrawals are not held


# ---------------------------------------------------------------------- route flap damping


def test_a_flapping_neighbour_is_suppressed_then_reused():
    r = DomainRouter(10, [1, 2], config=DomainConfig(mrai_s=0))
    r.receive(Message(2, 10, summary(99, (2, 7, 99))), 0.0)  # a steady, longer alternative
    t = 0.0
    for _ in range(7):  # seven withdrawals: 7,000 > 6,000 (RFC 7196)
        r.receive(Message(1, 10, summary(99, (1, 99))), t)
        r.receive(Message(1, 10, Withdrawal(99, GPU)), t + 1)
        t += 2
    assert r.counters["suppressed"] == 1
    r.receive(Message(1, 10, summary(99, (1, 99))), t)
    assert r.best(99, GPU).via == 2  # AS1's shorter route is kept but not used
    cfg = r.config.damping
    p = r.penalty(1, 99, GPU, t)
    assert 6000 < p < 7000
    reuse_at = t + cfg.half_life_s * math.log2(p / cfg.reuse)
    assert r.next_due() == pytest.approx(reuse_at, rel=1e-3)
    r.poll(reuse_at - 60)
    assert r.best(99, GPU).via == 2
    r.poll(reuse_at + 1)
    assert r.best(99, GPU).via == 1


def test_capacity_updates_on_the_same_path_are_not_flaps():
    r = DomainRouter(10, [1, 2], config=DomainConfig(mrai_s=0))
    for i in range(40):
        r.receive(Message(1, 10, DomainSummary(99, GPU, 100, i + 1, 1.0, (1, 99), 1.0, i + 1)), float(i))
    assert r.counters["suppressed"] == 0 and r.best(99, GPU).summary.free == 40


def test_a_flapping_session_gets_its_routes_damped():
    routers = {a: DomainRouter(a, {b: 1.0 for b in (1, 2, 3) if b != a}) for a in (1, 2, 3)}
    net = DomainNetwork(routers)
    net.originate(1, OFFER)
    net.run()
    for _ in range(7):
        net.peer_down(1, 2)
        net.run(until=net.now + 60)
        net.peer_up(1, 2)
        net.run(until=net.now + 60)
    assert routers[2].counters["suppressed"] >= 1
    assert path_of(routers, 2, 1) == (3, 1)  # the direct route from the flapping session is not used
    net.run()  # ... until its penalty has decayed (about 48 simulated minutes later)
    assert path_of(routers, 2, 1) == (1,) and net.now > 2_500


def test_damper_penalty_is_capped_so_suppression_is_bounded():
    cfg = DampingConfig()
    d = FlapDamper(cfg)
    assert d.penalize("k", 1e9, 0.0) is True
    assert d.penalty("k", 0.0) == pytest.approx(cfg.ceiling)
    assert d.next_reuse() == pytest.approx(cfg.max_suppress_s)
    assert d.suppressed("k", cfg.max_suppress_s - 1) and not d.suppressed("k", cfg.max_suppress_s + 1)
    assert d.due(cfg.max_suppress_s + 1) == ["k"] and d.next_reuse() is None
    assert d.penalize("j", 0.0, 0.0) is False
