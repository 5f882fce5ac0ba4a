"""LSDB install rules, ageing, purges, MinLSArrival, rejection counters, PSNP/CSNP helpers and
the originator's refresh and sequence wrap, all on an injected clock."""

from __future__ import annotations

import struct

import pytest

from bench.lsa import content_for, profiles
from marketplace.convergence import errors as E
from marketplace.convergence.lsa import (
    MAX_SEQUENCE,
    OFF_CHECKSUM,
    address_of,
    checksum_of,
    decode_header,
    encode_lsa,
    purge,
    with_lifetime,
)
from marketplace.convergence.lsdb import Lsdb, Originator, Outcome

pytestmark = pytest.mark.unit

KEY_A = bytes.fromhex("11" * 32)
KEY_B = bytes.fromhex("22" * 32)
A = address_of(KEY_A)
B = address_of(KEY_B)
H100 = profiles()["h100x8"]


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def lsa(seq: int, key: bytes = KEY_A, lifetime: int = 1200, refresh: int = 0) -> bytes:
    return encode_lsa(content_for(H100, 1, refresh), sequence=seq, lifetime=lifetime, key=key)


def snapshot(db: Lsdb):
    return db.headers(), db.digest(), [db.raw(h.key) for h in db.headers()]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db(clock):
    return Lsdb(clock)


def test_first_install_then_duplicate(db):
    r = db.install(lsa(1))
    assert (r.outcome, r.flood, r.ack) == (Outcome.INSTALLED, True, True)
    assert db.get((1, A)) == r.lsa and len(db) == 1 and list(db) == [r.lsa]
    again = db.install(lsa(1))
    assert (again.outcome, again.flood, again.ack) == (Outcome.DUPLICATE, False, True)
    # the same instance, aged on another path, is still a duplicate
    assert db.install(with_lifetime(lsa(1), 700)).outcome is Outcome.DUPLICATE


def test_newer_sequence_wins_and_older_is_counted(db, clock):
    db.install(lsa(1))
    clock.t += 5
    r = db.install(lsa(2, refresh=1))
    assert r.outcome is Outcome.INSTALLED and db.get((1, A)).header.sequence == 2
    before = snapshot(db)
    old = db.install(lsa(1))
    assert (old.outcome, old.reason, old.flood, old.ack) == (Outcome.OLDER, "stale-sequence", False, False)
    assert old.lsa.header.sequence == 2  # our newer copy, to send back
    assert db.rejected["stale-sequence"] == 1 and snapshot(db) == before


def test_equal_sequence_tie_broken_by_checksum(db, clock):
    x, y = lsa(4, refresh=0), lsa(4, refresh=1)  # same sequence, different content
    lo, hi = sorted((x, y), key=lambda raw: decode_header(raw).checksum)
    db.install(hi)
    clock.t += 5
    assert db.install(lo).outcome is Outcome.OLDER
    db2 = Lsdb(clock)
    db2.install(lo)
    clock.t += 5
    assert db2.install(hi).outcome is Outcome.INSTALLED and db2.get((1, A)).raw == hi


def test_purge_wins_a_tie_and_is_kept_then_removed(db, clock):
    db.install(lsa(3))
    clock.t += 5
    r = db.install(purge(lsa(3)))
    assert (r.outcome, r.flood) == (Outcome.INSTALLED, True)
    assert db.get((1, A)) is None and len(db) == 0  # not live...
    assert db.headers()[0].lifetime == 0 and decode_header(db.raw((1, A))).lifetime == 0  # ...but flooded
    # the live copy arriving late from another neighbour is older than the purge
    assert db.install(lsa(3)).outcome is Outcome.OLDER
    clock.t += 59
    assert db.tick() == [] and (1, A) in db
    clock.t += 1
    db.tick()
    assert (1, A) not in db and db.headers() == []
    with pytest.raises(E.UnknownLsa):
        db.raw((1, A))


def test_purge_of_an_unknown_lsa_is_acked_not_stored(db):
    r = db.install(purge(lsa(3)))
    assert (r.outcome, r.reason, r.flood, r.ack) == (Outcome.DUPLICATE, "purge-of-unknown", False, True)
    assert db.headers() == []


def test_lifetime_ages_out_into_a_purge(db, clock):
    db.install(lsa(1, lifetime=100))
    clock.t += 40.5
    assert db.headers()[0].lifetime == 60 and decode_header(db.raw((1, A))).lifetime == 60
    assert db.tick() == []
    clock.t += 60
    flooded = db.tick()
    assert len(flooded) == 1 and decode_header(flooded[0]).lifetime == 0 and flooded[0][2:] == lsa(1)[2:]
    assert db.get((1, A)) is None and db.tick() == []  # flooded once
    clock.t += 60
    db.tick()
    assert len(db.headers()) == 0


def test_min_arrival_interval_drops_fast_updates(db, clock):
    db.install(lsa(1))
    clock.t += 0.5
    before = snapshot(db)
    r = db.install(lsa(2, refresh=1))
    assert (r.outcome, r.flood, r.ack) == (Outcome.TOO_SOON, False, False) and snapshot(db) == before
    clock.t += 0.5
    assert db.install(lsa(2, refresh=1)).outcome is Outcome.INSTALLED


@pytest.mark.parametrize("reason", ["malformed", "oversized", "bad-checksum", "bad-signature",
                                    "unknown-originator", "bad-lifetime", "wrong-type"])
def test_every_rejection_is_counted_and_leaves_the_db_alone(clock, reason):
    db = Lsdb(clock, known_originators=lambda who: who == A, max_size=1000)
    db.install(lsa(1))
    db.install(lsa(1, key=KEY_B))  # unknown: not stored
    clock.t += 10
    before = snapshot(db)
    good = bytearray(lsa(2, refresh=1))
    if reason == "malformed":
        bad = bytes(good[:-1])
    elif reason == "oversized":
        bad = bytes(good) + bytes(600)
    elif reason == "bad-checksum":
        good[40] ^= 0xFF
        bad = bytes(good)
    elif reason == "bad-signature":
        good[-40] ^= 0xFF  # inside s
        struct.pack_into("!H", good, OFF_CHECKSUM, checksum_of(good))
        bad = bytes(good)
    elif reason == "unknown-originator":
        bad = lsa(2, key=KEY_B)
    elif reason == "bad-lifetime":
        bad = lsa(2, lifetime=4000)
    else:
        good[2] = 7
        struct.pack_into("!H", good, OFF_CHECKSUM, checksum_of(good))
        bad = bytes(good)
    r = db.install(bad)
    assert (r.outcome, r.reason, r.flood, r.ack) == (Outcome.REJECTED, reason, False, False)
    assert db.rejected[reason] == (2 if reason == "unknown-originator" else 1)
    assert snapshot(db) == before and db.get((1, A)).header.sequence == 1


def test_forged_duplicate_with_same_sequence_and_checksum_is_rejected(db, clock):
    good = lsa(5)
    db.install(good)
    # change two body bytes so that both Fletcher sums stay the same: +1 at i, -2 at i+1, +1 at i+2
    forged = bytearray(good)
    i = forged.index(b"h100-node") + 1
    forged[i] += 1
    forged[i + 1] -= 2
    forged[i + 2] += 1
    assert checksum_of(forged) == decode_header(good).checksum
    r = db.install(bytes(forged))
    assert (r.outcome, r.reason) == (Outcome.REJECTED, "bad-signature")
    assert db.get((1, A)).raw == good


def test_csnp_and_psnp_helpers(clock):
    x, y = Lsdb(clock), Lsdb(clock)
    x.install(lsa(1))
    x.install(lsa(1, key=KEY_B))
    y.install(lsa(1))
    clock.t += 5
    y.install(lsa(2, refresh=1))
    want = x.missing_or_older(y.headers())  # y holds A at seq 2
    assert [(h.originator, h.sequence) for h in want] == [(A, 2)]
    send = x.newer_than(y.headers())  # y lacks B
    assert [(h.originator, h.sequence) for h in send] == [(B, 1)]
    for h in send:
        y.install(x.raw(h.key))
    for h in want:
        x.install(y.raw(h.key))
    assert x.digest() == y.digest() and x.missing_or_older(y.headers()) == [] == x.newer_than(y.headers())
    assert x.digest() != Lsdb(clock).digest()


def test_digest_ignores_age_but_not_content(clock):
    x, y = Lsdb(clock), Lsdb(clock)
    x.install(lsa(1))
    y.install(with_lifetime(lsa(1), 300))
    assert x.digest() == y.digest()
    clock.t += 5
    y.install(lsa(2, refresh=1))
    assert x.digest() != y.digest()


# ---------------------------------------------------------------- originator


def test_originator_numbers_refreshes_and_installs(clock):
    me = Originator(KEY_A, clock, max_age=1200)
    db = Lsdb(clock, max_age=1200)
    assert me.refresh_due()
    first = me.next(content_for(H100, 1, 0))
    assert db.install(first).outcome is Outcome.INSTALLED and me.address == A
    assert not me.refresh_due()
    clock.t += 899
    assert not me.refresh_due()
    clock.t += 1
    assert me.refresh_due()
    second = me.next(content_for(H100, 1, 1))
    assert decode_header(second).sequence == 2 and db.install(second).outcome is Outcome.INSTALLED
    clock.t += 1199
    assert db.tick() == []  # refreshed before expiry: never purged
    assert db.get((1, A)).raw == second


def test_originator_jumps_past_its_own_stale_sequence(clock):
    me = Originator(KEY_A, clock)
    me.next(content_for(H100, 1, 0))
    assert not me.observe(decode_header(lsa(1)))
    assert me.observe(decode_header(lsa(40)))
    assert decode_header(me.next(content_for(H100, 1, 0))).sequence == 41


def test_sequence_wrap_purges_waits_and_restarts_at_one(clock):
    me = Originator(KEY_A, clock, max_age=1200, zero_age_lifetime=60, sequence=MAX_SEQUENCE - 1)
    db = Lsdb(clock, max_age=1200)
    top = me.next(content_for(H100, 1, 0))
    assert decode_header(top).sequence == MAX_SEQUENCE and db.install(top).outcome is Outcome.INSTALLED
    clock.t += 10
    p = me.next(content_for(H100, 1, 1))
    assert decode_header(p).lifetime == 0 and decode_header(p).sequence == MAX_SEQUENCE
    assert db.install(p).outcome is Outcome.INSTALLED and db.get((1, A)) is None
    clock.t += 100
    with pytest.raises(E.SequenceWrapPending) as info:
        me.next(content_for(H100, 1, 1))
    assert info.value.retry_at == 1010 + 1260 and not me.refresh_due()
    clock.t += 1160
    db.tick()
    assert (1, A) not in db  # every copy has aged out of the network
    assert me.refresh_due()
    restart = me.next(content_for(H100, 1, 2))
    assert decode_header(restart).sequence == 1
    assert db.install(restart).outcome is Outcome.INSTALLED
