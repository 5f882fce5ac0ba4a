"""The auditor, from chain data alone: order histories through every path, provider histories,
the escrow check after each path, a reorganisation, and the audit API, on embedded and anvil.

Each test drives real transactions through the typed clients, then asks a fresh ``Auditor``
(its own event index, no state shared with the clients) and checks what it rebuilt against
the receipts, the blocks and the contracts' views. The tamper tests check that the replay
does catch a history that does not reach the contract's state.
"""

from __future__ import annotations

import json

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

from marketplace.api.app import ApiState, create_app
from marketplace.chain.audit import Auditor, EscrowAudit
from marketplace.chain.intents import cost
from marketplace.chain.lifecycle import OrderState, ProviderStatus, replay_order
from marketplace.chain.market import SlashReason, wait_until
from marketplace.errors import InputError, NotFound
from tests.chain.market_env import ETH, PRICE, Env

pytestmark = pytest.mark.parametrize("chain", ["embedded", "anvil"], indirect=True)

RESULT = keccak(b"result")


def _auditor(env: Env) -> Auditor:
    """A fresh auditor: its own in-memory index, the market found from its address only."""
    return Auditor.open(env.chain, market_address=env.market.address)


def _names(history) -> list[str]:
    return [t.event for t in history.transitions]


def _balanced(env: Env) -> EscrowAudit:
    audit = _auditor(env).escrow()
    assert audit.balanced, audit.to_dict()
    assert audit.owed_from_events == audit.market.owed and audit.held_from_events == audit.market.held
    return audit


def _settled_order(env: Env, usage: int = 1800) -> tuple[int, list]:
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    it = env.intent(b)
    txs = [env.market.deposit(b, it.escrow())]
    txs.append(env.market.place_tx(b, it))
    oid = txs[-1].event("OrderPlaced").args["order"]
    txs.append(env.market.assign(env.orchestrator, oid, p.address, PRICE))
    txs.append(env.market.accept(p, oid))
    txs.append(env.complete(p, oid, usage, RESULT))
    wait_until(env.market, env.market.order(oid).completed_at + 300)
    txs.append(env.market.settle(env.stranger, oid))
    return oid, txs


# ---------------------------------------------------------------------------- orders


def test_settled_order_history_matches_receipts_blocks_and_state(env: Env):
    oid, txs = _settled_order(env)
    history = _auditor(env).order(oid)
    assert _names(history) == ["OrderPlaced", "Assigned", "Accepted", "Completed", "Settled"]
    assert [t.state for t in history.transitions] == ["OPEN", "ASSIGNED", "RUNNING", "COMPLETED", "SETTLED"]
    assert [t.tx_hash for t in history.transitions] == [tx.tx_hash for tx in txs[1:]]
    for entry, tx in zip(history.transitions, txs[1:]):
        block = env.chain.backend.request("eth_getBlockByNumber", [hex(entry.block), False])
        assert entry.block == tx.receipt.block_number and entry.timestamp == int(block["timestamp"], 16)
        ev = next(e for e in tx.events if e.name == entry.event)
        assert entry.log_index == ev.log_index
    assert [(t.block, t.log_index) for t in history.transitions] == sorted((t.block, t.log_index)
                                                                            for t in history.transitions)
    assert history.state is OrderState.SETTLED and history.replayed_state is OrderState.SETTLED
    assert history.consistent, history.mismatches
    escrow = cost(1, 3600, PRICE)
    paid = cost(1, 1800, PRICE)
    fee = paid * 200 // 10_000
    m = history.money
    assert (m.escrow, m.paid, m.fees, m.refunded, m.remaining) == (escrow, paid, fee, escrow - paid, 0)
    settled = history.transitions[-1]
    assert settled.amounts == {"paid": paid, "fee": fee, "refund": escrow - paid}
    data = history.to_dict()
    assert data["state"] == "SETTLED" and data["transitions"][-1]["args"]["paid"] == str(paid)
    assert data["money"]["refunded"] == str(escrow - paid)
    _balanced(env)


def test_cancelled_orders_open_and_assigned(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    first = env.open_order(b)
    env.market.cancel(b, first)
    second = env.open_order(b)
    env.market.assign(env.orchestrator, second, p.address, PRICE)
    env.market.cancel(b, second)
    auditor = _auditor(env)
    h1, h2 = auditor.order(first), auditor.order(second)
    assert _names(h1) == ["OrderPlaced", "Cancelled"] and h1.state is OrderState.CANCELLED and h1.consistent
    assert _names(h2) == ["OrderPlaced", "Assigned", "Cancelled"] and h2.consistent, h2.mismatches
    assert h2.money.refunded == h2.money.escrow and h2.money.paid == 0
    lease = auditor.provider(p.address).leases
    assert [(x.order_id, x.outcome) for x in lease] == [(second, "Cancelled")]
    _balanced(env)


def test_timeout_moves_to_the_backup_and_slashes_the_late_provider(env: Env):
    late, backup, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(late)
    env.register(backup)
    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, late.address, PRICE, [backup.address])
    wait_until(env.market, env.market.order(oid).accept_deadline + 1)
    env.market.timeout_acceptance(env.stranger, oid)
    env.market.accept(backup, oid)
    env.complete(backup, oid, 3600, RESULT)
    wait_until(env.market, env.market.order(oid).completed_at + 300)
    env.market.settle(env.stranger, oid)
    auditor = _auditor(env)
    h = auditor.order(oid)
    assert _names(h) == ["OrderPlaced", "Assigned", "AcceptanceTimedOut", "Accepted", "Completed", "Settled"]
    assert [t.state for t in h.transitions][2] == "ASSIGNED"
    assert h.consistent, h.mismatches
    slashed = 2 * ETH * 500 // 10_000
    assert len(h.slashes) == 1 and h.slashes[0].args["reason"] == SlashReason.MISSED_ACCEPTANCE
    # nothing was paid yet when the late provider was slashed: the buyer lost nothing, the slice is burned
    assert (h.money.compensated, h.money.burned) == (0, slashed)
    assert h.order.provider == backup.address and h.order.next_backup == 1
    late_h = auditor.provider(late.address)
    assert late_h.consistent, late_h.mismatches
    assert late_h.stake == late_h.replayed_stake == 2 * ETH - slashed and late_h.slashed == slashed
    assert [(x.order_id, x.outcome, x.slashed) for x in late_h.leases] == [(oid, "AcceptanceTimedOut", slashed)]
    backup_h = auditor.provider(backup.address)
    assert [(x.order_id, x.outcome) for x in backup_h.leases] == [(oid, "Settled")]
    assert backup_h.earned == h.money.paid - h.money.fees == backup_h.market_balance
    _balanced(env)


def test_timeout_without_backup_refunds(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    wait_until(env.market, env.market.order(oid).accept_deadline + 1)
    env.market.timeout_acceptance(env.stranger, oid)
    h = _auditor(env).order(oid)
    assert h.state is OrderState.REFUNDED and h.consistent, h.mismatches
    assert h.money.refunded == h.money.escrow
    _balanced(env)


def test_failure_pays_pro_rata_and_the_backup_finishes(env: Env):
    p, backup, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    env.register(backup)
    oid = env.running_order(b, p, backups=[backup])
    wait_until(env.market, env.market.order(oid).started_at + 600)
    fail = env.market.fail(env.orchestrator, oid).event("OrderFailed")
    env.market.accept(backup, oid)
    env.complete(backup, oid, 3600 - fail.args["served"], RESULT)
    wait_until(env.market, env.market.order(oid).completed_at + 300)
    env.market.settle(env.stranger, oid)
    auditor = _auditor(env)
    h = auditor.order(oid)
    assert _names(h) == ["OrderPlaced", "Assigned", "Accepted", "OrderFailed", "Accepted", "Completed", "Settled"]
    assert h.consistent, h.mismatches
    assert h.order.served == fail.args["served"] >= 600
    assert h.slashes[0].args["reason"] == SlashReason.FAILURE_MID_LEASE
    failed_h = auditor.provider(p.address)
    assert [(x.outcome, x.paid) for x in failed_h.leases] == [("OrderFailed", fail.args["paid"])]
    assert failed_h.earned == fail.args["paid"] - fail.args["fee"] and failed_h.consistent, failed_h.mismatches
    _balanced(env)


def test_failure_without_backup_refunds_the_rest(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.running_order(b, p)
    wait_until(env.market, env.market.order(oid).started_at + 900)
    env.market.fail(env.orchestrator, oid)
    h = _auditor(env).order(oid)
    assert h.state is OrderState.REFUNDED and h.consistent, h.mismatches
    m = h.money
    assert m.paid > 0 and m.refunded > 0 and m.paid + m.refunded == m.escrow and m.remaining == 0
    _balanced(env)


def test_disputed_and_resolved_with_a_split_and_a_slash(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.running_order(b, p)
    env.complete(p, oid, 3600, RESULT)
    auditor = _auditor(env)
    mid = auditor.order(oid)
    assert mid.state is OrderState.COMPLETED and mid.money.remaining == mid.money.escrow
    _balanced(env)  # escrow still reserved for a live order
    env.market.dispute(b, oid)
    env.market.resolve(env.arbiter, oid, 10**15, ETH // 4)
    h = auditor.order(oid)  # the same auditor, synced incrementally
    assert _names(h)[-3:] == ["Completed", "Disputed", "Resolved"] and h.consistent, h.mismatches
    # compensation up to what the buyer paid (10**15), the rest of the slash burned
    assert (h.money.paid, h.money.compensated, h.money.burned) == (10**15, 10**15, ETH // 4 - 10**15)
    assert h.slashes[0].args["reason"] == SlashReason.LOST_DISPUTE
    prov = auditor.provider(p.address)
    assert prov.leases[0].outcome == "Resolved" and prov.stake == 2 * ETH - ETH // 4 and prov.consistent
    audit = _balanced(env)
    assert audit.live_orders == 0 and audit.owed_by_role["escrow"] == 0


def test_provider_history_registration_stake_status_and_withdrawals(env: Env):
    oid, _ = _settled_order(env)
    p = env.providers[0]
    env.registry.top_up(p, ETH)
    env.registry.pause(p)
    env.registry.resume(p)
    env.market.withdraw(p)
    unbond_at = env.registry.begin_unbond(p).event("UnbondingStarted").args["unbondAt"]
    wait_until(env.market, unbond_at)
    env.registry.finish_unbond(p)
    env.registry.withdraw(p)
    h = _auditor(env).provider(p.address)
    assert [e.event for e in h.events if e.event != "LeaseCountChanged"] == [
        "Registered", "StakeAdded", "ProviderPaused", "ProviderResumed", "UnbondingStarted", "ProviderExited",
        "Withdrawn"]
    assert h.status is ProviderStatus.EXITED == h.replayed_status and h.stake == 0 and h.live_leases == 0
    assert h.consistent, h.mismatches
    assert h.market_balance == 0 and h.withdrawn == h.earned > 0
    assert [x.order_id for x in h.leases] == [oid]
    data = h.to_dict()
    assert data["status"] == "EXITED" and data["leases"][0]["outcome"] == "Settled"
    _balanced(env)


def test_escrow_by_role_and_token_market(token_env: Env):
    env = token_env
    oid, _ = _settled_order(env)
    audit = _balanced(env)
    h = _auditor(env).order(oid)
    roles = audit.owed_by_role
    assert roles["operator"] == h.money.fees and roles["providers"] == h.money.paid - h.money.fees
    assert roles["buyers"] == h.money.refunded and roles["escrow"] == 0
    assert roles["stakers"] == audit.registry.owed == 2 * ETH
    assert audit.to_dict()["market"]["balanced"] is True


# ---------------------------------------------------------------------------- the checks can fail


def test_replay_catches_a_missing_or_reordered_event(env: Env):
    oid, _ = _settled_order(env)
    auditor = _auditor(env)
    auditor.sync()
    events = [e for e in auditor.indexer.events(order=oid) if e.contract == "ComputeMarket"]
    replay = replay_order(events)
    assert replay.fold.state is OrderState.SETTLED and not replay.problems
    problems = replay_order([e for e in events if e.name != "Accepted"]).problems
    assert any("illegal transition: Completed" in p for p in problems)
    assert replay_order(events[:2] + events[3:2:-1] + events[2:3]).problems


def test_an_index_that_misses_the_beginning_is_reported_not_trusted(env: Env):
    oid, _ = _settled_order(env)
    late = Auditor.open(env.chain, market_address=env.market.address,
                        start_block=env.chain.backend.block_number() - 2)  # sees Completed, Settled only
    h = late.order(oid)
    assert not h.consistent and any("illegal transition" in m for m in h.mismatches)
    audit = late.escrow()
    assert not audit.balanced and audit.market.balanced  # the books hold; the partial events do not add up
    assert any("totalFree" in m for m in audit.mismatches)


def test_unknown_order_and_provider_are_named(env: Env):
    auditor = _auditor(env)
    with pytest.raises(NotFound) as info:
        auditor.order(10**6)
    assert info.value.field == "order_id"
    with pytest.raises(InputError) as info:
        auditor.order(0)
    assert info.value.field == "order_id"
    with pytest.raises(NotFound) as info:
        auditor.provider(env.stranger.address)
    assert info.value.field == "address"
    with pytest.raises(InputError) as info:
        auditor.provider("0x1234")
    assert info.value.field == "address"


# ---------------------------------------------------------------------------- batches

BID, IH, DH = keccak(b"batch-1"), keccak(b"inputs"), keccak(b"decisions")


def _batch(env: Env) -> tuple[list[int], object]:
    """Three orders assigned by one matching batch (two with ranked backups), and its transaction."""
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    env.register(q, prices=(PRICE - 1,) * 4)  # q asks a little less
    ids = [env.open_order(b) for _ in range(3)]
    plan = [(ids[0], p.address, PRICE, [q.address]), (ids[1], q.address, PRICE - 1, [p.address]),
            (ids[2], p.address, PRICE, [])]
    return ids, env.market.assign_batch(env.orchestrator, BID, IH, DH, plan)


def test_batch_view_shows_the_record_and_every_order_it_assigned(env: Env):
    ids, tx = _batch(env)
    p, q = env.providers[0].address, env.providers[1].address
    auditor = _auditor(env)
    view = auditor.batch("0x" + BID.hex())
    assert view.consistent, view.mismatches
    block = env.chain.backend.request("eth_getBlockByNumber", [hex(tx.receipt.block_number), False])
    assert (view.block, view.tx_hash, view.timestamp) == (tx.receipt.block_number, tx.tx_hash,
                                                           int(block["timestamp"], 16))
    assert (view.inputs_hash, view.decisions_hash, view.orders) == ("0x" + IH.hex(), "0x" + DH.hex(), 3)
    assert [(a.order_id, a.provider, a.price, a.backups) for a in view.assignments] == [
        (ids[0], p, PRICE, (q,)), (ids[1], q, PRICE - 1, (p,)), (ids[2], p, PRICE, ())]
    deadlines = {e.args["order"]: e.args["acceptDeadline"] for e in tx.named("Assigned")}
    assert all(a.accept_deadline == deadlines[a.order_id] for a in view.assignments)
    assert auditor.batch(BID).to_dict() == view.to_dict()  # bytes or hex, upper or lower case
    assert auditor.batch("0x" + BID.hex().upper()).batch_id == "0x" + BID.hex()
    # each order's history names the batch that assigned it; a manual assign is a batch of one
    for oid in ids:
        h = auditor.order(oid)
        assert h.batch_id == "0x" + BID.hex() and h.to_dict()["batch"] == h.batch_id
        assert h.transitions[1].args["batchId"] == h.batch_id
    oid = env.open_order(env.buyers[0])
    assert auditor.order(oid).batch_id is None  # not assigned yet
    manual = env.market.assign(env.orchestrator, oid, p, PRICE)
    h = auditor.order(oid)
    assert h.batch_id == "0x" + manual.event("BatchCommitted").args["batchId"].hex() and h.consistent
    assert auditor.batch(h.batch_id).orders == 1


def test_an_empty_batch_and_the_batch_view_refusals(env: Env):
    tx = env.market.assign_batch(env.orchestrator, BID, IH, DH, [])
    auditor = _auditor(env)
    view = auditor.batch(BID)
    assert view.orders == 0 and view.assignments == () and view.consistent and view.tx_hash == tx.tx_hash
    with pytest.raises(NotFound) as info:
        auditor.batch(keccak(b"never committed"))
    assert info.value.field == "batch_id"
    for bad in ("0x1234", "0x" + "zz" * 32, 7, "0x" + "00" * 32):
        with pytest.raises(InputError) as info:
            auditor.batch(bad)
        assert info.value.field == "batch_id"


def test_batch_view_catches_an_assignment_outside_the_batch_transaction(env: Env):
    """The contract never lets this happen; an auditor must still notice a history that does
    (here, its own index tampered with): it reports the discrepancy instead of trusting it."""
    ids, tx = _batch(env)
    auditor = _auditor(env)
    auditor.sync()
    # forge: move one Assigned of the batch into another transaction in the index
    forged = "0x" + "ab" * 32
    row = auditor.indexer.events("ComputeMarket", "Assigned", order=ids[2])[0]
    with auditor.indexer.db:
        auditor.indexer.db.execute("UPDATE events SET tx_hash = ? WHERE block_number = ? AND log_index = ?",
                                   (forged, row.block_number, row.log_index))
    view = auditor.batch(BID)
    assert not view.consistent and any(forged in m for m in view.mismatches), view.mismatches
    assert len(view.assignments) == 3  # the receipt itself still holds all three


# ---------------------------------------------------------------------------- reorganisation


def test_a_reorganisation_leaves_one_history_without_duplicates(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    fork = env.chain.backend.snapshot()
    env.market.accept(p, oid)
    env.complete(p, oid, 60, RESULT)
    auditor = _auditor(env)
    before = auditor.order(oid)
    assert _names(before)[-2:] == ["Accepted", "Completed"]
    # the chain drops the branch and grows another, longer one in which the buyer cancels
    env.chain.backend.revert(fork)
    env.chain.writer.forget_nonces()
    env.market.cancel(b, oid)
    env.chain.backend.mine(3)
    after = auditor.order(oid)
    assert _names(after) == ["OrderPlaced", "Assigned", "Cancelled"]
    assert after.state is OrderState.CANCELLED and after.consistent, after.mismatches
    keys = [(t.block, t.log_index) for t in after.transitions]
    assert len(keys) == len(set(keys))
    for ev in auditor.indexer.events(order=oid):  # every stored event is on the canonical branch
        assert env.chain.backend.request("eth_getBlockByNumber", [hex(ev.block_number), False])["hash"] \
            == ev.block_hash
    assert auditor.escrow().balanced


# ---------------------------------------------------------------------------- API


def test_audit_api_answers_from_chain_data(env: Env):
    oid, _ = _settled_order(env)
    with TestClient(create_app(ApiState(chain=env.chain, deployment={
            "contracts": {"ComputeMarket": env.market.address, "ProviderRegistry": env.registry.address}}))) as client:
        _audit_api_answers(env, client, oid)
    with TestClient(create_app(ApiState(chain=env.chain))) as undeployed:
        resp = undeployed.get("/v1/audit/escrow")
    assert resp.status_code == 503 and resp.json()["type"] == "/problems/not-deployed"


def _audit_api_answers(env: Env, client: TestClient, oid: int) -> None:
    # the answers are the auditor's own documents: the response models add, drop and change nothing
    auditor = Auditor.open(env.chain, market_address=env.market.address)
    provider = env.providers[0].address
    assert client.get(f"/v1/audit/orders/{oid}").json() == json.loads(json.dumps(auditor.order(oid).to_dict()))
    assert client.get(f"/v1/audit/providers/{provider}").json() == \
        json.loads(json.dumps(auditor.provider(provider).to_dict()))
    auditor.close()
    body = client.get(f"/v1/audit/orders/{oid}").json()
    assert body["state"] == "SETTLED" and body["consistent"] is True
    assert [t["event"] for t in body["transitions"]] == ["OrderPlaced", "Assigned", "Accepted", "Completed", "Settled"]
    prov = client.get(f"/v1/audit/providers/{env.providers[0].address}").json()
    assert prov["leases"][0]["order"] == oid and prov["status"] == "ACTIVE"
    escrow = client.get("/v1/audit/escrow").json()
    assert escrow["balanced"] is True and escrow["market"]["held"] == escrow["from_events"]["owed"]
    missing = client.get("/v1/audit/orders/999999")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["field"] == "order_id"
    bad = client.get("/v1/audit/providers/0xnope")
    assert bad.status_code == 422 and bad.json()["field"] == "address"


def test_audit_api_batch_view(env: Env):
    ids, tx = _batch(env)
    with TestClient(create_app(ApiState(chain=env.chain, deployment={
            "contracts": {"ComputeMarket": env.market.address, "ProviderRegistry": env.registry.address}}))) as client:
        _audit_api_batch(env, client, ids, tx)


def _audit_api_batch(env: Env, client: TestClient, ids: list[int], tx) -> None:
    body = client.get(f"/v1/audit/batches/0x{BID.hex()}").json()
    assert body["batch"] == "0x" + BID.hex() and body["tx_hash"] == tx.tx_hash and body["consistent"] is True
    assert body["block"] == tx.receipt.block_number and body["orders"] == 3
    assert body["inputs_hash"] == "0x" + IH.hex() and body["decisions_hash"] == "0x" + DH.hex()
    assert [a["order"] for a in body["assignments"]] == ids
    assert body["assignments"][1] == {"order": ids[1], "provider": env.providers[1].address,
                                      "price": str(PRICE - 1), "backups": [env.providers[0].address],
                                      "accept_deadline": body["assignments"][1]["accept_deadline"],
                                      "log_index": body["assignments"][1]["log_index"]}
    assert client.get(f"/v1/audit/orders/{ids[0]}").json()["batch"] == "0x" + BID.hex()
    missing = client.get(f"/v1/audit/batches/0x{keccak(b'nope').hex()}")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["field"] == "batch_id"
    bad = client.get("/v1/audit/batches/0x1234")
    assert bad.status_code == 422 and bad.json()["field"] == "batch_id"
