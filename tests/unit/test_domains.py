"""Path-vector exchange of compute summaries between ASes: propagation, the decision process,
loop prevention, withdrawal, session failure, and bad input from neighbours, on lines and rings
of ASes run by ``DomainNetwork`` (no relationships: every neighbour a sibling, no policy)."""

from __future__ import annotations

import logging

import pytest

from marketplace.resources.model import DeviceClass
from marketplace.routing.domain_policy import DomainConfig
from marketplace.routing.domain_sim import DomainNetwork
from marketplace.routing.domain_values import DomainSummary, Message, ProviderCapacity, Withdrawal
from marketplace.routing.domains import DomainRouter
from marketplace.routing.errors import DomainError

pytestmark = pytest.mark.unit

GPU, CPU = DeviceClass.GPU, DeviceClass.CPU


def build(edges: dict[tuple[int, int], float], transit: float = 0.0, **cfg) -> dict[int, DomainRouter]:
    nbrs: dict[int, dict[int, float]] = {}
    for (a, b), lat in edges.items():
        nbrs.setdefault(a, {})[b] = lat
        nbrs.setdefault(b, {})[a] = lat
    config = DomainConfig(**cfg)
    return {asn: DomainRouter(asn, nb, transit_latency_ms=transit, config=config) for asn, nb in sorted(nbrs.items())}


def gpus(asn: int, *frees: float, price: float = 2.0, latency: float = 1.0) -> list[ProviderCapacity]:
    return [ProviderCapacity(f"as{asn}-p{i}", GPU, 8, f, price + i, latency + i) for i, f in enumerate(frees)]


def assert_loop_free(routers: dict[int, DomainRouter]) -> None:
    for asn, r in routers.items():
        for (origin, _), route in r.table().items():
            path = route.summary.as_path
            assert len(set(path)) == len(path)
            assert (asn not in path) == (route.via is not None), (asn, path)


def summary(origin: int, path: tuple[int, ...], *, seq: int = 1, free: float = 4, lat: float = 1.0,
            price: float = 1.0) -> DomainSummary:
    return DomainSummary(origin, GPU, 8, free, price, path, lat, seq)


def test_line_propagates_with_prepended_path_and_added_latency():
    routers = build({(1, 2): 3.0, (2, 3): 4.0}, transit=0.5)
    net = DomainNetwork(routers)
    net.originate(3, gpus(3, 5, 0, 2) + [ProviderCapacity("as3-cpu", CPU, 64, 32, 0.1, 0.2)])
    net.run()
    s3 = routers[3].best(3, GPU).summary
    assert (s3.total, s3.free, s3.min_price, s3.min_latency_ms) == (24, 7, 2.0, 1.0)  # total counts every provider
    s2 = routers[2].best(3, GPU).summary
    assert s2.as_path == (3,) and s2.min_latency_ms == pytest.approx(1.0 + 4.0)
    s1 = routers[1].best(3, GPU)
    assert s1.summary.as_path == (2, 3) and s1.via == 2
    assert s1.summary.min_latency_ms == pytest.approx(1.0 + 4.0 + 0.5 + 3.0)
    assert [s.origin_as for s in routers[1].routes(GPU)] == [3]
    assert routers[1].routes(CPU)[0].free == 32
    assert routers[1].routes(DeviceClass.NPU) == []
    assert_loop_free(routers)


def test_both_classes_travel_in_one_batched_update():
    routers = build({(1, 2): 1.0})
    msgs = routers[2].originate(gpus(2, 3) + [ProviderCapacity("c", CPU, 64, 32, 0.1, 0.2)])
    assert len(msgs) == 1 and [type(b) for b in msgs[0].body] == [DomainSummary, DomainSummary]
    assert {b.device_class for b in msgs[0].body} == {GPU, CPU}


def test_withdrawal_when_capacity_disappears_reaches_everyone():
    routers = build({(1, 2): 1.0, (2, 3): 1.0, (3, 4): 1.0})
    net = DomainNetwork(routers)
    net.originate(4, gpus(4, 3))
    net.run()
    assert all(r.best(4, GPU) for r in routers.values())
    # busy: free capacity drops to zero -> the class is withdrawn, not advertised empty
    msgs = routers[4].originate(gpus(4, 0), net.now)
    assert [[type(b) for b in m.body] for m in msgs] == [[Withdrawal]]
    assert msgs[0].body[0].seq == 1  # root cause: everything of AS4/GPU up to sequence 1 is gone
    net.send(msgs)
    net.run()
    assert all(r.best(4, GPU) is None for r in routers.values())
    assert all(r.routes(GPU) == [] for r in routers.values())
    # capacity comes back (a newer sequence passes the tombstones), then the providers leave altogether
    net.originate(4, gpus(4, 2))
    net.run()
    assert routers[1].best(4, GPU).summary.free == 2 and routers[1].best(4, GPU).summary.seq == 2
    net.originate(4, [])
    net.run()
    assert all(r.best(4, GPU) is None for r in routers.values())


def test_capacity_change_is_propagated_and_unchanged_summary_is_not_resent():
    routers = build({(1, 2): 1.0, (2, 3): 1.0})
    net = DomainNetwork(routers)
    net.originate(3, gpus(3, 4))
    net.run()
    assert routers[3].originate(gpus(3, 4), net.now) == []  # nothing changed: nothing sent
    net.originate(3, gpus(3, 1))
    conv = net.run()
    assert routers[1].best(3, GPU).summary.free == 1 and conv.messages == 2
    assert conv.sim_s >= 30 * 0.75  # the second advertisement waited for the MRAI timer


def test_ring_selects_shorter_then_faster_path_and_never_sends_a_route_back():
    # ring 1-2-3-4-5-1: from AS1, AS3 is 1-2-3 (2 AS hops, slow links) or 1-5-4-3 (3 AS hops, fast)
    ring = {(1, 2): 10.0, (2, 3): 10.0, (3, 4): 1.0, (4, 5): 1.0, (5, 1): 1.0}
    routers = build(ring)
    net = DomainNetwork(routers)
    net.originate(3, gpus(3, 4))
    net.run()
    r1 = routers[1].best(3, GPU)
    assert r1.summary.as_path == (2, 3)  # shortest AS path wins over the 3-hop path with lower latency
    assert r1.summary.min_latency_ms == pytest.approx(1.0 + 20.0)
    # sender-side loop detection: no AS is ever offered a path that holds it
    assert sum(r.loops_rejected for r in routers.values()) == 0
    assert_loop_free(routers)
    # with equal AS path lengths (4-ring), lower latency wins
    routers = build({(1, 2): 10.0, (2, 3): 10.0, (3, 4): 1.0, (4, 1): 1.0})
    net = DomainNetwork(routers)
    net.originate(3, gpus(3, 4))
    net.run()
    assert routers[1].best(3, GPU).summary.as_path == (4, 3)
    assert routers[1].best(3, GPU).summary.min_latency_ms == pytest.approx(3.0)
    assert_loop_free(routers)


def test_ring_reroutes_after_a_session_fails_and_recovers_when_it_returns():
    routers = build({(1, 2): 1.0, (2, 3): 1.0, (3, 4): 1.0, (4, 5): 1.0, (5, 1): 1.0})
    net = DomainNetwork(routers)
    for asn in (3, 5):
        net.originate(asn, gpus(asn, asn))
    net.run()
    assert routers[1].best(3, GPU).summary.as_path == (2, 3)
    net.peer_down(2, 3)  # the 2-3 session drops on both sides
    net.run()
    assert routers[1].best(3, GPU).summary.as_path == (5, 4, 3)
    assert routers[2].best(3, GPU).summary.as_path == (1, 5, 4, 3)
    assert_loop_free(routers)
    net.peer_up(2, 3)  # the whole table crosses the new session at once
    net.run()
    assert routers[2].best(3, GPU).summary.as_path == (3,)
    assert routers[1].best(3, GPU).summary.as_path == (2, 3)
    assert routers[2].counters["session_up"] == 1
    with pytest.raises(DomainError, match="not a neighbour"):
        routers[1].peer_down(3)


def test_decision_process_order():
    r = DomainRouter(10, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0})

    def offer(via: int, path: tuple[int, ...], lat: float, price: float, origin: int = 99) -> None:
        r.receive(Message(via, 10, DomainSummary(origin, GPU, 8, 4, price, (via,) + path, lat)))

    offer(1, (7, 99), 1.0, 1.0)
    assert r.best(99, GPU).via == 1
    offer(2, (99,), 50.0, 9.0)  # 1. shorter AS path beats lower latency and price
    assert r.best(99, GPU).via == 2
    offer(3, (99,), 40.0, 9.0)  # 2. same length: lower latency
    assert r.best(99, GPU).via == 3
    offer(4, (99,), 40.0, 5.0)  # 3. same latency: lower price
    assert r.best(99, GPU).via == 4
    offer(2, (99,), 40.0, 5.0)  # 5. all equal: lowest neighbour AS
    assert r.best(99, GPU).via == 2
    # 4. across origins, a buyer's ranking ends on the lowest origin id
    offer(1, (98,), 40.0, 5.0, origin=98)
    assert [s.origin_as for s in r.routes(GPU)] == [98, 99]
    # a plain withdrawal falls back to the next best
    r.receive(Message(2, 10, Withdrawal(99, GPU)))
    assert r.best(99, GPU).via == 4


def test_loop_is_refused_and_treated_as_withdraw(caplog):
    r = DomainRouter(10, [1, 2])
    r.receive(Message(1, 10, summary(99, (1, 99))))
    assert r.best(99, GPU).via == 1
    with caplog.at_level(logging.WARNING, logger="marketplace.routing.domains"):
        out = r.receive(Message(1, 10, summary(99, (1, 10, 99))))
    assert r.loops_rejected == 1 and r.best(99, GPU) is None
    assert "refused from AS1 (loop)" in caplog.text
    # AS2 had been told; AS1 had not (its own route), so only AS2 hears the withdrawal
    assert [(m.receiver, [type(b) for b in m.body]) for m in out] == [(2, [Withdrawal])]


def test_local_route_wins_for_its_own_origin():
    routers = build({(1, 2): 1.0})
    net = DomainNetwork(routers)
    net.originate(1, gpus(1, 1))
    conv = net.run()
    assert routers[1].best(1, GPU).via is None
    assert conv.messages == 1  # AS2 does not send AS1's route back to AS1
    assert routers[1].receive(Message(2, 1, summary(1, (2, 1)))) == [] and routers[1].loops_rejected == 1


@pytest.mark.parametrize("msg, reason", [
    (Message(5, 10, summary(99, (5, 99))), "not-a-neighbour"),
    (Message(1, 11, summary(99, (1, 99))), "wrong-receiver"),
    (Message(1, 10, summary(99, (7, 99))), "first-as-mismatch"),  # a neighbour that lies about its domain
    (Message(1, 10, summary(99, (1, 7, 8, 7, 99))), "as-path-loop"),
    (Message(1, 10, summary(99, (1,) + tuple(range(1000, 1070)) + (99,))), "as-path-too-long"),
    (Message(1, 10, ("not an update",)), "malformed"),
    (Message(1, 10, Withdrawal(10, GPU, seq=3)), "own-origin"),
    (Message(2, 10, Withdrawal(99, GPU, seq=5)), "unfounded-withdrawal"),  # AS2 never carried AS99's route
])
def test_bad_input_from_a_neighbour_is_refused_counted_and_installs_nothing(msg, reason):
    r = DomainRouter(10, [1, 2])
    r.receive(Message(1, 10, summary(99, (1, 99))))
    before = r.best(99, GPU)
    r.receive(msg)
    assert r.rejected[reason] == 1 and sum(r.rejected.values()) == 1
    assert r.best(7, GPU) is None and r.best(99, GPU) in (None, before)
    if reason in ("first-as-mismatch", "as-path-loop", "as-path-too-long"):
        assert r.best(99, GPU) is None  # treat-as-withdraw: AS1's earlier route is dropped too
    if reason == "unfounded-withdrawal":
        assert r.best(99, GPU) == before  # AS1's route to AS99 survives AS2's forged root cause


def test_session_claims_are_checked_against_the_transport():
    r = DomainRouter(10, [1, 2])
    # the transport authenticated AS2's session; the message claims to come from AS1
    assert r.receive(Message(1, 10, summary(99, (1, 99))), peer=2) == []
    assert r.rejected["peer-as-mismatch"] == 1 and r.best(99, GPU) is None
    r.peer_down(1)
    r.receive(Message(1, 10, summary(99, (1, 99))))
    assert r.rejected["session-down"] == 1 and r.best(99, GPU) is None


def test_undecodable_update_drops_that_neighbours_route():
    r = DomainRouter(10, [1, 2])
    r.receive(Message(1, 10, summary(99, (1, 99))))
    out = r.refuse_malformed(1, (99, GPU), "free > total")
    assert r.rejected["malformed"] == 1 and r.best(99, GPU) is None
    assert [m.receiver for m in out] == [2]


def test_bad_values_are_refused_at_construction():
    with pytest.raises(DomainError, match="end at the origin"):
        DomainSummary(99, GPU, 8, 4, 1.0, (1, 2), 1.0)
    with pytest.raises(DomainError, match="free"):
        DomainSummary(99, GPU, 8, 9, 1.0, (99,), 1.0)
    with pytest.raises(DomainError, match="finite"):
        DomainSummary(99, GPU, 8, 4, float("nan"), (99,), 1.0)
    with pytest.raises(DomainError, match="AS numbers"):
        DomainSummary(99, GPU, 8, 4, 1.0, (0, 99), 1.0)
    with pytest.raises(DomainError, match="seq"):
        DomainSummary(99, GPU, 8, 4, 1.0, (99,), 1.0, seq=-1)
    with pytest.raises(DomainError, match="seq"):
        Withdrawal(99, GPU, seq=-2)
    with pytest.raises(DomainError, match="own neighbour"):
        DomainRouter(3, [3])
    with pytest.raises(DomainError, match="AS number"):
        DomainRouter(0, [3])
    with pytest.raises(DomainError, match="neighbour AS numbers"):
        DomainRouter(3, [0])
    with pytest.raises(DomainError, match="free"):
        ProviderCapacity("p", GPU, 1, 2, 1.0)


def test_network_refuses_unknown_receivers_and_runaway_runs():
    routers = build({(1, 2): 1.0})
    net = DomainNetwork(routers)
    with pytest.raises(DomainError, match="unknown AS"):
        net.send([Message(1, 3, Withdrawal(1, GPU))])
    with pytest.raises(DomainError, match="unknown AS"):
        net.originate(7, [])
    net.originate(1, gpus(1, 1))
    with pytest.raises(DomainError, match="advance"):
        net.advance(1.0)
    net.run()
    net.advance(5.0)
    with pytest.raises(DomainError, match="back in time"):
        net.advance(-1.0)
    tight = DomainNetwork(build({(1, 2): 1.0, (2, 3): 1.0}), max_messages=1)
    tight.originate(1, gpus(1, 1))
    with pytest.raises(DomainError, match="no convergence"):
        tight.run()
