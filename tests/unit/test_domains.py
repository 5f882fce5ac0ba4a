"""Path-vector exchange of compute summaries between ASes: propagation, loop prevention,
withdrawal, failure and the decision process, on lines and rings of ASes."""

from __future__ import annotations

import pytest

from marketplace.resources.model import DeviceClass
from marketplace.routing.domains import (
    DomainRouter,
    DomainSummary,
    Message,
    ProviderCapacity,
    Withdrawal,
    exchange,
)
from marketplace.routing.errors import DomainError

pytestmark = pytest.mark.unit

GPU, CPU = DeviceClass.GPU, DeviceClass.CPU


def build(edges: dict[tuple[int, int], float], transit: float = 0.0) -> dict[int, DomainRouter]:
    nbrs: dict[int, dict[int, float]] = {}
    for (a, b), lat in edges.items():
        nbrs.setdefault(a, {})[b] = lat
        nbrs.setdefault(b, {})[a] = lat
    return {asn: DomainRouter(asn, nb, transit_latency_ms=transit) for asn, nb in sorted(nbrs.items())}


def gpus(asn: int, *frees: float, price: float = 2.0, latency: float = 1.0) -> list[ProviderCapacity]:
    return [ProviderCapacity(f"as{asn}-p{i}", GPU, 8, f, price + i, latency + i) for i, f in enumerate(frees)]


def assert_loop_free(routers: dict[int, DomainRouter]) -> None:
    for asn, r in routers.items():
        for (origin, _), route in r.table().items():
            path = route.summary.as_path
            assert len(set(path)) == len(path)
            assert (asn not in path) == (route.via is not None), (asn, path)


def test_line_propagates_with_prepended_path_and_added_latency():
    routers = build({(1, 2): 3.0, (2, 3): 4.0}, transit=0.5)
    msgs = routers[3].originate(gpus(3, 5, 0, 2) + [ProviderCapacity("as3-cpu", CPU, 64, 32, 0.1, 0.2)])
    exchange(routers, msgs)
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


def test_withdrawal_when_capacity_disappears_reaches_everyone():
    routers = build({(1, 2): 1.0, (2, 3): 1.0, (3, 4): 1.0})
    exchange(routers, routers[4].originate(gpus(4, 3)))
    assert all(r.best(4, GPU) for r in routers.values())
    # busy: free capacity drops to zero -> the class is withdrawn, not advertised empty
    msgs = routers[4].originate(gpus(4, 0))
    assert [type(m.body) for m in msgs] == [Withdrawal]
    exchange(routers, msgs)
    assert all(r.best(4, GPU) is None for r in routers.values())
    assert all(r.routes(GPU) == [] for r in routers.values())
    # capacity comes back, then the providers leave altogether
    exchange(routers, routers[4].originate(gpus(4, 2)))
    assert routers[1].best(4, GPU).summary.free == 2
    exchange(routers, routers[4].originate([]))
    assert all(r.best(4, GPU) is None for r in routers.values())


def test_capacity_change_is_propagated_and_unchanged_summary_is_not_resent():
    routers = build({(1, 2): 1.0, (2, 3): 1.0})
    exchange(routers, routers[3].originate(gpus(3, 4)))
    assert routers[3].originate(gpus(3, 4)) == []  # nothing changed: nothing sent
    n = exchange(routers, routers[3].originate(gpus(3, 1)))
    assert routers[1].best(3, GPU).summary.free == 1 and n > 0


def test_ring_selects_shorter_then_faster_path_and_rejects_loops():
    # ring 1-2-3-4-5-1: from AS1, AS3 is 1-2-3 (2 AS hops, slow links) or 1-5-4-3 (3 AS hops, fast)
    ring = {(1, 2): 10.0, (2, 3): 10.0, (3, 4): 1.0, (4, 5): 1.0, (5, 1): 1.0}
    routers = build(ring)
    exchange(routers, routers[3].originate(gpus(3, 4)))
    r1 = routers[1].best(3, GPU)
    assert r1.summary.as_path == (2, 3)  # shortest AS path wins over the 3-hop path with lower latency
    assert r1.summary.min_latency_ms == pytest.approx(1.0 + 20.0)
    assert sum(r.loops_rejected for r in routers.values()) > 0  # summaries came back around the ring
    assert_loop_free(routers)
    # with equal AS path lengths (4-ring), lower latency wins
    routers = build({(1, 2): 10.0, (2, 3): 10.0, (3, 4): 1.0, (4, 1): 1.0})
    exchange(routers, routers[3].originate(gpus(3, 4)))
    assert routers[1].best(3, GPU).summary.as_path == (4, 3)
    assert routers[1].best(3, GPU).summary.min_latency_ms == pytest.approx(3.0)
    assert_loop_free(routers)


def test_ring_reroutes_after_a_peering_fails():
    routers = build({(1, 2): 1.0, (2, 3): 1.0, (3, 4): 1.0, (4, 5): 1.0, (5, 1): 1.0})
    for asn in (3, 5):
        exchange(routers, routers[asn].originate(gpus(asn, asn)))
    assert routers[1].best(3, GPU).summary.as_path == (2, 3)
    # the 2-3 session drops on both sides
    exchange(routers, routers[2].peer_down(3) + routers[3].peer_down(2))
    assert routers[1].best(3, GPU).summary.as_path == (5, 4, 3)
    assert routers[2].best(3, GPU).summary.as_path == (1, 5, 4, 3)
    assert_loop_free(routers)


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
    # a withdrawal falls back to the next best
    r.receive(Message(2, 10, Withdrawal(99, GPU)))
    assert r.best(99, GPU).via == 4


def test_loop_is_rejected_and_treated_as_withdraw():
    r = DomainRouter(10, [1, 2])
    r.receive(Message(1, 10, DomainSummary(99, GPU, 8, 4, 1.0, (1, 99), 1.0)))
    assert r.best(99, GPU).via == 1
    out = r.receive(Message(1, 10, DomainSummary(99, GPU, 8, 4, 1.0, (1, 10, 99), 1.0)))
    assert r.loops_rejected == 1 and r.best(99, GPU) is None
    assert [(m.receiver, type(m.body)) for m in out] == [(1, Withdrawal), (2, Withdrawal)]


def test_local_route_wins_and_is_not_overridden():
    routers = build({(1, 2): 1.0})
    exchange(routers, routers[1].originate(gpus(1, 1)))
    assert routers[1].best(1, GPU).via is None
    assert routers[1].loops_rejected == 1  # AS2 sent AS1's summary back; AS1 dropped it


def test_bad_messages_are_refused():
    r = DomainRouter(10, [1])
    with pytest.raises(DomainError, match="not a neighbour"):
        r.receive(Message(5, 10, Withdrawal(99, GPU)))
    with pytest.raises(DomainError, match="not starting with the sender"):
        r.receive(Message(1, 10, DomainSummary(99, GPU, 8, 4, 1.0, (7, 99), 1.0)))
    with pytest.raises(DomainError, match="end at the origin"):
        DomainSummary(99, GPU, 8, 4, 1.0, (1, 2), 1.0)
    with pytest.raises(DomainError, match="free"):
        DomainSummary(99, GPU, 8, 9, 1.0, (99,), 1.0)
    with pytest.raises(DomainError, match="own neighbour"):
        DomainRouter(3, [3])
    with pytest.raises(DomainError, match="free"):
        ProviderCapacity("p", GPU, 1, 2, 1.0)
    with pytest.raises(DomainError, match="unknown AS"):
        exchange({}, [Message(1, 2, Withdrawal(1, GPU))])
