"""The agent's lease journal: durable steps, torn-line recovery, content-addressed results,
and the daemon's pure helpers (usage calibration, result bytes, spec checks)."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from marketplace.chain.market import Order, OrderState
from marketplace.engine.spec import Spec
from provider_agent.daemon import FUEL_PER_UNIT_SECOND, SpecError, check_spec, result_bytes, usage_for
from provider_agent.journal import Journal, JournalError
from provider_agent.runtime.wasm import Limits, WasmRuntime
from provider_agent.workloads import load_workload

pytestmark = pytest.mark.unit

ZERO = "0x" + "00" * 20


def test_steps_survive_a_reopen_and_first_record_wins(tmp_path):
    j = Journal(tmp_path)
    j.record(7, "seen", block=3)
    j.record(7, "accepted", tx="0xaa")
    j.record(7, "accepted", tx="0xbb")  # a second accept record is a no-op
    j.set_meta("next_block", 12)
    j.close()
    again = Journal(tmp_path)
    lease = again.lease(7)
    assert lease.last == "accepted" and lease.data("accepted") == {"tx": "0xaa"}
    assert again.meta("next_block") == 12
    assert [x.order for x in again.open_leases()] == [7]
    again.record(7, "settled", paid="5")
    assert again.open_leases() == [] and again.lease(7).finished
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 4  # seen, accepted, meta, settled: the duplicate wrote nothing


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_fresh(tmp_path):
    j = Journal(tmp_path)
    j.record(1, "seen")
    j.close()
    with (tmp_path / "journal.jsonl").open("a") as fh:
        fh.write('{"order":1,"step":"accep')  # the crash cut this line
    j2 = Journal(tmp_path)
    assert j2.lease(1).last == "seen"
    j2.record(1, "accepted", tx="0x1")
    j2.close()
    j3 = Journal(tmp_path)
    assert j3.lease(1).last == "accepted"


def test_corruption_before_the_last_line_is_an_error(tmp_path):
    (tmp_path / "journal.jsonl").write_text('garbage\n{"order":1,"step":"seen","data":{}}\n')
    with pytest.raises(JournalError, match="line 1 is corrupt"):
        Journal(tmp_path)


def test_unknown_step_refused(tmp_path):
    with pytest.raises(JournalError, match="unknown lease step"):
        Journal(tmp_path).record(1, "paid")


def test_results_are_content_addressed_and_checked(tmp_path):
    j = Journal(tmp_path)
    digest = j.put_result(b"ok\x00\x00\x00\x00\x00hello")
    assert digest == "0x" + keccak(b"ok\x00\x00\x00\x00\x00hello").hex()
    assert j.result(digest) == b"ok\x00\x00\x00\x00\x00hello"
    (tmp_path / "results" / digest[2:]).write_bytes(b"tampered")
    with pytest.raises(JournalError, match="does not hash"):
        j.result(digest)
    with pytest.raises(JournalError, match="missing"):
        j.result("0x" + "11" * 32)


def test_usage_calibration():
    assert usage_for(1, units=1, remaining_seconds=3600) == 1  # at least one unit-second
    assert usage_for(FUEL_PER_UNIT_SECOND, 1, 3600) == 1
    assert usage_for(FUEL_PER_UNIT_SECOND + 1, 1, 3600) == 2  # rounded up
    assert usage_for(10**15, units=2, remaining_seconds=60) == 120  # capped at units x remaining


def test_result_bytes_hash_to_the_committed_result_and_out_of_fuel_is_a_result():
    rt = WasmRuntime()
    module = load_workload("sha256")
    ok = rt.run(module, b"abc")
    blob = result_bytes(ok)
    assert keccak(blob) == ok.result_hash and blob.startswith(b"ok\x00")
    assert b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" in blob  # FIPS 180-2 "abc"
    starved = rt.run(module, b"abc" * 1000, Limits(fuel=10_000))
    assert starved.status == "out_of_fuel" and starved.fuel_used == 10_000
    assert keccak(result_bytes(starved)) == starved.result_hash
    assert usage_for(starved.fuel_used, 1, 60) == 1


def _order(requirement: bytes) -> Order:
    return Order(5, ZERO, 1, 0, OrderState.ASSIGNED, 1, 0, ZERO, 60, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0,
                 requirement, b"\x00" * 32, b"\x00" * 32, ())


def test_spec_is_checked_against_the_on_chain_digest():
    spec = {"requirement": {"device_class": "cpu", "count": 1}, "attachment": "n1",
            "workload": {"module": "sha256", "input": b"abc".hex(), "fuel": 10**8}}
    good = Spec.from_dict(spec).digest()
    checked = check_spec(spec, _order(good))
    assert (checked.module, checked.input, checked.fuel) == ("sha256", b"abc", 10**8)
    with pytest.raises(SpecError, match="not the order's requirement"):
        check_spec(spec, _order(keccak(b"other")))
    unknown = {**spec, "workload": {"module": "bitcoin-miner", "input": "", "fuel": 1}}
    with pytest.raises(SpecError, match="unknown workload module"):
        check_spec(unknown, _order(good))
