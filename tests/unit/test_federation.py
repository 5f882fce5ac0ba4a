"""The federation document and who speaks for a domain: parsing with named faults, signed OPENs and
handovers checked against the keys the document lists (``marketplace.federation``)."""

from __future__ import annotations

import json
import os
import time

import pytest

from marketplace.federation.config import DEFAULT_TIMERS, Federation, FederationError
from marketplace.federation.session import address_of, check_handover, check_open, open_for, sign_handover
from marketplace.peering.wire import DomainOpen

pytestmark = pytest.mark.unit

KEYS = {d: bytes([d]) * 32 for d in (1, 2, 3)}
MARKET = "0x" + "ab" * 20


def doc() -> dict:
    return {"version": 1, "chain_id": 31337, "market": MARKET,
            "domains": {str(d): {"api": f"http://127.0.0.1:{8000 + d}", "peer": f"127.0.0.1:{7100 + d}",
                                 "orchestrator": address_of(k), "home": str(d)} for d, k in KEYS.items()},
            "links": [[1, 2, 2.5], [3, 2, 1.0]]}


def test_a_document_round_trips_and_names_neighbours(tmp_path):
    fed = Federation.from_dict(doc())
    assert fed.neighbours(2) == {1: 2.5, 3: 1.0} and fed.neighbours(1) == {2: 2.5}
    assert fed.links == ((1, 2, 2.5), (2, 3, 1.0))
    assert fed.timers == DEFAULT_TIMERS and fed.entry(3).peer_port == 7103
    assert Federation.load(fed.save(tmp_path / "f.json")) == fed


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d.update(domains={}), "domains"),
    (lambda d: d["domains"].update({"0": d["domains"]["1"]}), "domains.0"),
    (lambda d: d["domains"]["1"].update(api="ftp://x"), "domains.1.api"),
    (lambda d: d["domains"]["2"].update(peer="nohost"), "domains.2.peer"),
    (lambda d: d["domains"]["2"].update(peer="h:99999"), "domains.2.peer"),
    (lambda d: d["domains"]["3"].update(orchestrator="0x12"), "domains.3.orchestrator"),
    (lambda d: d["links"].append([1, 1, 1.0]), "links[2]"),
    (lambda d: d["links"].append([1, 9, 1.0]), "links[2]"),
    (lambda d: d["links"].append([2, 1, 1.0]), "links[2]"),
    (lambda d: d["links"].append(["a", 2]), "links[2]"),
    (lambda d: d.update(market="nope"), "market"),
    (lambda d: d.update(chain_id=-1), "chain_id"),
    (lambda d: d.update(timers={"hold_time": "1s"}), "timers"),
])
def test_a_bad_document_names_the_field(change, field):
    d = doc()
    change(d)
    with pytest.raises(FederationError) as err:
        Federation.from_dict(d)
    assert err.value.fields["field"] == field


def test_unreadable_files_are_configuration_errors(tmp_path):
    with pytest.raises(FederationError, match="no federation document"):
        Federation.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FederationError, match="not a JSON document"):
        Federation.load(tmp_path / "bad.json")
    with pytest.raises(FederationError):
        Federation.from_dict(doc()).entry(9)
    (tmp_path / "ok.json").write_text(json.dumps(doc()))
    assert Federation.load(tmp_path / "ok.json").entry(1).home == "1"


def test_an_open_is_good_only_from_the_domains_own_key_for_this_receiver_and_market():
    fed = Federation.from_dict(doc())
    now = time.time()
    yes = lambda a: True  # noqa: E731
    good = open_for(KEYS[1], fed, 1, 2, now)
    assert check_open(good, fed=fed, heard=1, me=2, now=now, is_orchestrator=yes) is None
    assert check_open(good, fed=fed, heard=3, me=2, now=now, is_orchestrator=yes) == "peer-domain-mismatch"
    assert check_open(good, fed=fed, heard=1, me=3, now=now, is_orchestrator=yes) == "wrong-receiver"
    assert check_open(good, fed=fed, heard=1, me=2, now=now + 61, is_orchestrator=yes) == "stale"
    assert check_open(good, fed=fed, heard=1, me=2, now=now, is_orchestrator=lambda a: False) == "not-an-orchestrator"
    liar = open_for(KEYS[3], fed, 1, 2, now)  # domain 3's engine claims domain 1
    assert check_open(liar, fed=fed, heard=1, me=2, now=now, is_orchestrator=yes) == "domain-mismatch"
    stranger = open_for(os.urandom(32), fed, 1, 2, now)
    assert check_open(stranger, fed=fed, heard=1, me=2, now=now, is_orchestrator=yes) == "domain-mismatch"
    # the fields are covered: another receiver or time breaks the signature
    moved = DomainOpen(good.domain, good.receiver, good.timestamp + 1, good.address, good.signature)
    assert check_open(moved, fed=fed, heard=1, me=2, now=now, is_orchestrator=yes) == "bad-signature"
    garbage = DomainOpen(1, 2, int(now), good.address, b"\x01" * 65)
    assert check_open(garbage, fed=fed, heard=1, me=2, now=now, is_orchestrator=yes) == "bad-signature"
    # another market's document: the same key's OPEN does not verify for it
    other = Federation.from_dict({**doc(), "market": "0x" + "cd" * 20})
    assert check_open(good, fed=other, heard=1, me=2, now=now, is_orchestrator=yes) == "bad-signature"


def test_a_handover_is_good_only_as_signed_by_the_sending_domain():
    fed = Federation.from_dict(doc())
    now = time.time()
    digest = b"\x07" * 32
    signed = sign_handover(KEYS[1], fed, order=5, spec_digest=digest, sender=1, receiver=3, now=now)
    sig = bytes.fromhex(signed["signature"][2:])
    base = dict(fed=fed, order=5, spec_digest=digest, sender=1, receiver=3, timestamp=signed["timestamp"],
                signature=sig, me=3, now=now, is_orchestrator=lambda a: True)
    assert check_handover(**base) is None
    assert check_handover(**{**base, "me": 2}) == "wrong-receiver"
    assert check_handover(**{**base, "now": now + 600}) == "stale"
    assert check_handover(**{**base, "order": 6}) == "domain-mismatch"  # recovers to some other key
    assert check_handover(**{**base, "spec_digest": b"\x08" * 32}) == "domain-mismatch"
    assert check_handover(**{**base, "sender": 2}) == "domain-mismatch"  # claims domain 2 with domain 1's key
    assert check_handover(**{**base, "signature": b"\x00" * 10}) == "bad-signature"
    assert check_handover(**{**base, "is_orchestrator": lambda a: False}) == "not-an-orchestrator"
