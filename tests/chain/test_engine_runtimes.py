"""The engine matches orders only to providers that run their workload (the LSA's RUNTIMES TLV), and
checks the artifacts an order names before any escrow moves.

Issue 13, finding 5 ("slashing can be farmed"): a native order for a program no provider offers was
assigned to three providers in turn; each refused and was slashed. Here such an order, placed by the
buyer's own transaction (escrow already in), is never assigned, nobody is slashed, and ``explain``
says why; placed through the engine, it is refused before any escrow moves.
"""

from __future__ import annotations

import pytest
import wasmtime

from marketplace.artifacts import ArtifactRejected, Kind
from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import wait_until
from marketplace.convergence.lsa import Availability, LsaContent, encode_lsa
from marketplace.engine.errors import NotServed
from marketplace.engine.orders import Status
from marketplace.engine.spec import spec_digest
from marketplace.resources.model import DeviceClass
from marketplace.resources.runtimes import ContainerOffer, RuntimeOffer
from provider_agent.workloads.examples import EXAMPLES
from tests.chain.test_engine import HW, PRICE, assigned_events, make_engine, w, world  # noqa: F401 - fixtures
from tests.unit.test_container_images import make_archive

pytestmark = pytest.mark.chain

WC_C = (EXAMPLES / "wordcount-c.wasm").read_bytes()
CLOCK_WASM = wasmtime.wat2wasm(
    '(module (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32))) '
    '(memory (export "memory") 1) (func (export "_start")))')


def lsa_with(w, i: int, runtimes: RuntimeOffer | None, seq: int = 1) -> bytes:
    d = w.desc[i]
    content = LsaContent(d, (Availability(DeviceClass.GPU, d.device_count(DeviceClass.GPU) * 1000, 0),),
                         ((DeviceClass.GPU, PRICE),), 1, HW[i][1], runtimes=runtimes)
    return encode_lsa(content, sequence=seq, lifetime=3600, key=w.key(i))


def up(w, engine, offers: dict[int, RuntimeOffer | None]) -> None:
    for i in HW:
        w.register(i)
        assert engine.submit_lsa(lsa_with(w, i, offers.get(i))).outcome.value == "installed"


def spec_of(workload: dict) -> dict:
    return {"requirement": {"device_class": "gpu", "count": 1, "duration_s": 3600}, "workload": workload,
            "attachment": "1"}


def place_own_tx(w, engine, spec: dict, buyer: int = 6) -> int:
    """The buyer places the order with its own transaction (escrow in), then hands the engine the spec."""
    it, _ = w.signed(buyer, spec)
    tx = w.market.place_tx(w.signers[buyer], it)
    return engine.place_order_tx(tx.tx_hash, spec)


def test_F13_5_an_order_no_provider_can_run_is_never_assigned_so_nobody_is_slashed(w, tmp_path):
    engine = make_engine(w, tmp_path)
    up(w, engine, {})  # three providers, none offers a native program
    stakes = {i: w.market.registry.provider(w.signers[i].address).stake for i in HW}
    spec = spec_of({"runtime": "native", "program": "nope", "input": "", "cpu_s": 1})
    oid = place_own_tx(w, engine, spec)
    for _ in range(3):  # three acceptance windows: on main it went to each provider in turn
        engine.step()
        wait_until(w.market, w.market.chain_time() + 31)
    engine.step()
    assert assigned_events(engine, oid) == []
    assert w.market.state(oid) == OrderState.OPEN and engine.orders[oid].status == Status.REFUSED
    assert {i: w.market.registry.provider(w.signers[i].address).stake for i in HW} == stakes
    assert engine.indexer.events("ComputeMarket", "Slashed") == []
    ex = engine.explain(oid)
    for p in ex["providers"]:
        assert not p["feasible"]
        assert {"plugin": "RuntimeSupport", "code": "unresolvable", "reason": "program",
                "message": "needs the native program 'nope'; provider offers no native program"} in p["rejections"]
    # placed through the engine, the same order is refused before any escrow moves
    it, sig = w.signed(7, spec)
    before = w.market.balance(w.signers[7].address)
    with pytest.raises(NotServed) as info:
        engine.place_order(it, sig, spec)
    assert info.value.fields["field"] == "spec.workload.program" and "3 provider(s)" in info.value.message
    assert w.market.balance(w.signers[7].address) == before and w.market.order_count == oid


def test_an_order_goes_only_to_providers_that_run_it_and_its_batch_replays(w, tmp_path):
    engine = make_engine(w, tmp_path)
    h100, l40s, t4 = HW
    up(w, engine, {l40s: RuntimeOffer(programs=("sha256sum",)), t4: RuntimeOffer(programs=("sha256sum", "wc-l"))})
    spec = spec_of({"runtime": "native", "program": "sha256sum", "input": "6869", "cpu_s": 1})
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    o = w.market.order(oid)
    served = {w.signers[l40s].address, w.signers[t4].address}
    assert o.provider in served and set(o.backups) == served - {o.provider}  # the H100 is never a backup
    (bid,) = engine.batches
    rep = engine.replay(bid)
    assert rep["reproduced"] and rep["decisions"][0][1] == o.provider
    # a provider that starts offering a program makes an order refused before matchable
    wc = place_own_tx(w, engine, spec_of({"runtime": "native", "program": "cat", "input": "", "cpu_s": 1}))
    engine.step()
    assert engine.orders[wc].status == Status.REFUSED
    engine.clock.offset += 2  # past the LSDB's MinLSArrival of the first instance
    assert engine.submit_lsa(lsa_with(w, h100, RuntimeOffer(programs=("cat",)), seq=2)).outcome.value == "installed"
    engine.step()
    assert w.market.order(wc).provider == w.signers[h100].address


def test_a_buyers_module_needs_an_uploaded_valid_module_and_a_provider_that_runs_buyer_modules(w, tmp_path):
    engine = make_engine(w, tmp_path)
    h100, l40s, t4 = HW
    up(w, engine, {h100: RuntimeOffer(), l40s: RuntimeOffer(buyer_wasm=False)})  # the T4 advertises nothing
    buyer = w.signers[6].address
    digest = "sha256:" + __import__("hashlib").sha256(WC_C).hexdigest()
    spec = spec_of({"module": digest, "input": "", "fuel": 10**8, "args": ["/input/a.txt"],
                    "inputs": {"a.txt": "sha256:" + "0" * 64}})
    it, sig = w.signed(6, spec)
    for missing, field in ((digest, "spec.workload.module"), ("sha256:" + "0" * 64, "spec.workload.inputs.a.txt")):
        with pytest.raises(ArtifactRejected) as info:
            engine.place_order(it, sig, spec)
        assert info.value.fields["field"] == field and missing in info.value.message
        if missing == digest:
            engine.artifact_store.put(WC_C, Kind.DATA, buyer)
            with pytest.raises(ArtifactRejected, match="uploaded as data, not as wasm"):
                engine.place_order(it, sig, spec)
            engine.artifact_store.put(WC_C, Kind.WASM, buyer)
    engine.artifact_store.put(b"one two\n", Kind.DATA, buyer)
    spec["workload"]["inputs"] = {"a.txt": "sha256:" + __import__("hashlib").sha256(b"one two\n").hexdigest()}
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    o = w.market.order(oid)
    assert o.provider == w.signers[h100].address and o.backups == ()
    ex = {p["provider"]: p for p in engine.explain(oid)["providers"]}
    assert [r["reason"] for r in ex[w.signers[l40s].address]["rejections"]] == ["wasm-modules"]
    assert [r["reason"] for r in ex[w.signers[t4].address]["rejections"]] == ["runtime"]
    # a deterministic order may not name a module that imports a clock
    clock = engine.artifact_store.put(CLOCK_WASM, Kind.WASM, buyer)
    det = spec_of({"module": clock.digest, "input": "", "fuel": 10**6})
    it, sig = w.signed(6, det)
    with pytest.raises(ArtifactRejected, match="clock_time_get") as info:
        engine.place_order(it, sig, det)
    assert info.value.fields["field"] == "spec.workload.deterministic"
    free = spec_of({"module": clock.digest, "input": "", "fuel": 10**6, "deterministic": False})
    it, sig = w.signed(6, free)
    assert engine.place_order(it, sig, free) > oid  # the H100 runs non-deterministic modules too


def test_an_image_for_another_architecture_is_refused_before_escrow_moves(w, tmp_path):
    engine = make_engine(w, tmp_path)
    h100, l40s, _ = HW
    up(w, engine, {h100: RuntimeOffer(container=ContainerOffer("amd64")),
                   l40s: RuntimeOffer(container=ContainerOffer("amd64", devices=True))})
    buyer = w.signers[6].address
    arm = engine.artifact_store.put(make_archive(tmp_path / "arm.tar", arch="arm64").read_bytes(), Kind.OCI, buyer)
    amd = engine.artifact_store.put(make_archive(tmp_path / "amd.tar", arch="amd64").read_bytes(), Kind.OCI, buyer)
    spec = spec_of({"runtime": "container", "image": arm.digest, "cmd": ["/bin/true"]})
    it, sig = w.signed(6, spec)
    with pytest.raises(NotServed) as info:
        engine.place_order(it, sig, spec)
    assert info.value.fields["field"] == "spec.workload.image" and "needs linux/arm64" in info.value.message
    # the amd64 image on a GPU: only the provider that passes devices in through CDI
    spec["workload"]["image"] = amd.digest
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    assert w.market.order(oid).provider == w.signers[l40s].address
    ex = {p["provider"]: p for p in engine.explain(oid)["providers"]}
    assert [r["reason"] for r in ex[w.signers[h100].address]["rejections"]] == ["devices"]
    # a registry reference no provider allows is refused too, naming the image
    ref = spec_of({"runtime": "container", "image": "localhost:5000/tools/busybox:1", "cmd": []})
    it, sig = w.signed(6, ref)
    with pytest.raises(NotServed, match="needs the registry image localhost:5000/tools/busybox:1"):
        engine.place_order(it, sig, ref)
    assert spec_digest(ref) != spec_digest(spec)


def test_artifacts_of_live_orders_do_not_expire(w, tmp_path):
    engine = make_engine(w, tmp_path)
    up(w, engine, {i: RuntimeOffer() for i in HW})
    buyer = w.signers[6].address
    mod = engine.artifact_store.put(WC_C, Kind.WASM, buyer)
    orphan = engine.artifact_store.put(b"nobody names me", Kind.DATA, buyer)
    spec = spec_of({"module": mod.digest, "input": "", "fuel": 10**6})
    it, sig = w.signed(6, spec)
    oid = engine.place_order(it, sig, spec)
    engine.clock.offset += engine.config.artifacts.ttl_s + 1
    engine.step()
    assert engine.artifact_store.get(orphan.digest) is None and engine.artifact_store.get(mod.digest) is not None
    assert w.market.state(oid) in (OrderState.ASSIGNED, OrderState.OPEN)
