"""The market contracts, transition by transition, on the embedded chain and on anvil.

Every transition is driven through the typed clients and checked three ways: the state it
leaves, the one event it emits, and the money (who may withdraw what, and the contract's
books balancing). Every revert is checked by its custom error name; every restricted
function is called by the wrong roles.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from marketplace.chain.deploy import ZERO
from marketplace.chain.intents import OrderIntent, cost, intent_digest, sign_intent
from marketplace.chain.lifecycle import TRANSITIONS, OrderState, ProviderStatus
from marketplace.chain.market import SlashReason, Unassignable, wait_until
from marketplace.errors import InputError
from tests.chain.market_env import ETH, GPU, PRICE, REQUIREMENT, Env, reverts

pytestmark = pytest.mark.parametrize("chain", ["embedded", "anvil"], indirect=True)

RESULT = keccak(b"result")


def _transitions(tx) -> list[str]:
    """The market events of ``tx`` that move orders or record batches (money events left out)."""
    return [e.name for e in tx.events if e.contract == "ComputeMarket" and
            (e.name in TRANSITIONS or e.name in ("BatchCommitted", "AssignmentSkipped"))]


# ---------------------------------------------------------------------------- registry


def test_register_stakes_and_records_the_provider(env: Env):
    p = env.providers[0]
    tx = env.register(p, stake=2 * ETH, domain=7)
    ev = tx.event("Registered")
    assert ev.args["provider"] == p.address and ev.args["stake"] == 2 * ETH and ev.args["domain"] == 7
    info = env.registry.provider(p.address)
    assert info.status is ProviderStatus.ACTIVE and info.stake == 2 * ETH and info.domain == 7
    assert info.hardware == keccak(p.address.encode()) and info.price(GPU) == PRICE
    assert env.registry.is_eligible(p.address)
    env.assert_balanced()


def test_register_refusals(env: Env):
    p = env.providers[0]
    with reverts("StakeTooLow", stake=ETH - 1, minimum=ETH):
        env.register(p, stake=ETH - 1)
    with reverts("WrongEtherAmount"):
        env.registry.contract.transact(p, "register", REQUIREMENT, 1, REQUIREMENT, [1, 1, 1, 1], ETH, value=ETH - 1)
    env.register(p)
    with reverts("AlreadyRegistered", provider=p.address):
        env.register(p)
    with pytest.raises(InputError, match="one price per device class"):
        env.registry.register(p, hardware=REQUIREMENT, domain=1, prices=[1, 2], stake=ETH)


def test_update_top_up_pause_resume(env: Env):
    p = env.providers[0]
    with reverts("WrongStatus"):
        env.registry.update(p, hardware=REQUIREMENT, domain=2, prices=[1, 2, 3, 4])
    with reverts("WrongStatus"):
        env.registry.top_up(p, ETH)
    env.register(p)
    tx = env.registry.update(p, hardware=REQUIREMENT, domain=2, prices=[1, 2, 3, 4])
    assert tuple(tx.event("Updated").args["prices"]) == (1, 2, 3, 4)
    assert env.registry.provider(p.address).prices == (1, 2, 3, 4)
    tx = env.registry.top_up(p, ETH)
    assert tx.event("StakeAdded").args["stake"] == 3 * ETH
    env.registry.pause(p)
    assert not env.registry.is_eligible(p.address)
    with reverts("WrongStatus"):
        env.registry.pause(p)
    env.registry.resume(p)
    with reverts("WrongStatus"):
        env.registry.resume(p)
    assert env.registry.is_eligible(p.address)
    with reverts("BadDeviceClass"):
        env.registry.contract.call("priceOf", p.address, 5)
    env.assert_balanced()


def test_unbonding_exit_and_withdraw(env: Env):
    p = env.providers[0]
    env.register(p, stake=2 * ETH)
    with reverts("WrongStatus"):
        env.registry.finish_unbond(p)
    tx = env.registry.begin_unbond(p)
    unbond_at = tx.event("UnbondingStarted").args["unbondAt"]
    assert not env.registry.is_eligible(p.address)
    with reverts("StillBonded", unbondAt=unbond_at):
        env.registry.finish_unbond(p)
    with reverts("NothingToWithdraw"):
        env.registry.withdraw(p)
    wait_until(env.market, unbond_at)
    tx = env.registry.finish_unbond(p)
    assert tx.event("ProviderExited").args["released"] == 2 * ETH
    info = env.registry.provider(p.address)
    assert info.status is ProviderStatus.EXITED and info.stake == 0
    with reverts("WrongStatus"):
        env.registry.top_up(p, ETH)
    before = _eth(env, p.address)
    tx = env.registry.withdraw(p)
    assert tx.event("Withdrawn").args["amount"] == 2 * ETH
    assert _eth(env, p.address) == before + 2 * ETH - tx.gas_used * tx.receipt.effective_gas_price
    with reverts("NothingToWithdraw"):
        env.registry.withdraw(p)
    env.assert_balanced()


def test_a_provider_with_a_live_lease_cannot_finish_unbonding_but_can_be_slashed(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    oid = env.running_order(b, p)
    tx = env.registry.begin_unbond(p)
    wait_until(env.market, tx.event("UnbondingStarted").args["unbondAt"])
    with reverts("LiveLeases", count=1):
        env.registry.finish_unbond(p)
    wait_until(env.market, env.market.order(oid).started_at + 60)
    tx = env.market.fail(env.orchestrator, oid)  # failure while unbonding: still slashed
    slashed = tx.event("Slashed")
    assert slashed.args["amount"] == 2 * ETH * 1000 // 10_000 and slashed.args["reason"] == SlashReason.FAILURE_MID_LEASE
    env.registry.finish_unbond(p)
    assert env.registry.released(p.address) == 2 * ETH - slashed.args["amount"]
    env.assert_balanced()


def test_registry_operator_and_market_hooks_are_restricted(env: Env):
    s = env.stranger
    for who in (s, env.operator):  # only the timelock holds the registry's OPERATOR_ROLE
        with reverts("AccessControlUnauthorizedAccount", account=who.address):
            env.registry.contract.transact(who, "setMinStake", 1)
    with reverts("AccessControlUnauthorizedAccount", account=s.address):  # a stranger cannot schedule
        env.registry.set_min_stake(s, 1)
    with reverts("SettingOutOfBounds"):  # the timelock runs the call, whose revert bubbles up
        env.registry.set_min_stake(env.operator, 10**6 * ETH + 1)
    tx = env.registry.set_min_stake(env.operator, 3 * ETH)
    assert tx.event("SettingChanged").args["newValue"] == 3 * ETH
    for who in (s, env.orchestrator):
        with reverts("NotBinder", caller=who.address):
            env.registry.contract.transact(who, "setMarket", s.address)
    with reverts("MarketAlreadySet"):
        env.registry.contract.transact(env.operator, "setMarket", s.address)
    for fn, args in (("leaseStarted", (s.address,)), ("leaseEnded", (s.address,)), ("slash", (s.address, 1, 0, 1))):
        for who in (s, env.operator, env.orchestrator):
            with reverts("NotMarket", caller=who.address):
                env.registry.contract.transact(who, fn, *args)


# ---------------------------------------------------------------------------- money in and out


def test_deposit_and_withdraw(env: Env):
    b = env.buyers[0]
    tx = env.market.deposit(b, 5 * ETH)
    assert tx.event("Deposited").args == {"account": b.address, "amount": 5 * ETH, "balance": 5 * ETH}
    with reverts("WrongEtherAmount"):
        env.market.contract.transact(b, "deposit", ETH, value=ETH + 1)
    with reverts("ZeroAmount"):
        env.market.deposit(b, 0)
    with reverts("InsufficientBalance", requested=6 * ETH, available=5 * ETH):
        env.market.withdraw(b, 6 * ETH)
    with reverts("ZeroAmount"):
        env.market.withdraw(b, 0)
    before = _eth(env, b.address)
    tx = env.market.withdraw(b, 2 * ETH)
    assert tx.event("Withdrawn").args["balance"] == 3 * ETH
    assert _eth(env, b.address) == before + 2 * ETH - tx.gas_used * tx.receipt.effective_gas_price
    env.assert_balanced()


def test_the_market_refuses_stray_ether(env: Env):
    with reverts("UnexpectedEther"):
        env.chain.writer.transact(env.stranger, to=env.market.address, value=1)


def test_a_reentrant_receiver_cannot_withdraw_twice(env: Env):
    attacker = env.chain.deploy("ReentrantReceiver", env.market.address, sender=env.stranger)
    attacker.transact(env.stranger, "fund", value=ETH)
    assert env.market.balance(attacker.address) == ETH
    held = env.market.escrow_check().held
    with reverts("TransferFailed"):  # the inner withdraw hits the guard, so the payout fails as a whole
        attacker.transact(env.stranger, "attack", ETH)
    assert env.market.balance(attacker.address) == ETH
    assert env.market.escrow_check().held == held
    env.assert_balanced()


def test_a_refusing_receiver_only_harms_itself(env: Env):
    refuser = env.chain.deploy("RefusingReceiver", sender=env.stranger)
    refuser.transact(env.stranger, "fund", env.market.address, value=ETH)
    with reverts("TransferFailed"):
        refuser.transact(env.stranger, "pull", env.market.address, ETH)
    assert env.market.balance(refuser.address) == ETH
    b = env.buyers[0]  # others are unaffected
    env.market.deposit(b, ETH)
    env.market.withdraw(b, ETH)
    env.assert_balanced()


# ---------------------------------------------------------------------------- placing orders


def test_place_order_locks_escrow(env: Env):
    b = env.buyers[0]
    it = env.intent(b, units=2, duration=1800)
    env.market.deposit(b, it.escrow() + 5)
    tx = env.market.place_tx(b, it)
    (placed,) = tx.named("OrderPlaced")
    oid = placed.args["order"]
    assert placed.args["escrow"] == cost(2, 1800, PRICE) == it.escrow()
    assert placed.args["digest"] == env.market.digest(it)
    o = env.market.order(oid)
    assert o.state is OrderState.OPEN and o.buyer == b.address and o.escrow == it.escrow() and o.units == 2
    assert o.requirement == REQUIREMENT and o.device_class == GPU
    assert env.market.balance(b.address) == 5 and env.market.nonce(b.address) == 1
    env.assert_balanced()


def test_python_and_contract_agree_on_the_intent_digest(env: Env):
    it = env.intent(env.buyers[0], units=3, tier=0, nonce=17, deadline=2**40)
    assert env.market.contract.call("intentDigest", it.as_tuple()) == intent_digest(env.market.domain, it)
    assert env.market.contract.call("domainSeparator") == env.market.domain.separator()


def test_place_order_refusals(env: Env):
    b, other = env.buyers[0], env.buyers[1]
    env.market.deposit(b, ETH)
    with reverts("NotBuyer", buyer=other.address, caller=b.address):
        env.market.place(b, env.intent(other))
    with reverts("BadNonce", expected=0, got=5):
        env.market.place(b, env.intent(b, nonce=5))
    with reverts("IntentExpired"):
        env.market.place(b, env.intent(b, deadline=env.market.chain_time() - 1))
    for field, kw in ((0, {"units": 0}), (1, {"duration": 0}), (1, {"duration": 366 * 86400 + 1}),
                      (3, {"max_price": 0})):  # IComputeMarket.OrderField: Units, Duration, DeviceClass, MaxPrice
        with reverts("InvalidOrder", field=field):
            env.market.place(b, env.intent(b, **kw))
    for dc in (0, 5):
        it = OrderIntent(b.address, REQUIREMENT, dc, 1, 60, PRICE, 0, 0, env.market.chain_time() + 60)
        with reverts("InvalidOrder"):
            env.market.place(b, it)
    with reverts("InsufficientDeposit", needed=cost(1, 3600 * 2000, PRICE * 1000), available=ETH):
        env.market.place(b, env.intent(b, duration=3600 * 2000, max_price=PRICE * 1000))
    if env.market.contract.call("tierGate") == ZERO:
        with reverts("TiersDisabled"):
            env.market.place(b, env.intent(b, tier=1))
    with pytest.raises(InputError, match="units"):
        env.intent(b, units=-1)
    assert env.market.nonce(b.address) == 0 and env.market.order_count == 0
    env.assert_balanced()


def test_signed_intents_are_placed_by_the_orchestrator_and_cannot_be_replayed(env: Env):
    b = env.buyers[0]
    env.market.deposit(b, ETH)
    it = env.intent(b)
    sig = env.market.sign(b, it)
    with reverts("NotOrchestrator", caller=env.stranger.address):
        env.market.place_signed(env.stranger, it, sig)
    tx = env.market.place_signed(env.orchestrator, it, sig)
    assert tx.event("OrderPlaced").args["buyer"] == b.address
    with reverts("BadNonce", expected=1, got=0):  # the same signature again
        env.market.place_signed(env.orchestrator, it, sig)


def test_a_signature_binds_every_field_the_chain_and_the_contract(env: Env):
    b = env.buyers[0]
    env.market.deposit(b, ETH)
    it = env.intent(b)
    good = env.market.sign(b, it)
    # any field changed after signing
    forged = OrderIntent(**{**it.__dict__, "max_price": it.max_price * 2})
    with reverts("BadSignature", buyer=b.address):
        env.market.place_signed(env.orchestrator, forged, good)
    # signed by someone else for this buyer
    v, r, s = env.stranger.sign_digest(env.market.digest(it))
    with reverts("BadSignature", buyer=b.address):
        env.market.place_signed(env.orchestrator, it, r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v]))
    # signed for another chain, or for another market contract
    for domain in (type(env.market.domain)(1, env.market.address),
                   type(env.market.domain)(env.market.domain.chain_id, env.registry.address)):
        with reverts("BadSignature"):
            env.market.place_signed(env.orchestrator, it, sign_intent(b, domain, it))
    with reverts("BadSignature"):
        env.market.place_signed(env.orchestrator, it, good[:64])
    with pytest.raises(InputError):
        sign_intent(env.stranger, env.market.domain, it)
    env.market.place_signed(env.orchestrator, it, good)


def test_signed_batch_is_all_or_nothing(env: Env):
    b1, b2 = env.buyers[0], env.buyers[1]
    env.market.deposit(b1, ETH)
    env.market.deposit(b2, ETH)
    i1 = env.intent(b1)
    i2 = env.intent(b2)
    i1b = env.intent(b1, nonce=1)
    signed = [(i, env.market.sign(s, i), b"") for i, s in ((i1, b1), (i2, b2), (i1b, b1))]
    bad = signed[:2] + [(i1b, signed[0][1], b"")]
    with reverts("BadSignature"):
        env.market.place_signed_batch(env.orchestrator, bad)
    assert env.market.order_count == 0
    with reverts("LengthMismatch"):
        env.market.contract.transact(env.orchestrator, "placeSignedOrders", [i1.as_tuple()], [], [])
    ids = env.market.place_signed_batch(env.orchestrator, signed)
    assert ids == [1, 2, 3]
    assert [env.market.order(i).buyer for i in ids] == [b1.address, b2.address, b1.address]
    env.assert_balanced()


# ---------------------------------------------------------------------------- the happy path


def test_full_lifecycle_pays_provider_operator_and_refunds_buyer(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b, units=1, duration=3600)
    escrow = env.market.order(oid).escrow
    tx = env.market.assign(env.orchestrator, oid, p.address, PRICE, [env.providers[1].address])
    assert _transitions(tx) == ["Assigned", "BatchCommitted"]  # a manual assignment is a batch of one
    assert tx.event("Assigned").args["backups"] == [env.providers[1].address]
    assert tx.event("Assigned").args["batchId"] == tx.event("BatchCommitted").args["batchId"]
    assert env.registry.provider(p.address).live_leases == 1
    tx = env.market.accept(p, oid)
    assert _transitions(tx) == ["Accepted"] and env.market.state(oid) is OrderState.RUNNING
    tx = env.complete(p, oid, 1800, RESULT)
    assert _transitions(tx) == ["Completed"] and tx.event("Completed").args["result"] == RESULT
    o = env.market.order(oid)
    with reverts("DisputeWindowOpen", until=o.completed_at + 300):
        env.market.settle(env.stranger, oid)
    wait_until(env.market, o.completed_at + 300)
    tx = env.market.settle(env.stranger, oid)  # anyone may settle
    assert _transitions(tx) == ["Settled"]
    pay = cost(1, 1800, PRICE)
    fee = pay * 200 // 10_000
    assert tx.event("Settled").args == {"order": oid, "provider": p.address, "paid": pay, "fee": fee,
                                        "refund": escrow - pay}
    assert env.market.balance(p.address) == pay - fee
    assert env.market.balance(env.operator.address) == fee
    assert env.market.balance(b.address) == escrow - pay
    assert env.market.state(oid) is OrderState.SETTLED
    assert env.registry.provider(p.address).live_leases == 0
    with reverts("WrongState", expected=OrderState.COMPLETED):
        env.market.settle(env.stranger, oid)
    env.market.withdraw(p)
    env.market.withdraw(b)
    env.market.withdraw(env.operator)
    assert env.market.escrow_check().held == 0
    env.assert_balanced()


def test_assign_refusals(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    for who in (env.stranger, b, p, env.operator, env.arbiter):
        with reverts("NotOrchestrator", caller=who.address):
            env.market.assign(who, oid, p.address, PRICE)
    for reason, args in (("provider-ineligible", (oid, q.address, PRICE)),  # not registered
                         ("price-above-ceiling", (oid, p.address, PRICE + 1)),
                         ("price-below-ask", (oid, p.address, PRICE - 1)),
                         ("zero-provider", (oid, ZERO, PRICE)),
                         ("order-not-open", (99, p.address, PRICE))):
        with pytest.raises(Unassignable) as info:
            env.market.assign(env.orchestrator, *args)
        assert info.value.fields["reason"] == reason
    with pytest.raises(InputError, match="at most 8"):
        env.market.assign(env.orchestrator, oid, p.address, PRICE, [q.address] * 9)
    env.registry.pause(p)
    with pytest.raises(Unassignable, match="provider-ineligible"):
        env.market.assign(env.orchestrator, oid, p.address, PRICE)
    env.registry.resume(p)
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    with pytest.raises(Unassignable, match="order-not-open"):
        env.market.assign(env.orchestrator, oid, p.address, PRICE)
    assert env.market.state(oid) is OrderState.ASSIGNED


BID, IH, DH = keccak(b"batch-1"), keccak(b"inputs"), keccak(b"decisions")


def test_assign_batch_records_the_batch_and_names_it_in_every_assignment(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    env.register(q)
    ids = [env.open_order(b) for _ in range(3)]
    tx = env.market.assign_batch(env.orchestrator, BID, IH, DH,
                                 [(i, p.address if i % 2 else q.address, PRICE, [q.address] if i % 2 else ())
                                  for i in ids])
    # one transaction: each order's assignment naming the batch, then the batch with its count
    assert _transitions(tx) == ["Assigned", "Assigned", "Assigned", "BatchCommitted"]
    assert tx.event("BatchCommitted").args == {"batchId": BID, "inputsHash": IH, "decisionsHash": DH, "orders": 3}
    assigned = tx.named("Assigned")
    assert [e.args["order"] for e in assigned] == ids
    assert all(e.args["batchId"] == BID for e in assigned)
    assert assigned[0].args["backups"] == [q.address] and assigned[1].args["backups"] == []
    assert all(env.market.state(i) is OrderState.ASSIGNED for i in ids)
    assert env.registry.provider(p.address).live_leases == 2
    rec = env.market.batch(BID)
    assert rec is not None and (rec.inputs_hash, rec.decisions_hash, rec.orders) == (IH, DH, 3)
    assert rec.block == tx.receipt.block_number
    assert env.market.batch(keccak(b"never")) is None
    env.assert_balanced()


def test_assign_batch_refusals_leave_nothing_behind(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    ids = [env.open_order(b) for _ in range(2)]
    good = [(i, p.address, PRICE, ()) for i in ids]
    with reverts("LengthMismatch"):
        env.market.contract.transact(env.orchestrator, "assignBatch", BID, IH, DH, [1], [], [], [])
    with reverts("ZeroBatchId"):
        env.market.assign_batch(env.orchestrator, b"\x00" * 32, IH, DH, good)
    for who in (env.stranger, b, p, env.operator):
        with reverts("NotOrchestrator", caller=who.address):
            env.market.assign_batch(who, BID, IH, DH, good)
    with pytest.raises(InputError, match="at most 8"):
        env.market.assign_batch(env.orchestrator, BID, IH, DH, [(ids[0], p.address, PRICE, [q.address] * 9)])
    with pytest.raises(InputError, match="batch_id"):
        env.market.assign_batch(env.orchestrator, "0xzz", IH, DH, good)
    env.market.pause(env.operator)
    with reverts("EnforcedPause"):
        env.market.assign_batch(env.orchestrator, BID, IH, DH, good)
    env.market.unpause(env.operator)
    assert env.market.batch(BID) is None and env.registry.provider(p.address).live_leases == 0
    env.market.assign_batch(env.orchestrator, BID, IH, DH, [good[0]])
    # a batch id is spent once, whatever the second call would assign
    with reverts("BatchExists", batchId=BID):
        env.market.assign_batch(env.orchestrator, BID, IH, DH, [good[1]])
    assert env.market.state(ids[1]) is OrderState.OPEN
    env.assert_balanced()


def test_an_empty_round_is_recorded_with_no_orders(env: Env):
    tx = env.market.assign_batch(env.orchestrator, BID, IH, DH, [])
    assert _transitions(tx) == ["BatchCommitted"] and tx.event("BatchCommitted").args["orders"] == 0
    rec = env.market.batch(BID)
    assert rec is not None and rec.orders == 0 and rec.block == tx.receipt.block_number
    with reverts("BatchExists"):
        env.market.assign_batch(env.orchestrator, BID, IH, DH, [])


def test_accept_and_complete_refusals(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    oid = env.open_order(b, units=2, duration=600)
    with reverts("WrongState", actual=OrderState.OPEN, expected=OrderState.ASSIGNED):
        env.market.accept(p, oid)
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    for who in (q, b, env.orchestrator):
        with reverts("NotAssignedProvider", caller=who.address):
            env.market.accept(who, oid)
    with reverts("WrongState"):
        env.market.complete(p, oid, RESULT, 1)
    env.market.accept(p, oid)
    with reverts("NotAssignedProvider"):
        env.market.complete(q, oid, RESULT, 1)
    wait_until(env.market, env.market.order(oid).started_at + 5000)  # long after the lease's 600 s
    with reverts("UsageTooHigh", usage=1201, maximum=1200):
        env.market.complete(p, oid, RESULT, 1201)
    env.market.complete(p, oid, RESULT, 1200)


def test_accepting_after_the_deadline_is_refused(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    deadline = env.market.order(oid).accept_deadline
    wait_until(env.market, deadline + 1)
    with reverts("AcceptanceExpired", deadline=deadline):
        env.market.accept(p, oid)


# ---------------------------------------------------------------------------- cancel


def test_cancel_open_and_assigned_orders_refunds_everything(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    escrow = env.market.order(oid).escrow
    with reverts("NotOrderOwner", caller=env.stranger.address):
        env.market.cancel(env.stranger, oid)
    with reverts("NotOrderOwner"):
        env.market.cancel(env.orchestrator, oid)
    tx = env.market.cancel(b, oid)
    assert _transitions(tx) == ["Cancelled"] and tx.event("Cancelled").args["refund"] == escrow
    assert env.market.balance(b.address) == escrow
    with reverts("WrongState", actual=OrderState.CANCELLED):
        env.market.cancel(b, oid)

    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    env.market.cancel(b, oid)
    assert env.registry.provider(p.address).live_leases == 0
    with reverts("NoSuchOrder"):
        env.market.cancel(b, 999)
    env.assert_balanced()


def test_a_running_order_cannot_be_cancelled(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.running_order(b, p)
    with reverts("WrongState", actual=OrderState.RUNNING, expected=OrderState.OPEN):
        env.market.cancel(b, oid)


# ---------------------------------------------------------------------------- acceptance timeout


def test_acceptance_timeout_slashes_and_moves_to_the_next_eligible_backup(env: Env):
    p, q, r, b = *env.providers, env.buyers[0]
    for x in (p, q, r):
        env.register(x, stake=2 * ETH)
    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, p.address, PRICE, [q.address, r.address])
    deadline = env.market.order(oid).accept_deadline
    with reverts("AcceptanceNotExpired", deadline=deadline):
        env.market.timeout_acceptance(env.stranger, oid)
    env.registry.pause(q)  # the first backup is no longer eligible: skipped
    wait_until(env.market, deadline + 1)
    tx = env.market.timeout_acceptance(env.stranger, oid)
    assert _transitions(tx) == ["AcceptanceTimedOut"]
    ev = tx.event("AcceptanceTimedOut")
    assert ev.args["late"] == p.address and ev.args["next"] == r.address and ev.args["refund"] == 0
    assert ev.args["price"] == PRICE  # the backup's own ask
    slashed = tx.event("Slashed")
    assert slashed.args["reason"] == SlashReason.MISSED_ACCEPTANCE and slashed.args["amount"] == 2 * ETH * 500 // 10_000
    # the buyer has paid nothing for this order yet, so it lost nothing: the whole slice is burned
    assert ev.args["compensation"] == 0 and tx.event("Burned").args["amount"] == slashed.args["amount"]
    assert env.market.balance(b.address) == 0
    o = env.market.order(oid)
    assert o.state is OrderState.ASSIGNED and o.provider == r.address and o.accept_deadline > deadline
    assert env.registry.provider(p.address).live_leases == 0
    assert env.registry.provider(r.address).live_leases == 1
    env.market.accept(r, oid)
    env.assert_balanced()


def test_acceptance_timeout_without_backup_refunds_the_buyer(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    oid = env.open_order(b)
    escrow = env.market.order(oid).escrow
    env.market.assign(env.orchestrator, oid, p.address, PRICE)
    wait_until(env.market, env.market.order(oid).accept_deadline + 1)
    tx = env.market.timeout_acceptance(env.buyers[1], oid)
    ev = tx.event("AcceptanceTimedOut")
    assert ev.args["next"] == ZERO and ev.args["refund"] == escrow
    assert env.market.state(oid) is OrderState.REFUNDED
    assert env.market.balance(b.address) == escrow + ev.args["compensation"] == escrow
    with reverts("WrongState"):
        env.market.timeout_acceptance(env.stranger, oid)
    env.assert_balanced()


# ---------------------------------------------------------------------------- failure mid-lease


def test_failure_pays_pro_rata_slashes_and_reassigns_the_rest(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p, stake=2 * ETH)
    env.register(q, stake=2 * ETH)
    oid = env.running_order(b, p, backups=[q], units=2, duration=3600)
    escrow = env.market.order(oid).escrow
    started = env.market.order(oid).started_at
    wait_until(env.market, started + 600)
    for who in (env.stranger, b, p, env.operator):
        with reverts("NotOrchestrator"):
            env.market.fail(who, oid)
    tx = env.market.fail(env.orchestrator, oid)
    assert _transitions(tx) == ["OrderFailed"]
    ev = tx.event("OrderFailed").args
    served = ev["served"]
    assert 600 <= served <= 610
    assert ev["paid"] == cost(2, served, PRICE) and ev["fee"] == ev["paid"] * 200 // 10_000
    slashed = tx.event("Slashed").args["amount"]
    assert slashed == 2 * ETH * 1000 // 10_000 and ev["next"] == q.address and ev["refund"] == 0
    # the buyer is compensated for what it paid for the lost segment, the rest of the slice is burned
    assert ev["compensation"] == ev["paid"] and tx.event("Burned").args["amount"] == slashed - ev["paid"]
    assert env.market.balance(p.address) == ev["paid"] - ev["fee"]
    assert env.market.balance(b.address) == ev["compensation"]
    o = env.market.order(oid)
    assert o.state is OrderState.ASSIGNED and o.provider == q.address and o.served == served
    assert o.escrow == escrow - ev["paid"]
    env.market.accept(q, oid)
    wait_until(env.market, env.market.order(oid).started_at + 3600)
    with reverts("UsageTooHigh", maximum=2 * (3600 - served)):  # only the remaining time can be billed
        env.market.complete(q, oid, RESULT, 2 * (3600 - served) + 1)
    env.market.complete(q, oid, RESULT, 2 * (3600 - served))
    wait_until(env.market, env.market.order(oid).completed_at + 300)
    tx = env.market.settle(env.stranger, oid)
    settled = tx.event("Settled").args
    assert settled["paid"] + settled["refund"] == o.escrow
    env.assert_balanced()


def test_failure_without_backup_refunds_the_remainder(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    oid = env.running_order(b, p, tier=0)
    escrow = env.market.order(oid).escrow
    wait_until(env.market, env.market.order(oid).started_at + 100)
    ev = env.market.fail(env.orchestrator, oid).event("OrderFailed").args
    assert ev["next"] == ZERO and ev["refund"] == escrow - ev["paid"]
    assert env.market.state(oid) is OrderState.REFUNDED
    assert env.registry.provider(p.address).live_leases == 0
    with reverts("WrongState"):
        env.market.fail(env.orchestrator, oid)
    env.assert_balanced()


def test_failure_after_the_whole_duration_pays_in_full_and_does_not_reassign(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    env.register(q)
    oid = env.running_order(b, p, backups=[q], duration=60)
    wait_until(env.market, env.market.order(oid).started_at + 500)
    ev = env.market.fail(env.orchestrator, oid).event("OrderFailed").args
    assert ev["served"] == 60 and ev["next"] == ZERO and ev["refund"] == 0
    env.assert_balanced()


# ---------------------------------------------------------------------------- disputes


def _completed(env: Env, usage: int = 1800) -> tuple[int, int]:
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    oid = env.running_order(b, p)
    env.complete(p, oid, usage, RESULT)
    return oid, env.market.order(oid).escrow


def test_dispute_and_resolve_with_a_split_and_a_slash(env: Env):
    oid, escrow = _completed(env)
    p, b = env.providers[0], env.buyers[0]
    with reverts("NotOrderOwner"):
        env.market.dispute(p, oid)
    tx = env.market.dispute(b, oid)
    assert _transitions(tx) == ["Disputed"]
    with reverts("WrongState"):
        env.market.settle(env.stranger, oid)
    for who in (env.stranger, b, p, env.orchestrator, env.operator):
        with reverts("NotArbiter", caller=who.address):
            env.market.resolve(who, oid, 0)
    maximum = cost(1, 1800, PRICE)
    with reverts("SplitTooLarge", amount=maximum + 1, maximum=maximum):
        env.market.resolve(env.arbiter, oid, maximum + 1)
    tx = env.market.resolve(env.arbiter, oid, maximum // 2, ETH // 10)
    assert _transitions(tx) == ["Resolved"]
    ev = tx.event("Resolved").args
    fee = (maximum // 2) * 200 // 10_000
    # the buyer paid maximum // 2 for a result it disputed: that much of the slash is its compensation
    assert ev == {"order": oid, "provider": p.address, "paid": maximum // 2, "fee": fee,
                  "refund": escrow - maximum // 2, "compensation": maximum // 2}
    assert tx.event("Slashed").args["reason"] == SlashReason.LOST_DISPUTE
    assert tx.event("Burned").args["amount"] == ETH // 10 - maximum // 2
    assert env.market.balance(b.address) == escrow
    assert env.market.balance(p.address) == maximum // 2 - fee
    assert env.registry.provider(p.address).stake == 2 * ETH - ETH // 10
    assert env.registry.provider(p.address).live_leases == 0
    assert env.market.state(oid) is OrderState.RESOLVED
    env.assert_balanced()


def test_dispute_window_closes(env: Env):
    oid, _ = _completed(env)
    until = env.market.order(oid).completed_at + 300
    wait_until(env.market, until)
    with reverts("DisputeWindowClosed", closedAt=until):
        env.market.dispute(env.buyers[0], oid)
    env.market.settle(env.buyers[0], oid)


def test_an_arbiter_slash_is_capped_by_the_terms(env: Env):
    oid, escrow = _completed(env)
    env.market.dispute(env.buyers[0], oid)
    cap = 2 * ETH * env.market.terms().dispute_slash_bps // 10_000
    with reverts("SlashTooLarge", amount=cap + 1, maximum=cap):
        env.market.resolve(env.arbiter, oid, 0, cap + 1)
    tx = env.market.resolve(env.arbiter, oid, 0, cap)
    ev = tx.event("Resolved").args
    assert ev["compensation"] == 0 and ev["refund"] == escrow and tx.event("Burned").args["amount"] == cap
    assert env.registry.provider(env.providers[0].address).stake == 2 * ETH - cap
    env.assert_balanced()


# ---------------------------------------------------------------------------- operator


def test_terms_change_within_bounds_only_through_the_timelock(env: Env):
    tx = env.market.set_terms(env.operator, fee_bps=300)
    assert tx.event("SettingsChanged").args["version"] == 2 and env.market.settings()["feeBps"] == 300
    # IComputeMarket.Setting, with (lowest, highest)
    bounds = {"fee_bps": (0, 0, 1000), "miss_slash_bps": (1, 0, 1000), "fail_slash_bps": (2, 0, 2000),
              "dispute_slash_bps": (3, 0, 5000), "accept_window": (4, 30, 86400),
              "dispute_window": (5, 60, 30 * 86400), "arbitration_window": (6, 60, 30 * 86400),
              "run_grace": (7, 60, 7 * 86400)}
    timelock = env.market.timelock
    for name, (code, lo, hi) in bounds.items():
        for bad in (hi + 1, lo - 1) if lo > 0 else (hi + 1,):
            with reverts("SettingOutOfBounds", setting=code, value=bad, min=lo, max=hi):  # bubbles up the timelock
                env.market.set_terms(env.operator, **{name: bad})
        env.market.set_terms(env.operator, **{name: hi})
    assert timelock.min_delay == 0  # a local development chain applies a change at once
    with pytest.raises(InputError, match="unknown market terms"):
        env.market.set_terms(env.operator, bogus=1)
    for who in (env.operator, env.orchestrator, env.arbiter, env.stranger):  # only the timelock may, directly
        with reverts("NotAdmin", caller=who.address):
            env.market.contract.transact(who, "setSettings", env.market.terms().as_tuple())


def test_pause_stops_new_business_but_not_withdrawals(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    env.market.deposit(b, ETH)
    with reverts("NotOperator", caller=env.stranger.address):
        env.market.pause(env.stranger)
    env.market.pause(env.operator)
    with reverts("EnforcedPause"):
        env.market.place(b, env.intent(b))
    with reverts("EnforcedPause"):
        env.market.assign(env.orchestrator, oid, p.address, PRICE)
    env.market.withdraw(b, ETH)  # money can always leave
    env.market.cancel(b, oid)
    env.market.unpause(env.operator)
    env.open_order(b)


# ---------------------------------------------------------------------------- token settlement


def test_token_lifecycle_and_asset_rules(token_env: Env):
    env = token_env
    p, b = env.providers[0], env.buyers[0]
    token = env.market.token
    assert token is not None and env.market.contract.call("asset") == token.address
    with reverts("EtherNotAccepted"):
        env.market.contract.transact(b, "deposit", ETH, value=ETH)
    with reverts("ERC20InsufficientAllowance"):
        env.market.contract.transact(b, "deposit", ETH)
    env.register(p, stake=2 * ETH)
    assert token.call("balanceOf", env.registry.address) == 2 * ETH
    oid = env.running_order(b, p, backups=[])
    escrow = env.market.order(oid).escrow
    env.complete(p, oid, 3600, RESULT)
    wait_until(env.market, env.market.order(oid).completed_at + 300)
    ev = env.market.settle(env.stranger, oid).event("Settled").args
    assert ev["paid"] == escrow and ev["refund"] == 0
    before = token.call("balanceOf", p.address)
    env.market.withdraw(p)
    assert token.call("balanceOf", p.address) == before + escrow - ev["fee"]
    # a slash moves tokens from the registry to the market
    oid = env.running_order(b, p)
    slashed = env.market.fail(env.orchestrator, oid).event("Slashed").args["amount"]
    assert slashed > 0 and token.call("balanceOf", env.registry.address) == 2 * ETH - slashed
    env.assert_balanced()


def _eth(env: Env, address: str) -> int:
    return int(env.chain.backend.request("eth_getBalance", [address, "latest"]), 16)
