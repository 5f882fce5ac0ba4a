"""The engine routes through FastAPI's TestClient: agents' LSAs and buyers' orders over HTTP."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import wait_until
from tests.chain.test_engine import HW, PRICE, make_engine, w, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.chain


@pytest.fixture
def api(w, tmp_path):  # noqa: F811
    engine = make_engine(w, tmp_path)
    for i in HW:
        w.register(i)
    with TestClient(create_app(ApiState(chain=w.chain, deployment=w.dep.to_dict(), engine=engine))) as client:
        yield w, engine, client


def _order_body(w, buyer=6, **req):
    spec = w.spec(**req)
    it, sig = w.signed(buyer, spec)
    return {"intent": it.to_dict(), "signature": "0x" + sig.hex(), "spec": spec}


def test_lsas_orders_and_reads_over_http(api):
    w, engine, client = api
    for i in HW:
        r = client.post("/v1/lsas", content=w.lsa(i), headers={"content-type": "application/octet-stream"})
        assert r.status_code == 202 and r.json()["outcome"] == "installed", r.text
    assert len(client.get("/v1/providers").json()) == 3
    q = client.post("/v1/quotes", json={"requirement": {"device_class": "gpu", "min_memory_mib": 40960},
                                        "attachment": "1"}).json()
    assert [p["feasible"] for p in q["providers"]].count(True) == 2
    body = _order_body(w, min_memory_mib=40960)
    r = client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    again = client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again.json()["id"] == oid
    assert w.market.order_count == oid  # one order, not two
    engine.step()
    view = client.get(f"/v1/orders/{oid}").json()
    assert view["state"] == "assigned" and view["engine"]["status"] == "assigned"
    assert client.get(f"/v1/orders/{oid}/spec").json() == body["spec"] | {
        "requirement": view["spec"]["requirement"]}
    ex = client.get(f"/v1/orders/{oid}/explain").json()
    assert ex["best"] not in (None, view["provider"])  # its provider's only GPU is taken now: the other one
    # the provider runs it and uploads the result: only bytes hashing to the on-chain result are kept
    o = w.market.order(oid)
    idx = next(i for i in HW if w.signers[i].address == o.provider)
    w.market.accept(w.signers[idx], oid)
    wait_until(w.market, w.market.order(oid).started_at + 60)  # usage is capped by the time elapsed
    w.market.complete(w.signers[idx], oid, keccak(b"the answer"), 60)
    bad = client.post(f"/v1/orders/{oid}/result", content=b"another answer",
                      headers={"content-type": "application/octet-stream"})
    assert bad.status_code == 409 and bad.json()["reason"] == "hash-mismatch"
    assert client.get(f"/v1/orders/{oid}/result").status_code == 404
    ok = client.post(f"/v1/orders/{oid}/result", content=b"the answer",
                     headers={"content-type": "application/octet-stream"})
    assert ok.status_code == 201
    assert client.get(f"/v1/orders/{oid}/result").content == b"the answer"


def test_problem_details_name_the_field(api):
    w, engine, client = api
    r = client.post("/v1/lsas", content=w.lsa(3, descriptor=w.desc[5]),
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 409 and r.json()["reason"] == "contradicts-registration"
    assert r.headers["content-type"].startswith("application/problem+json")
    body = _order_body(w)
    body["spec"]["workload"]["module"] = "bitcoin-miner"
    r = client.post("/v1/orders", json=body)
    assert r.status_code == 422 and r.json()["field"] == "spec.workload.module"
    body = _order_body(w)
    body["spec"]["requirement"]["count"] = 0
    r = client.post("/v1/orders", json=body)
    assert r.status_code == 422 and r.json()["field"] == "spec.requirement.count"
    body = _order_body(w)
    body["intent"]["units"] = 2
    r = client.post("/v1/orders", json=body)
    assert r.status_code == 422 and r.json()["field"] == "intent.units"
    body = _order_body(w)
    r = client.post("/v1/orders", json=body, headers={"Idempotency-Key": "k-2"})
    assert r.status_code == 201
    mine = _order_body(w)  # the same buyer's next order under the same key: a conflict
    r = client.post("/v1/orders", json=mine, headers={"Idempotency-Key": "k-2"})
    assert r.status_code == 409 and r.json()["field"] == "Idempotency-Key"
    other = _order_body(w, buyer=7)  # another buyer's "k-2" is another key (keys are scoped per buyer)
    r = client.post("/v1/orders", json=other, headers={"Idempotency-Key": "k-2"})
    assert r.status_code == 201
    assert client.get("/v1/orders/999").status_code == 404
    hb = {"provider": w.signers[3].address, "sequence": 1, "timestamp": 1, "leases": [], "signature": "0x00"}
    r = client.post("/v1/heartbeats", json=hb)
    assert r.status_code == 400 and r.json()["field"] == "signature"


def test_an_order_placed_by_the_buyers_own_transaction(api):
    w, engine, client = api
    for i in HW:
        engine.submit_lsa(w.lsa(i))
    spec = w.spec()
    it, _ = w.signed(6, spec)
    tx = w.market.place_tx(w.signers[6], it)
    r = client.post("/v1/orders", json={"tx_hash": tx.tx_hash, "spec": spec})
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    engine.step()
    assert w.market.state(oid) == OrderState.ASSIGNED


def test_providers_filter_by_class_vram_domain_and_price_and_one_provider_by_address(api):
    w, engine, client = api
    for i in HW:
        assert client.post("/v1/lsas", content=w.lsa(i),
                           headers={"content-type": "application/octet-stream"}).status_code == 202
    every = client.get("/v1/providers").json()
    assert len(every) == 3
    # H100 80 GB and L40S 48 GB have >= 40 GiB per GPU; the T4 has 15 GiB
    big = client.get("/v1/providers", params={"device_class": "gpu", "min_vram_mib": 40960}).json()
    assert {p["hostname"] for p in big} == {"h100-server", "l40s-server"}
    assert client.get("/v1/providers", params={"device_class": "npu"}).json() == []
    assert len(client.get("/v1/providers", params={"domain": 1}).json()) == 3
    assert client.get("/v1/providers", params={"domain": 2}).json() == []
    assert client.get("/v1/providers", params={"max_price": PRICE - 1}).json() == []
    assert len(client.get("/v1/providers", params={"max_price": PRICE}).json()) == 3
    bad = client.get("/v1/providers", params={"min_vram_mib": 1})
    assert bad.status_code == 422 and bad.json()["field"] == "min_vram_mib"
    bad = client.get("/v1/providers", params={"device_class": "qpu"})
    assert bad.status_code == 422 and bad.json()["field"] == "device_class"

    one = every[0]
    got = client.get(f"/v1/providers/{one['address'].lower()}")
    assert got.status_code == 200 and got.json() == one
    unknown = client.get("/v1/providers/0x" + "11" * 20)
    assert unknown.status_code == 404 and unknown.json()["field"] == "address"
    assert client.get("/v1/providers/nope").json()["field"] == "address"


def _typed(schema: dict, components: dict) -> bool:
    """Whether a response schema says something: a model with properties, a typed list, a scalar, a union of those."""
    if "$ref" in schema:
        return _typed(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    if "anyOf" in schema or "oneOf" in schema:
        return all(_typed(s, components) for s in schema.get("anyOf", schema.get("oneOf")))
    kind = schema.get("type")
    if kind == "object":
        return bool(schema.get("properties"))
    if kind == "array":
        return _typed(schema.get("items", {}), components)
    return kind in ("string", "integer", "number", "boolean")


def test_every_v1_operation_documents_a_typed_success_response(api):
    _, _, client = api
    doc = client.get("/openapi.json").json()
    components = doc["components"]["schemas"]
    untyped, operations = [], 0
    for path, ops in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            operations += 1
            ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            schemas = [c.get("schema", {}) for r in ok.values() for c in r.get("content", {}).values()]
            if not schemas or not all(_typed(s, components) for s in schemas):
                untyped.append(f"{method.upper()} {path}")
    assert operations == 25 and not untyped, untyped
    # the signed documents are described too, though the domain validates them as sent
    order_in = components["OrderIn"]["properties"]
    assert order_in["spec"]["properties"]["workload"] and order_in["intent"]["anyOf"][0]["properties"]["max_price"]
    assert _typed(doc["paths"]["/v1/heartbeats"]["post"]["requestBody"]["content"]["application/json"]["schema"],
                  components)


def test_validated_answers_are_the_engines_own_documents(api):
    """A route that answers through its response model adds, drops and changes nothing of the engine's dict."""
    w, engine, client = api
    for i in HW:
        engine.submit_lsa(w.lsa(i))
    body = _order_body(w, min_memory_mib=40960)
    oid = client.post("/v1/orders", json=body).json()["id"]
    engine.step()
    assert client.get(f"/v1/orders/{oid}/spec").json() == engine.spec_of(oid)
    assert client.get(f"/v1/orders/{oid}/explain").json() == engine.explain(oid)
    requirement = {"device_class": "gpu", "min_memory_mib": 40960, "precision": "fp16", "min_flops": 1e12}
    assert client.post("/v1/quotes", json={"requirement": requirement, "attachment": "1"}).json() == \
        engine.quote(requirement, "1")
    listed = {p["address"]: p for p in engine.providers()}
    for p in client.get("/v1/providers", params={"device_class": "gpu"}).json():
        assert p == listed[p["address"]] | {"load": p["load"], "last_heartbeat": p["last_heartbeat"]}
    view = client.get(f"/v1/orders/{oid}").json()
    assert set(view) == set(engine.order_view(oid)) and view["engine"]["status"] == "assigned"
