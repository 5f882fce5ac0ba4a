"""Reliable flooding (SRM/SSN) between in-memory peers over the real LSDB, with a manual clock.

Messages go through the real frame codec but no sockets: each round, every peer's ``poll``
output is encoded, optionally dropped, decoded and handed to the neighbour's ``receive``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.convergence.lsa import LsaHeader, encode_lsa, newer
from marketplace.convergence.lsdb import Lsdb
from marketplace.peering.db import LsdbView
from marketplace.peering.flooding import Flooder, compare
from marketplace.peering.wire import FrameDecoder, LsaFrame, Psnp, SnpEntry, encode_frame
from marketplace.peering.workload import trace_originations

pytestmark = pytest.mark.unit

CSV = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "openb_node_list_gpu_node.csv"
MAX_AGE = 60


class Net:
    def __init__(self, names: list[str], *, retransmit: float = 2.0, csnp: float = 30.0) -> None:
        self.now = 0.0
        self.peers: dict[str, Flooder] = {}
        for i, name in enumerate(names, start=1):
            lsdb = Lsdb(lambda: self.now, max_age=MAX_AGE, zero_age_lifetime=5, min_arrival_interval=0.0)
            self.peers[name] = Flooder(LsdbView(lsdb), lsdb, i, retransmit_interval=retransmit, csnp_interval=csnp)
        self.drop = lambda src, dst, msg: False
        self.sent: list[tuple[str, str, object]] = []

    def link(self, a: str, b: str) -> None:
        # circuit names are the neighbour's name, from each side
        self.peers[a].adjacency_up(b, self.peers[b].node_id, self.now)
        self.peers[b].adjacency_up(a, self.peers[a].node_id, self.now)

    def unlink(self, a: str, b: str) -> None:
        self.peers[a].adjacency_down(b)
        self.peers[b].adjacency_down(a)

    def round(self) -> int:
        moved = 0
        for src, flooder in self.peers.items():
            for dst, msg in flooder.poll(self.now):
                self.sent.append((src, dst, msg))
                if self.drop(src, dst, msg):
                    continue
                [decoded] = FrameDecoder().feed(encode_frame(msg))
                self.peers[dst].receive(src, decoded, self.now)
                moved += 1
        return moved

    def settle(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            if not self.round():
                return
        raise AssertionError("flooding did not settle")

    def digests(self) -> set[bytes]:
        return {f.lsdb.digest() for f in self.peers.values()}


@pytest.fixture(scope="module")
def lsas() -> list[bytes]:
    return [encode_lsa(o.content, sequence=1, lifetime=MAX_AGE, key=o.key)
            for o in trace_originations(CSV, 6, seed=7)]


@pytest.fixture(scope="module")
def origins():
    return trace_originations(CSV, 6, seed=7)


def test_an_lsa_originated_at_one_end_of_a_line_reaches_the_other(lsas):
    net = Net(["a", "b", "c", "d"])
    for x, y in (("a", "b"), ("b", "c"), ("c", "d")):
        net.link(x, y)
    net.settle()
    for raw in lsas:
        assert net.peers["a"].originate(raw).outcome.name == "INSTALLED"
    net.settle()
    assert len(net.digests()) == 1 and all(len(f.lsdb) == len(lsas) for f in net.peers.values())
    assert all(f.pending() == 0 for f in net.peers.values())  # every copy acknowledged
    # an LSA never goes back to the neighbour it came from
    lsa_hops = [(s, d) for s, d, m in net.sent if isinstance(m, LsaFrame)]
    assert lsa_hops.count(("a", "b")) == len(lsas) and ("b", "a") not in lsa_hops


def test_a_lost_lsa_is_retransmitted_until_acknowledged(lsas):
    net = Net(["a", "b"], retransmit=2.0)
    net.link("a", "b")
    net.settle()
    lost = []
    net.drop = lambda s, d, m: isinstance(m, LsaFrame) and not lost and not lost.append(m)
    net.peers["a"].originate(lsas[0])
    net.settle()
    assert len(net.peers["b"].lsdb) == 0 and net.peers["a"].pending() == 1
    net.now += 1.9
    net.settle()
    assert len(net.peers["b"].lsdb) == 0  # not yet: the interval has not passed
    net.now += 0.2
    net.settle()
    assert len(net.peers["b"].lsdb) == 1 and net.peers["a"].pending() == 0
    assert net.peers["a"].counters["retransmitted"] == 1


def test_a_lost_ack_makes_a_duplicate_that_is_acknowledged_again(lsas):
    net = Net(["a", "b"])
    net.link("a", "b")
    net.settle()
    drops = []
    net.drop = lambda s, d, m: isinstance(m, Psnp) and not drops and not drops.append(m)
    net.peers["a"].originate(lsas[0])
    net.settle()
    assert net.peers["a"].pending() == 1
    net.now += 2.5
    net.settle()
    assert net.peers["a"].pending() == 0 and net.peers["b"].counters["lsa_duplicate"] == 1


def test_adjacency_up_synchronises_both_databases_by_csnp_and_psnp(lsas, origins):
    net = Net(["a", "b"])
    for raw in lsas[:3]:
        net.peers["a"].originate(raw)
    for raw in lsas[3:]:
        net.peers["b"].originate(raw)
    # b also holds an older instance of an LSA of which a holds a newer one
    o = origins[0]
    net.peers["b"].originate(encode_lsa(o.content, sequence=1, lifetime=MAX_AGE, key=o.key))
    net.peers["a"].lsdb.install(encode_lsa(o.content, sequence=5, lifetime=MAX_AGE, key=o.key))
    net.link("a", "b")
    net.settle()
    assert len(net.digests()) == 1 and len(net.peers["b"].lsdb) == 6
    assert net.peers["b"].db.summary((1, o.originator)).sequence == 5
    kinds = {type(m).__name__ for _, _, m in net.sent}
    assert {"Csnp", "Psnp", "LsaFrame"} <= kinds


def test_a_rejected_lsa_changes_nothing_is_counted_and_not_acknowledged(lsas):
    net = Net(["a", "b", "c"])
    net.link("a", "b")
    net.link("b", "c")
    net.peers["a"].originate(lsas[0])
    net.settle()
    before = net.peers["b"].lsdb.digest()
    tampered = bytearray(lsas[1])
    tampered[-10] ^= 0x01  # one bit in the signature: the checksum no longer holds
    bad_inputs = [bytes(tampered), b"\x00" * 10, lsas[1][:-1], b"\xff" * 2000]
    for raw in bad_inputs:
        result = net.peers["b"].receive("a", LsaFrame(raw), net.now)
        assert result.outcome.name == "REJECTED" and result.reason
    assert net.peers["b"].lsdb.digest() == before and len(net.peers["b"].lsdb) == 1
    assert sum(net.peers["b"].rejected.values()) == len(bad_inputs)
    assert net.round() == 0  # no ack to a, no flood to c


def test_an_lsa_with_a_forged_signature_is_rejected_for_its_signature(origins):
    from marketplace.convergence.checksum import iso_checksum
    from marketplace.convergence.lsa import CHECKSUM_REGION_START, OFF_CHECKSUM

    o = origins[0]
    raw = bytearray(encode_lsa(o.content, sequence=1, lifetime=MAX_AGE, key=o.key))
    raw[-40] ^= 0x55  # corrupt s, then make the checksum right again so only the signature is wrong
    raw[OFF_CHECKSUM:OFF_CHECKSUM + 2] = b"\x00\x00"
    c = iso_checksum(bytes(raw[CHECKSUM_REGION_START:]), OFF_CHECKSUM - CHECKSUM_REGION_START)
    raw[OFF_CHECKSUM:OFF_CHECKSUM + 2] = c.to_bytes(2, "big")
    net = Net(["a", "b"])
    net.link("a", "b")
    result = net.peers["b"].receive("a", LsaFrame(bytes(raw)), 0.0)
    assert result.outcome.name == "REJECTED" and result.reason == "bad-signature"
    assert net.peers["b"].rejected["bad-signature"] == 1 and len(net.peers["b"].lsdb) == 0


def test_an_expired_lsa_is_purged_everywhere_then_removed(lsas):
    net = Net(["a", "b", "c"])
    net.link("a", "b")
    net.link("b", "c")
    net.peers["a"].originate(lsas[0])
    net.settle()
    net.now += MAX_AGE
    for f in net.peers.values():
        f.age()
    net.settle()
    assert all(len(f.lsdb) == 0 for f in net.peers.values())
    assert all(f.db.summary(f.db.key_of(lsas[0])).lifetime == 0 for f in net.peers.values())
    net.now += 5
    for f in net.peers.values():
        f.age()
    assert all(f.db.summaries() == [] for f in net.peers.values())


def test_a_newer_instance_overtakes_the_old_one_everywhere(origins):
    net = Net(["a", "b", "c"])
    net.link("a", "b")
    net.link("b", "c")
    o = origins[2]
    net.peers["a"].originate(encode_lsa(o.content, sequence=1, lifetime=MAX_AGE, key=o.key))
    net.settle()
    net.peers["c"].originate(encode_lsa(o.content, sequence=2, lifetime=MAX_AGE, key=o.key))
    net.settle()
    assert {f.db.summary((1, o.originator)).sequence for f in net.peers.values()} == {2}


def test_an_older_copy_from_a_neighbour_is_answered_with_ours(origins):
    net = Net(["a", "b"])
    net.link("a", "b")
    o = origins[3]
    net.peers["a"].originate(encode_lsa(o.content, sequence=4, lifetime=MAX_AGE, key=o.key))
    net.settle()
    old = encode_lsa(o.content, sequence=3, lifetime=MAX_AGE, key=o.key)
    assert net.peers["b"].receive("a", LsaFrame(old), net.now).outcome.name == "OLDER"
    out = net.peers["b"].poll(net.now)
    assert any(isinstance(m, LsaFrame) and m.raw[24:28] == (4).to_bytes(4, "big") for _, m in out)


def test_a_request_for_an_unknown_lsa_sets_nothing_and_a_request_for_a_known_one_sends_it(lsas):
    net = Net(["a", "b"])
    net.link("a", "b")
    net.settle()
    net.peers["a"].originate(lsas[0])
    key = net.peers["a"].db.key_of(lsas[0])
    net.peers["a"].neighbours["b"].srm.clear()
    net.peers["a"].receive("b", Psnp((SnpEntry.request(key), SnpEntry.request((1, b"\x09" * 20)))), 0.0)
    out = net.peers["a"].poll(0.0)
    assert [type(m).__name__ for _, m in out] == ["LsaFrame"]


def test_messages_from_a_neighbour_that_is_not_up_are_ignored(lsas):
    net = Net(["a", "b"])
    assert net.peers["a"].receive("b", LsaFrame(lsas[0]), 0.0) is None
    assert len(net.peers["a"].lsdb) == 0 and net.peers["a"].counters["ignored_not_up"] == 1


headers = st.builds(LsaHeader, st.just(1), st.just(b"\x01" * 20), st.integers(1, 5), st.sampled_from([0, 1, 60]),
                    st.integers(1, 3), st.just(100))


@given(headers, headers)
def test_compare_orders_instances_exactly_as_the_lsdb_does(a, b):
    ea = SnpEntry(a.lsa_type, a.originator, a.sequence, a.lifetime, a.checksum)
    eb = SnpEntry(b.lsa_type, b.originator, b.sequence, b.lifetime, b.checksum)
    assert compare(ea, eb) == newer(a, b)
