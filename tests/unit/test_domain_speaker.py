"""The domain speaker of an engine, two of them wired back to back in memory (no sockets): a session
exists only once an OPEN verified; before that, and for bad bytes or a lying sender, nothing is
installed and every refusal is counted under its reason."""

from __future__ import annotations

import time

import pytest

from marketplace.federation.config import Federation
from marketplace.federation.session import address_of, open_for
from marketplace.federation.speaker import DomainSpeaker
from marketplace.peering.wire import DomainOpen, DomainUpdate
from marketplace.resources.model import DeviceClass
from marketplace.routing import DomainSummary, Message, ProviderCapacity
from marketplace.routing.domain_wire import encode_update

pytestmark = pytest.mark.unit

KEYS = {1: b"\x01" * 32, 2: b"\x02" * 32, 3: b"\x03" * 32}
GPU = DeviceClass.GPU


def federation() -> Federation:
    return Federation.from_dict({
        "version": 1, "chain_id": 31337, "market": "0x" + "ab" * 20,
        "domains": {str(d): {"api": f"http://h:{d}", "peer": f"h:{7000 + d}", "orchestrator": address_of(k)}
                    for d, k in KEYS.items()},
        "links": [[1, 2, 3.0], [2, 3, 1.0]]})


class Wire:
    """Speakers 1 and 2 joined by one circuit named "c" (frames delivered at once)."""

    def __init__(self) -> None:
        self.fed = federation()
        self.closed: list[tuple[int, str]] = []
        self.speakers = {d: DomainSpeaker(d, self.fed, key=KEYS[d], send=self._sender(d),
                                          close=lambda c, why, d=d: self.closed.append((d, why)),
                                          is_orchestrator=lambda a: True) for d in (1, 2)}

    def _sender(self, d: int):
        def send(circuit: str, msgs: list) -> None:
            other = 2 if d == 1 else 1
            for m in msgs:
                self.speakers[other].domain_message(d, circuit, m)
        return send

    def up(self) -> None:
        for d, other in ((1, 2), (2, 1)):
            self.speakers[d].adjacency_up(other, "c")


def test_summaries_cross_only_on_an_authenticated_session_and_leave_with_it():
    w = Wire()
    s1, s2 = w.speakers[1], w.speakers[2]
    s1.originate([ProviderCapacity("p", GPU, 8, 4, 10.0, 1.0)])  # no session yet: nothing goes out
    assert s2.routes(GPU) == [] and s1.counters["updates_out"] == 0
    w.up()
    assert s1.sessions() == [2] and s2.sessions() == [1]
    (r,) = s2.routes(GPU)
    assert (r.origin_as, r.free, r.as_path, r.min_latency_ms) == (1, 4, (1,), 4.0)  # + the 3 ms link
    s1.originate([ProviderCapacity("p", GPU, 8, 0, 10.0, 1.0)])  # capacity runs out: withdrawn at once
    assert s2.routes(GPU) == []
    s1.originate([ProviderCapacity("p", GPU, 8, 2, 10.0, 1.0)])
    s2.adjacency_down(1, "c")
    assert s2.routes(GPU) == [] and s2.sessions() == []
    assert not any(s2.rejected.values()) and not w.closed


def test_updates_before_an_open_malformed_bytes_and_lies_are_refused_and_counted():
    w = Wire()
    s2 = w.speakers[2]
    lie = Message(1, 2, (DomainSummary(3, GPU, 8, 4, 1.0, (3,), 1.0, 5),))  # domain 1 passing 3's route as its own
    s2.domain_message(1, "c", DomainUpdate(encode_update(lie)))
    assert s2.rejected["unauthenticated"] == 1 and s2.routes(GPU) == []
    w.up()
    s2.domain_message(1, "c", DomainUpdate(encode_update(lie)))
    assert s2.status()["rejected"]["router:first-as-mismatch"] == 1
    s2.domain_message(1, "c", DomainUpdate(b"\x09garbage"))
    assert s2.status()["rejected"]["router:malformed"] == 1
    spoof = Message(3, 2, (DomainSummary(3, GPU, 8, 4, 1.0, (3,), 1.0, 5),))  # claims to be 3 on 1's session
    s2.domain_message(1, "c", DomainUpdate(encode_update(spoof)))
    assert s2.status()["rejected"]["router:peer-as-mismatch"] == 1
    assert s2.routes(GPU) == []
    # an OPEN from domain 3's key claiming domain 1 on a new circuit: refused, the circuit closed
    s2.domain_message(1, "c2", open_for(KEYS[3], w.fed, 1, 2, time.time()))
    assert s2.rejected["domain-mismatch"] == 1 and w.closed == [(2, "refused OPEN (domain-mismatch)")]
    assert s2.sessions() == [1]  # the good session is untouched


def test_a_domain_that_is_not_a_neighbour_gets_no_session():
    fed = federation()
    sent: list = []
    s1 = DomainSpeaker(1, fed, key=KEYS[1], send=lambda c, m: sent.append(m), close=lambda c, why: None,
                       is_orchestrator=lambda a: True)
    s1.adjacency_up(3, "c")  # 1 and 3 are not linked in this federation
    assert sent == [] and s1.rejected["not-a-neighbour"] == 1
    s1.domain_message(3, "c", open_for(KEYS[3], fed, 3, 1, time.time()))
    assert s1.sessions() == [] and s1.rejected["not-a-neighbour"] == 2
    assert isinstance(open_for(KEYS[3], fed, 3, 1, time.time()), DomainOpen)
