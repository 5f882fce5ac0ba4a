"""The read views on the embedded chain with a deployed market: topology (JSON and GeoJSON on a real
Topology Zoo file), the order book's cursor pagination and filters, and the server-sent event
streams (an order's transitions in chain order, ending on a final state; the market feed, live).

Orders are placed with the typed market clients (``tests/chain/market_env.py``); what the API
answers is checked against the transactions' receipts and the topology file as loaded.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.audit import MARKET, REGISTRY
from marketplace.chain.backends import free_port
from marketplace.chain.indexer import EventIndexer
from marketplace.chain.market import wait_until
from marketplace.routing import load_topology
from tests.chain.market_env import PRICE, Env

pytestmark = pytest.mark.parametrize("chain", ["embedded"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]
GEANT = ROOT / "tests" / "fixtures" / "topologies" / "Geant2012.graphml"
RESULT = b"\x11" * 32


def build_app(env: Env, topology=None):
    state = ApiState(chain=env.chain, deployment={
        "contracts": {"ComputeMarket": env.market.address, "ProviderRegistry": env.registry.address}, "block": 0})
    if topology is not None:
        state.topology = topology  # what `cona up` loads
    app = create_app(state)
    return app


@pytest.fixture
def client_of(env: Env):
    """Opens a client of a fresh app (its lifespan running) for the test: ``client_of(topology=None)``."""
    with ExitStack() as stack:
        yield lambda topology=None: stack.enter_context(TestClient(build_app(env, topology)))


def sse_records(text: str) -> list[dict]:
    """Parses a text/event-stream body into records {id, event, data}."""
    out = []
    for block in text.split("\n\n"):
        rec: dict = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            rec[key] = value.strip()
        if rec:
            rec["data"] = json.loads(rec["data"])
            out.append(rec)
    return out


def settle(env: Env, oid: int, provider) -> list:
    """Drives an open order to Settled; returns the transactions in order."""
    m = env.market
    txs = [m.assign(env.orchestrator, oid, provider.address, PRICE), m.accept(provider, oid)]
    txs.append(env.complete(provider, oid, 1800, RESULT))
    wait_until(m, m.order(oid).completed_at + 300)
    txs.append(m.settle(env.stranger, oid))
    return txs


def assert_problem(resp, status: int, field: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["status"] == status and body["field"] == field, body


# ---------------------------------------------------------------------------- topology


def test_topology_json_and_geojson_from_a_topology_zoo_file(env: Env, client_of):
    topo = load_topology(GEANT)
    env.register(env.providers[0])
    env.register(env.providers[1], domain=7)
    client = client_of(topo)

    doc = client.get("/v1/topology").json()
    assert doc["name"] == topo.name
    assert [n["id"] for n in doc["nodes"]] == list(topo.nodes)
    for n in doc["nodes"]:
        info = topo.node_info[n["id"]]
        assert (n["label"], n["lat"], n["lon"]) == (info.label, info.lat, info.lon)
    assert len(doc["links"]) == len(topo.links)
    for got, link in zip(doc["links"], topo.links):
        assert (got["u"], got["v"], got["latency_ms"], got["bandwidth_mbps"]) == \
            (link.u, link.v, link.latency_ms, link.bandwidth_mbps)
    # no engine in this process: the registry's providers, from its events, without an attachment
    provs = {p["address"]: p for p in doc["providers"]}
    assert set(provs) == {env.providers[0].address, env.providers[1].address}
    assert provs[env.providers[1].address]["domain"] == 7
    assert all(p["status"] == "active" and p["source"] == "chain" and p["attachment"] is None for p in provs.values())

    resp = client.get("/v1/topology", params={"format": "geojson"})
    assert resp.headers["content-type"] == "application/geo+json"
    geo = resp.json()
    assert geo["type"] == "FeatureCollection"
    points = [f for f in geo["features"] if f["geometry"]["type"] == "Point"]
    lines = [f for f in geo["features"] if f["geometry"]["type"] == "LineString"]
    located = [n for n in topo.nodes if topo.node_info[n].lat is not None]
    assert len(located) > 20 and [p["id"] for p in points] == located
    for p in points:
        info = topo.node_info[p["id"]]
        assert p["geometry"]["coordinates"] == [info.lon, info.lat]  # GeoJSON order: lon, lat
    both = [lk for lk in topo.links if topo.node_info[lk.u].lat is not None and topo.node_info[lk.v].lat is not None]
    assert len(lines) == len(both) > 0


def test_topology_problems(env: Env, client_of):
    client = client_of()
    assert_problem(client.get("/v1/topology"), 404, "topology")
    client = client_of(load_topology(GEANT))
    assert_problem(client.get("/v1/topology", params={"format": "kml"}), 422, "format")


# ---------------------------------------------------------------------------- the order book


def test_cursor_walks_every_order_once_newest_first(env: Env, client_of):
    b0, b1 = env.buyers[0], env.buyers[1]
    placed = [env.open_order(b0 if i % 3 else b1, units=1 + i % 2) for i in range(7)]
    client = client_of()
    seen, cursor, pages = [], None, 0
    while True:
        page = client.get("/v1/orders", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        pages += 1
        assert len(page["orders"]) <= 3
        seen += [o["id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # an order placed while paging never shifts the pages still to come
        placed.append(env.open_order(b0))
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7
    assert seen == sorted(placed[:7], reverse=True)
    everything = client.get("/v1/orders", params={"limit": 200}).json()
    assert [o["id"] for o in everything["orders"]] == sorted(placed, reverse=True)
    assert everything["next_cursor"] is None


def test_filters_by_buyer_state_and_provider(env: Env, client_of):
    b0, b1 = env.buyers[0], env.buyers[1]
    p = env.providers[0]
    env.register(p)
    a = env.open_order(b0)
    b = env.running_order(b1, p)
    c = env.open_order(b1)
    client = client_of()
    ids = lambda **q: [o["id"] for o in client.get("/v1/orders", params=q).json()["orders"]]  # noqa: E731
    assert ids(buyer=b1.address.lower()) == [c, b]
    assert ids(buyer=b0.address) == [a]
    assert ids(state="running") == [b] and ids(state="OPEN") == [c, a]
    assert ids(provider=p.address) == [b]
    assert ids(buyer=b1.address, state="open") == [c]
    row = client.get("/v1/orders", params={"state": "running"}).json()["orders"][0]
    chain_order = env.market.order(b)
    assert (row["buyer"], row["provider"], row["price"], row["units"], row["device_class"]) == \
        (b1.address, p.address, str(PRICE), chain_order.units, "GPU")
    assert [s["state"] for s in row["timeline"]] == ["open", "assigned", "running"]


def test_bad_queries_are_problem_details_naming_the_field(env: Env, client_of):
    client = client_of()
    assert_problem(client.get("/v1/orders", params={"cursor": "not-a-cursor"}), 422, "cursor")
    assert_problem(client.get("/v1/orders", params={"cursor": "b3JkZXI6LTE"}), 422, "cursor")  # "order:-1"
    assert_problem(client.get("/v1/orders", params={"limit": 0}), 422, "limit")
    assert_problem(client.get("/v1/orders", params={"limit": 201}), 422, "limit")
    assert_problem(client.get("/v1/orders", params={"limit": "ten"}), 422, "limit")
    assert_problem(client.get("/v1/orders", params={"state": "lost"}), 422, "state")
    assert_problem(client.get("/v1/orders", params={"buyer": "0x1234"}), 422, "buyer")
    assert_problem(client.get("/v1/orders/99/events"), 404, "order_id")
    assert_problem(client.get("/v1/orders/1/events", headers={"Last-Event-ID": "yesterday"}), 422, "Last-Event-ID")


# ---------------------------------------------------------------------------- server-sent events


def test_order_stream_delivers_transitions_in_order_and_ends_when_final(env: Env, client_of):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    it = env.intent(b)
    env.market.deposit(b, it.escrow())
    placed = env.market.place_tx(b, it)
    oid = placed.event("OrderPlaced").args["order"]
    client = client_of()
    got: dict = {}

    def follow() -> None:
        with client.stream("GET", f"/v1/orders/{oid}/events") as resp:
            got["status"] = resp.status_code
            got["type"] = resp.headers["content-type"]
            got["text"] = "".join(resp.iter_text())

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.5)  # the stream is open while the order is still Open: it must follow it live
    assert reader.is_alive()
    txs = [placed] + settle(env, oid, p)
    reader.join(timeout=30)
    assert not reader.is_alive(), "the stream did not end on the final state"
    assert got["status"] == 200 and got["type"].startswith("text/event-stream")
    records = sse_records(got["text"])
    transitions = [r for r in records if r["event"] == "transition"]
    assert [r["data"]["event"] for r in transitions] == ["OrderPlaced", "Assigned", "Accepted", "Completed", "Settled"]
    assert [r["data"]["state"] for r in transitions] == ["open", "assigned", "running", "completed", "settled"]
    for rec, tx in zip(transitions, txs):
        assert rec["data"]["tx_hash"] == tx.tx_hash and rec["data"]["block"] == tx.receipt.block_number
        assert rec["id"] == f"{rec['data']['block']}-{rec['data']['log_index']}"
        assert rec["data"]["order"] == oid
    assert transitions[1]["data"]["args"]["provider"] == p.address
    assert records[-1]["event"] == "end" and records[-1]["data"] == {"order": oid, "state": "settled"}

    # resuming after the second transition sends the rest, then ends at once
    resumed = client.get(f"/v1/orders/{oid}/events", headers={"Last-Event-ID": transitions[1]["id"]})
    again = sse_records(resumed.text)
    assert [r["id"] for r in again if r["event"] == "transition"] == [r["id"] for r in transitions[2:]]
    assert again[-1]["event"] == "end"


@pytest.fixture
def served(env: Env):
    """The app on a real loopback port (an SSE stream that never ends needs a real client)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(env), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_market_feed_streams_backlog_then_live_events(env: Env, served: str):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    first = env.open_order(b)
    records: list[dict] = []
    with httpx.Client(base_url=served, timeout=20) as http:
        with http.stream("GET", "/v1/events", params={"backlog": 2}) as resp:
            assert resp.status_code == 200
            buf = ""
            placed_live = None
            for chunk in resp.iter_text():
                buf += chunk
                *done, buf = buf.split("\n\n")
                records += sse_records("\n\n".join(done))
                if placed_live is None and any(r["event"] == "chain" for r in records):
                    placed_live = env.open_order(b)  # placed after the stream opened
                if placed_live is not None and any(r["data"].get("order") == placed_live for r in records):
                    break
    assert records[0]["event"] == "hello"
    chain = [r["data"] for r in records if r["event"] == "chain"]
    # the backlog: the last two events before the stream opened (Deposited, OrderPlaced of the first order)
    assert [(e["event"], e.get("order")) for e in chain[:2]] == [("Deposited", None), ("OrderPlaced", first)]
    live = [e for e in chain if e.get("order") == placed_live]
    assert live[0]["event"] == "OrderPlaced" and live[0]["state"] == "open" and live[0]["final"] is False
    positions = [(e["block"], e["log_index"]) for e in chain]
    assert positions == sorted(positions) and len(positions) == len(set(positions))


# ---------------------------------------------------------------------------- the event index


def test_a_given_indexer_serves_the_feed_and_the_audit_and_outlives_the_app(env: Env):
    oid = env.open_order(env.buyers[0])
    index = EventIndexer(env.chain.backend, {MARKET: (env.market.address, env.market.contract.abi),
                                             REGISTRY: (env.registry.address, env.registry.contract.abi)})
    state = ApiState(chain=env.chain, deployment={"contracts": {"ComputeMarket": env.market.address}}, indexer=index)
    with TestClient(create_app(state)) as client:
        services = client.app.state.services
        assert services.feed.indexer is index and services.audit.auditor.indexer is index
        assert [o["id"] for o in client.get("/v1/orders").json()["orders"]] == [oid]
        assert index.cursor == env.chain.backend.block_number()  # the feed synced the index it was given
        assert client.get(f"/v1/audit/orders/{oid}").json()["consistent"] is True
        later = env.open_order(env.buyers[1])
        index.sync()  # another reader of the process moves the shared index: the feed still sees the order
        assert [o["id"] for o in client.get("/v1/orders").json()["orders"]] == [later, oid]
    assert [e.name for e in index.events(order=oid)] == ["OrderPlaced"]  # the app did not close it
    index.close()


def test_without_a_deployment_the_read_views_are_503_problems_and_the_rest_serves(env: Env):
    with TestClient(create_app(ApiState(chain=env.chain))) as client:
        for path in ("/v1/orders", "/v1/orders/1/events", "/v1/events", "/v1/audit/escrow"):
            resp = client.get(path)
            assert resp.status_code == 503 and resp.headers["content-type"] == "application/problem+json", path
        assert client.get("/healthz").json() == {"status": "ok"}


def test_the_lifespan_must_run_before_requests(env: Env):
    client = TestClient(build_app(env))  # not entered: no lifespan, no services
    with pytest.raises(RuntimeError, match="lifespan"):
        client.get("/v1/orders")
