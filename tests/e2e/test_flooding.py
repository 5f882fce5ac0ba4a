"""Engine peers as real processes on loopback: flooding, SIGKILL, age-out, restart, resynchronisation.

Timers are shrunk (hello 0.25 s, hold 1 s, max age 4 s) so the whole life cycle fits in
seconds; the protocol is the same as with IS-IS's minutes. Every process is started under
``PeerMesh``'s supervisor and stopped in the fixture's teardown, also when a test fails
(and children carry a parent-death signal should pytest itself be killed).
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from marketplace.convergence.checksum import iso_checksum
from marketplace.convergence.lsa import CHECKSUM_REGION_START, OFF_CHECKSUM, encode_lsa
from marketplace.peering.harness import PeerMesh
from marketplace.peering.wire import AdjState, FrameDecoder, Hello, LsaFrame, MessageType, encode_frame
from marketplace.peering.workload import trace_originations

pytestmark = pytest.mark.e2e

CSV = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "openb_node_list_gpu_node.csv"
MAX_AGE = 4
TIMERS = dict(hello_interval=0.25, hold_time=1.0, retransmit_interval=0.5, csnp_interval=2.0, tick_interval=0.2,
              max_age=MAX_AGE, zero_age_lifetime=1, min_arrival_interval=0.2, refresh_interval=1.5,
              backoff_initial=0.05, backoff_max=0.5)
PER_PEER = 3


def _mesh(request: pytest.FixtureRequest, n: int, **kw) -> PeerMesh:
    mesh = PeerMesh(n, timers=TIMERS, **kw)

    def teardown() -> None:
        print(mesh.tails(40))  # shown by pytest only when the test failed
        mesh.close()
        assert all(not spec.child.alive() for spec in mesh.peers.values() if spec.child is not None)

    request.addfinalizer(teardown)
    return mesh


@pytest.fixture
def three(request: pytest.FixtureRequest) -> PeerMesh:
    mesh = _mesh(request, 3)
    for i, spec in mesh.peers.items():
        spec.originate_from = mesh.originate_file(i, trace_originations(CSV, PER_PEER, offset=100 * i))
    mesh.start_all()
    return mesh


def test_flood_kill_age_out_restart_resynchronise(three: PeerMesh):
    mesh, everyone = three, [1, 2, 3]
    mesh.wait_until("initial flooding", lambda: mesh.converged(everyone, 3 * PER_PEER), timeout=10)
    before = mesh.statuses()
    assert before[2]["neighbours_up"] == [1, 3]

    mesh.kill(3)
    # the hold timer notices first (1 s), ageing later (max age 4 s): nobody refreshes 3's LSAs now
    mesh.wait_until("2 drops its adjacency to 3", lambda: mesh.status(2)["neighbours_up"] == [1], timeout=3)
    assert mesh.status(1)["size"] == 3 * PER_PEER  # not forgotten yet: only ageing may remove them
    took = mesh.wait_until("3's LSAs age out on 1 and 2",
                           lambda: mesh.converged([1, 2], 2 * PER_PEER), timeout=MAX_AGE + 6)
    assert took > 1.0  # it was ageing, not an instant removal
    # each survivor's ageing turns them into purges (a purge from either may reach the other first)
    mesh.wait_until("3's LSAs purged", lambda: sum(
        s["counters"].get("purged", 0) for s in mesh.statuses([1, 2]).values()) >= PER_PEER, timeout=2)
    # while 3 is dead, 1's and 2's own LSAs are refreshed and stay
    mesh.wait_until("survivors stay", lambda: mesh.converged([1, 2], 2 * PER_PEER), timeout=1)

    mesh.start(3)  # empty database, sequence numbers from 1 again, same port
    mesh.wait_until("3 resynchronises", lambda: mesh.converged(everyone, 3 * PER_PEER), timeout=10)
    after = mesh.statuses()
    assert after[3]["neighbours_up"] == [2]
    assert after[3]["counters"]["rx_csnp"] >= 1  # synchronised by CSNP, not by waiting for refreshes
    assert all(s["rejected"] == {} for s in after.values())


def test_peers_that_dial_each_other_keep_one_circuit(request: pytest.FixtureRequest):
    mesh = _mesh(request, 3, mutual=True)
    mesh.peers[1].originate_from = mesh.originate_file(1, trace_originations(CSV, 2, offset=500))
    mesh.start_all()
    mesh.wait_until("flooding", lambda: mesh.converged([1, 2, 3], 2), timeout=10)
    mesh.wait_until("one circuit per link", lambda: all(
        len([a for a in s["adjacencies"].values() if a["state"] != "DOWN"]) == len(s["neighbours_up"])
        for s in mesh.statuses().values()), timeout=5)
    time.sleep(1.0)  # past the longest dial backoff (0.5 s): every dialer has connected once
    st = mesh.statuses()
    assert st[2]["neighbours_up"] == [1, 3] and st[1]["neighbours_up"] == [2]
    closed = sum(s["counters"].get("duplicate_circuits", 0) for s in st.values())
    assert closed <= 4  # each of the two links had its duplicate closed (once per side at most)
    time.sleep(1.5)  # longer than the hold time: a dialer that knows it is adjacent does not redial
    later = mesh.statuses()
    assert sum(s["counters"].get("duplicate_circuits", 0) for s in later.values()) == closed
    assert later[2]["neighbours_up"] == [1, 3]


class FakePeer:
    """The test process speaking the wire protocol as node 99, to inject what no honest peer sends."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = FrameDecoder()

    def handshake(self) -> None:
        self.sock.sendall(encode_frame(Hello(99, 5000, AdjState.DOWN)))
        while True:
            for msg in self.decoder.feed(self.sock.recv(65536)):
                if isinstance(msg, Hello) and msg.neighbor_id == 99:
                    self.sock.sendall(encode_frame(Hello(99, 5000, AdjState.UP, neighbor_id=msg.node_id)))
                    return

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_peer(self) -> bool:
        self.sock.settimeout(3)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def _forged(origination) -> bytes:
    raw = bytearray(encode_lsa(origination.content, sequence=1, lifetime=MAX_AGE, key=origination.key))
    raw[-40] ^= 0x55  # corrupt the signature's s, then fix the checksum: only the signature is wrong
    raw[OFF_CHECKSUM:OFF_CHECKSUM + 2] = b"\x00\x00"
    c = iso_checksum(bytes(raw[CHECKSUM_REGION_START:]), OFF_CHECKSUM - CHECKSUM_REGION_START)
    raw[OFF_CHECKSUM:OFF_CHECKSUM + 2] = c.to_bytes(2, "big")
    return bytes(raw)


def test_bad_lsas_are_rejected_with_reasons_and_change_no_database(request: pytest.FixtureRequest):
    mesh = _mesh(request, 2)
    mesh.peers[1].originate_from = mesh.originate_file(1, trace_originations(CSV, 2, offset=700))
    mesh.start_all()
    mesh.wait_until("flooding", lambda: mesh.converged([1, 2], 2), timeout=10)
    digest = mesh.status(1)["digest"]

    fake = FakePeer(mesh.peers[1].port)
    fake.handshake()
    mesh.wait_until("fake peer adjacency", lambda: 99 in mesh.status(1)["neighbours_up"], timeout=5)
    [good, victim] = trace_originations(CSV, 2, offset=800)
    valid = encode_lsa(good.content, sequence=1, lifetime=MAX_AGE, key=good.key)
    bad_checksum = bytearray(valid)
    bad_checksum[-1] ^= 0xFF
    bad = {
        "bad-signature": _forged(victim),
        "bad-checksum": bytes(bad_checksum),
        "oversized": valid + b"\x00" * 1500,
        "bad-lifetime": encode_lsa(victim.content, sequence=1, lifetime=MAX_AGE + 100, key=victim.key),
    }
    for raw in bad.values():
        fake.send(encode_frame(LsaFrame(raw)))
    fake.send(encode_frame(LsaFrame(valid[:40])))  # truncated: fails to decode
    mesh.wait_until("rejections counted", lambda: sum(mesh.status(1)["rejected"].values()) == len(bad) + 1,
                    timeout=5)
    st = mesh.status(1)
    for reason in bad:
        assert st["rejected"].get(reason) == 1, (reason, st["rejected"])
        assert st["lsdb_rejected"].get(reason) == 1
    assert st["digest"] == digest and st["size"] == 2
    assert mesh.status(2)["digest"] == digest  # nothing bad was flooded on

    # the circuit survived every bad LSA: a valid one still goes through and on to peer 2
    fake.send(encode_frame(LsaFrame(valid)))
    mesh.wait_until("the valid LSA floods", lambda: mesh.converged([1, 2], 3), timeout=5)

    # a frame that breaks the framing closes that circuit only
    fake.send(struct.pack("!IB", 1 << 30, MessageType.LSA))
    assert fake.closed_by_peer()
    st = mesh.status(1)
    assert st["counters"]["frame_errors"] == 1 and 99 not in st["neighbours_up"] and st["neighbours_up"] == [2]
