"""Signed heartbeats and the failure detector built on them."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from marketplace.convergence.heartbeat import Heartbeat, HeartbeatMonitor, sign, signer_of
from marketplace.errors import DecodeError, Rejected

pytestmark = pytest.mark.unit

KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")  # dev account 1
OTHER = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")  # dev account 2
ADDRESS = Account.from_key(KEY).address


def test_signature_is_standard_personal_sign():
    hb = sign(KEY, sequence=7, timestamp=1_700_000_000, leases=[3, 1])
    assert hb.provider == ADDRESS and hb.leases == (1, 3)
    # any wallet library recovers the same signer from the readable message
    assert Account.recover_message(encode_defunct(hb.message()), signature=hb.signature) == ADDRESS
    assert signer_of(hb) == ADDRESS
    assert b"leases: 1,3" in hb.message()


def test_round_trip_through_json():
    hb = sign(KEY, sequence=1, timestamp=5, leases=[9])
    assert Heartbeat.from_dict(hb.to_dict()) == hb


@pytest.mark.parametrize("patch, field", [
    ({"provider": "nope"}, "provider"),
    ({"sequence": -1}, "sequence"),
    ({"sequence": True}, "sequence"),
    ({"timestamp": "5"}, "timestamp"),
    ({"leases": [1, "x"]}, "leases"),
    ({"signature": "0xzz"}, "signature"),
    ({"signature": "0x" + "00" * 64}, "signature"),
])
def test_malformed_fields_are_named(patch, field):
    raw = {**sign(KEY, sequence=1, timestamp=5).to_dict(), **patch}
    with pytest.raises(DecodeError) as info:
        Heartbeat.from_dict(raw)
    assert info.value.fields["field"] == field


def test_monitor_rejects_forgery_replay_and_skew():
    mon = HeartbeatMonitor(interval=1.0, miss_limit=3)
    mon.observe(sign(KEY, sequence=1, timestamp=100), now=100.0)
    forged = Heartbeat(ADDRESS, 2, 100, (), sign(OTHER, sequence=2, timestamp=100).signature)
    with pytest.raises(Rejected) as info:
        mon.observe(forged, now=100.5)
    assert info.value.reason == "bad-signature"
    with pytest.raises(Rejected) as info:
        mon.observe(sign(KEY, sequence=1, timestamp=101), now=101.0)
    assert info.value.reason == "stale-sequence"
    with pytest.raises(Rejected) as info:
        mon.observe(sign(KEY, sequence=2, timestamp=500), now=101.0)
    assert info.value.reason == "clock-skew"
    assert mon.last_seen(ADDRESS) == 100.0  # nothing rejected moved the clock


def test_failure_declared_once_after_the_bound_and_revived_by_a_heartbeat():
    mon = HeartbeatMonitor(interval=1.0, miss_limit=3)
    mon.observe(sign(KEY, sequence=1, timestamp=100), now=100.0)
    assert mon.failed(102.9) == []
    assert mon.failed(103.1) == [ADDRESS]
    assert mon.failed(110.0) == []  # reported once
    mon.observe(sign(KEY, sequence=2, timestamp=111), now=111.0)
    assert mon.failed(113.0) == []
    assert mon.failed(114.5) == [ADDRESS]


def test_watch_starts_the_clock_for_a_silent_provider():
    mon = HeartbeatMonitor(interval=0.5, miss_limit=2)
    mon.watch(ADDRESS, now=10.0)
    assert mon.failed(10.9) == []
    assert mon.failed(11.1) == [ADDRESS]
