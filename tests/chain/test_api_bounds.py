"""Bounded input on every route (``marketplace.api.bounds``): each route's body limit and the JSON depth
limit, sent just over (413, a problem detail naming the limit) and just at (not refused for its size),
read from the OpenAPI document, so a route added later is tested too; a 405 names every method the
path serves; the documented result is bytes.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.api.bounds import LIMITS_KEY
from marketplace.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH
from tests.chain.test_engine import make_engine, w, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.chain

PATH_VALUES = {"order_id": "1", "address": "0x" + "11" * 20, "batch_id": "0x" + "22" * 32}


@pytest.fixture
def api(w, tmp_path):  # noqa: F811
    engine = make_engine(w, tmp_path)
    with TestClient(create_app(ApiState(chain=w.chain, deployment=w.dep.to_dict(), engine=engine)),
                    client=("127.0.0.1", 50000)) as client:
        yield client
    engine.close()


def operations(client: TestClient) -> list[tuple[str, str, dict]]:
    """(method, concrete path, operation) of every operation that takes a body."""
    doc = client.get("/openapi.json").json()
    out = []
    for template, ops in doc["paths"].items():
        path = template
        for name, value in PATH_VALUES.items():
            path = path.replace("{" + name + "}", value)
        for method, op in ops.items():
            if "requestBody" in op:
                out.append((method.upper(), path, op))
    return out


def json_of_size(n: int) -> bytes:
    """A JSON object of exactly ``n`` bytes."""
    head, tail = b'{"pad":"', b'"}'
    return head + b"x" * (n - len(head) - len(tail)) + tail


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_every_operation_declares_its_limits_in_the_openapi_document(api):
    doc = api.get("/openapi.json").json()
    for template, ops in doc["paths"].items():
        for method, op in ops.items():
            limits = op[LIMITS_KEY]
            assert limits["max_body_bytes"] > 0, (method, template)
            if "requestBody" in op:
                assert "413" in op["responses"], (method, template)
    assert doc["paths"]["/v1/orders"]["post"][LIMITS_KEY] == {"max_body_bytes": 2 * 1024 * 1024 + 64 * 1024,
                                                             "max_json_depth": MAX_JSON_DEPTH}
    assert doc["paths"]["/v1/lsas"]["post"][LIMITS_KEY] == {"max_body_bytes": 1492}  # MAX_LSA_SIZE, raw bytes
    assert doc["paths"]["/v1/topology"]["get"][LIMITS_KEY] == {"max_body_bytes": MAX_BODY_BYTES}
    # the result is documented as the bytes it is
    assert set(doc["paths"]["/v1/orders/{order_id}/result"]["get"]["responses"]["200"]["content"]) == {
        "application/octet-stream"}


def test_every_body_limit_refuses_one_byte_over_and_takes_the_limit(api):
    ops = operations(api)
    assert {p for _, p, _ in ops} >= {"/v1/orders", "/v1/quotes", "/v1/lsas", "/v1/heartbeats", "/rpc",
                                      "/v1/orders/1/result", "/v1/orders/1/cancel", "/dev/fund"}
    for method, path, op in ops:
        limits = op[LIMITS_KEY]
        maximum = limits["max_body_bytes"]
        raw = "max_json_depth" not in limits
        ctype = "application/octet-stream" if raw else "application/json"
        over = api.request(method, path, content=b"\0" * (maximum + 1) if raw else json_of_size(maximum + 1),
                           headers={"content-type": ctype})
        assert over.status_code == 413, (method, path, over.status_code, over.text[:200])
        if limits.get("json_rpc"):
            assert over.json()["error"]["code"] == -32600
        else:
            assert over.headers["content-type"] == "application/problem+json"
            assert (over.json()["limit"], over.json()["maximum"], over.json()["field"]) == (
                "max_body_bytes", maximum, "body")
        at = api.request(method, path, content=b"\0" * maximum if raw else json_of_size(maximum),
                         headers={"content-type": ctype})
        assert at.status_code != 413 and at.status_code < 500, (method, path, at.status_code, at.text[:200])


def test_every_json_body_refuses_one_level_too_deep_and_takes_the_limit(api):
    for method, path, op in operations(api):
        limits = op[LIMITS_KEY]
        if "max_json_depth" not in limits:
            continue
        depth = limits["max_json_depth"]
        over = api.request(method, path, content=nested(depth + 1), headers={"content-type": "application/json"})
        assert over.status_code in (200, 413), (method, path, over.status_code)
        if limits.get("json_rpc"):  # JSON-RPC's own answer: status 200, error -32600
            assert over.json()["error"]["code"] == -32600
        else:
            assert over.status_code == 413 and over.json()["limit"] == "max_depth", (method, path, over.text)
        at = api.request(method, path, content=nested(depth), headers={"content-type": "application/json"})
        assert at.status_code < 500 and "max_depth" not in at.text, (method, path, at.status_code, at.text[:200])


def test_a_json_bomb_and_a_chunked_flood_are_refused_and_the_process_answers(api):
    bomb = b'{"spec": ' + nested(100_000) + b"}"  # 200 KB, once a segfault of the whole process
    r = api.post("/v1/orders", content=bomb, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["limit"] == "max_depth"

    def chunks():  # no Content-Length: counted as it arrives, refused at the first byte over
        for _ in range(100):
            yield b" " * 1024

    r = api.post("/v1/quotes", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["limit"] == "max_body_bytes"
    assert api.get("/healthz").json() == {"status": "ok"}


def test_a_405_names_every_method_the_path_serves(api):
    r = api.put("/v1/orders")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["allow"] == "GET, POST"  # the order book (GET) and placing (POST): two routers
    r = api.get("/rpc")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
