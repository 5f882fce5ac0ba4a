"""Load and faults on a market run as ``cona up`` with three demo agents (issue 13, items 1 and 9).

The clients (``up_env.Clients``, 20 of them, one buyer each) sign orders for an eighth of a GPU near
Frankfurt; each places an order through ``POST /v1/orders`` and the next once the engine has
matched it (a lease on chain), so the load follows what the three GPU providers (the H100, L40S and
MI100 demo agents) can serve and the backlog left at the end drains in seconds.

1. Load and fault: 20 clients for 30 s (``make test-deep``, ``CONA_DEEP=1``; the normal suite runs
   the same for 15 s, killing at 4 s, to stay near a minute) while the L40S agent (near the buyers
   and cheap: it serves a large share) is killed with SIGKILL; ``cona up``'s supervisor starts it
   again on its home. From the chain's events and the API:
   - every placement was answered with an order id, each id once;
   - no provider but the killed one was slashed, timed out on an acceptance or failed over: the
     honest clock keeps the 60 s acceptance window 60 real seconds under load (finding 2: 57
     timeouts and two honest providers slashed);
   - the killed agent came back and served again;
   - every order is in exactly one state: the chain, the engine's view and the order book agree and
     the book lists each order once; each ran to completion, or was the killed provider's when no
     backup was left (refunded);
   - ``cona audit escrow`` (the chain alone) finds the contracts holding what they owe; ``/healthz`` ok.
2. Durable (finding 1): the same clients again, and mid-flow ``cona up`` and every process under it
   get SIGKILL at once. A second ``cona up --fresh`` on the directory is refused while the restarted
   one runs. The restart on the same data directory must find:
   - the same chain and market, every order whose id a client was given (with its buyer), and the
     history from before the kill (``cona audit order``: events, i.e. ``eth_getLogs``, across it);
   - a request answered before the kill, sent again with its Idempotency-Key and signed order, gets
     the same order; one the kill cut off gets one new order (twice: the same id); no intent is
     placed twice (the buyers' on-chain nonces count their intents);
   - the agents' lease journals as they were (append-only: the old lines are a prefix), and every
     lease in flight carried to completion by the resumed agents;
   - no provider slashed across the restart (the engine gives resuming agents a grace to be heard
     and offers a restored provider orders only once heard), their stakes as before; the escrow
     balanced.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from marketplace import demo
from marketplace.chain.backends import dev_accounts
from marketplace.chain.lifecycle import OrderState
from marketplace.client import ApiClient
from marketplace.settings import PACKAGE_ROOT, ConaSettings
from tests.e2e.up_env import Buyer, Clients, Up, audit, cmdline, descendants, rpc_chain

pytestmark = pytest.mark.e2e

DEEP = os.environ.get("CONA_DEEP") == "1"
CLIENTS = 20
#: the issue's 30 s in the deep profile; the normal suite's short variant (the whole module there
#: takes about 80 s: a market up, the load, its drain, the kill -9 and restart)
LOAD_S = 30.0 if DEEP else 15.0
KILL_AT_S = 8.0 if DEEP else 4.0
PROVIDERS = 3  # h100-server (node 4), l40s-server (node 7), mi100-box (node 34): they sell GPUs
VICTIM = "l40s-server"
DRAIN_S = 60.0
LIVE = {OrderState.OPEN, OrderState.ASSIGNED, OrderState.RUNNING}
#: how long the clients run before the whole market is killed (leases are in every state by then)
MID_FLOW_S = 6.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("market")
    w = SimpleNamespace(tmp=tmp, data=tmp / "data", up=Up(tmp / "data", tmp / "up1.log", providers=PROVIDERS),
                        chain=None)
    try:
        w.chain, w.market = rpc_chain(w.up.api)
        w.start_block = w.chain.backend.block_number()
        w.buyers = Buyer.fund(w.chain, w.market, CLIENTS)
        w.deadline = w.market.chain_time() + 3600
        yield w
    finally:
        if w.chain is not None:
            w.chain.close()
        w.up.kill_tree()


def _address(profile: str) -> str:
    i = [p.name for p in demo.DEMO_PROVIDERS].index(profile)
    project = ConaSettings().project()
    return dev_accounts(project.mnemonic, demo.FIRST_PROVIDER_ACCOUNT + i + 1)[demo.FIRST_PROVIDER_ACCOUNT + i].address


def _drain(market, ids: list[int]) -> set[int]:
    """Wait until no order of ``ids`` is live (or ``DRAIN_S``); the ones still live."""
    deadline = time.monotonic() + DRAIN_S
    todo = set(ids)
    while todo and time.monotonic() < deadline:
        todo = {oid for oid in todo if market.order(oid).state in LIVE}
        time.sleep(0.5)
    return todo


def test_twenty_clients_with_an_agent_killed_and_restarted(world):
    up, market = world.up, world.market
    clients = Clients(up.api, world.buyers, world.deadline)
    t0 = time.monotonic()
    time.sleep(KILL_AT_S)
    victim_pid = up.agent_pid(VICTIM)
    os.kill(victim_pid, signal.SIGKILL)
    back = None
    while time.monotonic() - t0 < LOAD_S:
        if back is None and any(f"/{VICTIM} " in cmdline(p) for p in descendants(up.pid) if p != victim_pid):
            back = market.chain_time()
        time.sleep(0.2)
    clients.stop()
    assert back is not None, "the killed agent was not started again"
    assert not clients.cut, list(clients.cut.values())[:5]
    placed = clients.ids
    assert len(placed) == len(set(placed)) and len(placed) >= CLIENTS, len(placed)
    todo = _drain(market, placed)

    victim = _address(VICTIM)
    slashed = Counter(e.args["provider"] for e in market.registry.contract.get_logs(world.start_block,
                                                                                   event="Slashed"))
    late = [e.args for e in market.contract.get_logs(world.start_block, event="AcceptanceTimedOut")]
    failed = [e.args for e in market.contract.get_logs(world.start_block, event="OrderFailed")]
    completed = Counter(e.args["provider"] for e in market.contract.get_logs(world.start_block, event="Completed"))
    served_after = [e for e in market.contract.get_logs(world.start_block, event="Accepted")
                    if e.args["provider"] == victim and e.args["startedAt"] > back]
    print(f"\n{len(placed)} orders placed in {LOAD_S:.0f} s by {CLIENTS} clients; completions by provider "
          f"{dict(completed)}; {VICTIM} ({victim}) back at chain time {back}, accepted {len(served_after)} after; "
          f"slashes {dict(slashed)}; {len(late)} acceptance timeouts, {len(failed)} failovers")
    assert not todo, f"{len(todo)} orders still live: {Counter(market.order(o).state.name for o in todo)}"
    assert set(slashed) <= {victim}, f"responsive providers slashed: {set(slashed) - {victim}}"
    assert {e["late"] for e in late} <= {victim}, late
    assert {e["provider"] for e in failed} <= {victim}, failed
    assert served_after, f"the restarted {VICTIM} served nothing after it came back"
    # an order that did not complete was the victim's: failed over with no backup left to take it
    moved = {int(e["order"]) for e in late + failed}
    unfinished = {o: market.order(o).state for o in placed if market.order(o).state != OrderState.COMPLETED}
    assert set(unfinished) <= moved, unfinished

    _one_state_each(up, market, placed)
    status, escrow = audit(up.api, market.address, "escrow")
    assert status == 0 and escrow["balanced"] is True, escrow
    health = httpx.get(f"{up.api}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text


def _one_state_each(up: Up, market, placed: list[int]) -> None:
    """The chain, the engine's view and the order book agree on each order's state; the book lists it once."""
    with ApiClient(up.api, timeout=30) as api:
        listed: Counter[int] = Counter()
        book_state: dict[int, str] = {}
        cursor = None
        while True:
            page = api.get("/v1/orders", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
            for item in page["orders"]:
                listed[int(item["id"])] += 1
                book_state[int(item["id"])] = item["state"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert [oid for oid, n in listed.items() if n > 1] == []
        for oid in placed:
            chain_state = market.order(oid).state
            assert listed[oid] == 1, f"order {oid} listed {listed[oid]} times"
            assert book_state[oid] == chain_state.label, (oid, book_state[oid], chain_state)
            assert api.order(oid)["state"] == chain_state.label, oid


def _journals(data: Path) -> dict[str, str]:
    """Each agent's lease journal, whole lines only (a line being written may be cut by a crash)."""
    out = {}
    for path in sorted((data / "demo").glob("*/state/journal.jsonl")):
        text = path.read_text()
        out[path.parent.parent.name] = text[:text.rfind("\n") + 1]
    return out


def test_kill_9_of_the_whole_market_mid_flow_loses_nothing_and_pays_nothing_twice(world):
    up, market = world.up, world.market
    with ApiClient(up.api) as api:
        before = api.deployment()
    first = market.contract.get_logs(world.start_block, event="Completed")[0].args["order"]
    clients = Clients(up.api, world.buyers, world.deadline)
    time.sleep(MID_FLOW_S)
    names = [p.name for p in demo.DEMO_PROVIDERS[:PROVIDERS]]
    stakes = {n: market.registry.provider(_address(n)).stake for n in names}
    journals = _journals(world.data)
    kill_block = world.chain.backend.block_number()
    world.chain.close()
    world.chain = None
    killed = up.kill_tree()
    clients.stop()
    assert len(killed) >= 1 + PROVIDERS, killed
    confirmed = dict(clients.placed)
    live_at_kill = len(confirmed)

    up = world.up = Up(world.data, world.tmp / "up2.log", providers=PROVIDERS)
    # while it runs, nobody else gets the directory, not even to start afresh
    other = subprocess.run([sys.executable, "-m", "marketplace.cli.main", "up", "--data-dir", str(world.data),
                            "--port", "0", "--providers", "0", "--fresh"], cwd=PACKAGE_ROOT, capture_output=True,
                           text=True, timeout=120)
    assert other.returncode != 0 and f"in use by another market (pid {up.pid})" in other.stdout + other.stderr

    world.chain, market = rpc_chain(up.api)
    with ApiClient(up.api) as api:
        after = api.deployment()
        assert (after.genesis, after.contracts) == (before.genesis, before.contracts)
        for key, oid in confirmed.items():  # every order a client was told of is there, the buyer's
            assert market.order(oid).buyer == key.split(":")[0], (key, oid)
        for key in list(confirmed)[-5:]:  # answered before the kill, sent again: the same order
            assert api.place_order(clients.bodies[key], key) == confirmed[key]
        for key, (_, body, _) in clients.cut.items():  # cut off: sent again as it was, one new order
            oid = api.place_order(body, key)
            assert oid not in set(confirmed.values()), (key, oid)
            confirmed[key] = oid
            assert api.place_order(body, key) == oid
    assert len(set(confirmed.values())) == len(confirmed)
    for b in world.buyers:
        assert market.nonce(b.address) == b.nonce, (b.address, b.nonce)  # each intent placed once

    todo = _drain(market, list(confirmed.values()))
    print(f"\n{live_at_kill} orders answered before the kill, {len(clients.cut)} cut off and placed again after it")
    assert not todo, {o: market.order(o).state for o in todo}
    assert all(market.order(o).state == OrderState.COMPLETED for o in confirmed.values())
    for name, text in _journals(world.data).items():
        assert text.startswith(journals.get(name, "")), f"{name}'s journal lost lines"
    status, hist = audit(up.api, market.address, "order", str(first))
    assert status == 0 and hist["consistent"], hist
    assert [t["event"] for t in hist["transitions"]][:4] == ["OrderPlaced", "Assigned", "Accepted", "Completed"]
    with ApiClient(up.api) as api:
        escrow = api.get("/v1/audit/escrow")
    assert escrow["balanced"], escrow
    slashes = market.registry.contract.get_logs(kill_block, event="Slashed")
    assert slashes == [], [e.args for e in slashes]
    assert {n: market.registry.provider(_address(n)).stake for n in names} == stakes  # stakes kept, none taken
