"""The engine's files (``marketplace.engine.store``) and its Idempotency-Key table: written whole,
read back only when they are what they claim to be, a reused key refused."""

from __future__ import annotations

import json

import pytest

from marketplace.engine.errors import IdempotencyConflict
from marketplace.engine.orders import IdempotencyStore, Status
from marketplace.engine.spec import Spec
from marketplace.engine.store import EngineStore, atomic_write

SPEC = {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 600},
        "workload": {"module": "sha256", "input": "6869", "fuel": 10**6}, "attachment": "1"}


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "doc.json"
    atomic_write(path, "x" * 10_000)
    atomic_write(path, b"short")
    assert path.read_bytes() == b"short"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_a_spec_is_kept_under_its_digest_and_a_tampered_copy_is_not_trusted(tmp_path):
    store = EngineStore(tmp_path)
    spec = Spec.from_dict(SPEC)
    d = store.put_spec(spec)
    assert d == spec.digest() and store.load_spec(d) == spec
    # another document under that name (edited on disk): it does not hash to the name, so it is not the spec
    other = dict(SPEC, attachment="2")
    store.spec_path(d).write_text(json.dumps(other))
    assert store.load_spec(d) is None
    assert store.load_spec(b"\x01" * 32) is None  # never stored


def test_results_and_the_lsdb_copy_round_trip(tmp_path):
    store = EngineStore(tmp_path)
    assert store.result(7) is None
    store.put_result(7, b"\x00\x01")
    assert store.result(7) == b"\x00\x01"
    store.put_lsa("0xAbC", b"\x02\x03", 12.5)
    (kept,) = store.stored_lsas()
    assert json.loads(kept.read_text()) == {"raw": "0203", "arrived": 12.5}
    store.drop_lsa("0xAbC")
    assert list(store.stored_lsas()) == []


A, B = "0x" + "aa" * 20, "0x" + "bb" * 20


def test_an_idempotency_key_returns_its_order_survives_a_restart_and_refuses_another_request(tmp_path):
    keys = IdempotencyStore(EngineStore(tmp_path))
    assert keys.prior(A, "k1", "aa") is None
    keys.put(A, "k1", "aa", 42)
    again = IdempotencyStore(EngineStore(tmp_path))  # a restarted engine reads the same table
    assert again.prior(A, "k1", "aa") == 42
    with pytest.raises(IdempotencyConflict) as info:
        again.prior(A, "k1", "bb")
    assert info.value.fields["field"] == "Idempotency-Key" and info.value.fields["reason"] == "idempotency-key-reused"


def test_idempotency_keys_are_scoped_to_the_buyer_and_a_torn_line_is_skipped(tmp_path):
    store = EngineStore(tmp_path)
    keys = IdempotencyStore(store)
    keys.put(A, "k1", "aa", 42)
    assert keys.prior(B, "k1", "bb") is None  # B's "k1" is not A's: B cannot squat or probe it
    keys.put(B, "k1", "bb", 43)
    with store.idempotency_path.open("a") as fh:
        fh.write('{"buyer": "0x' + "cc" * 20 + '", "key": "k')  # a crash cut the last line
    again = IdempotencyStore(EngineStore(tmp_path))
    assert (again.prior(A, "k1", "aa"), again.prior(B, "k1", "bb")) == (42, 43)
    assert len(again.table) == 2


def test_the_status_values_are_the_wire_strings():
    assert [s.value for s in Status] == ["awaiting-spec", "queued", "pending", "refused", "assigned", "running",
                                         "completed", "ended"]
    assert json.dumps({"status": Status.AWAITING_SPEC}) == '{"status": "awaiting-spec"}'
