"""What no role can take, and that no money stays locked: one test per finding of the contracts' review.

Each F-test (F1-F8) and each low finding's test failed on the contracts before this design and
passes now; the tests of missing behaviours pin behaviour that was already right. docs/trust.md
names, for every role, the worst it can do to each other role and the test here that bounds it.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from marketplace.chain.deploy import ZERO, MarketParams, check_delay, deploy_market
from marketplace.chain.intents import OrderIntent
from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import Market, Unassignable, cost, wait_until
from marketplace.chain.timelock import MIN_PRODUCTION_DELAY, Change, ChangePending, Timelock
from marketplace.errors import ConfigError, TransactionReverted
from tests.chain.market_env import ETH, PARAMS, PRICE, REQUIREMENT, Env, reverts

pytestmark = pytest.mark.parametrize("chain", ["embedded", "anvil"], indirect=True)

RESULT = keccak(b"result")


def _running(env: Env, *, units: int = 1, duration: int = 3600, backups=()) -> tuple[int, object]:
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    for q in backups:
        env.register(q, stake=2 * ETH)
    return env.running_order(b, p, backups=backups, units=units, duration=duration), p


# ---------------------------------------------------------------------------- F1 .. F8


def test_F1_complete_cannot_claim_more_than_the_time_elapsed(env: Env):
    oid, p = _running(env, units=2, duration=3600)
    with reverts("UsageTooHigh", usage=2 * 3600):  # accepted a moment ago: the whole lease is not earned
        env.market.complete(p, oid, RESULT, 2 * 3600)
    started = env.market.order(oid).started_at
    wait_until(env.market, started + 600)
    cap = env.market.max_usage(oid)
    assert 2 * 600 <= cap <= 2 * 610  # units x seconds elapsed
    with reverts("UsageTooHigh"):
        env.market.complete(p, oid, RESULT, 2 * 700)
    env.market.complete(p, oid, RESULT, cap)
    assert env.market.order(oid).usage == cap


def test_F2_a_completion_racing_a_failure_report_becomes_a_dispute(env: Env):
    oid, p = _running(env)
    wait_until(env.market, env.market.order(oid).started_at + 300)
    # the provider sees the orchestrator's fail() coming and completes first, claiming all it can
    env.market.complete(p, oid, RESULT, env.market.max_usage(oid))
    tx = env.market.fail(env.orchestrator, oid)  # does not revert: the report stands
    assert tx.event("Disputed").args["by"] == env.orchestrator.address
    assert env.market.state(oid) is OrderState.DISPUTED
    assert env.market.balance(p.address) == 0  # nothing paid while the arbiter decides
    with reverts("WrongState"):
        env.market.settle(env.stranger, oid)
    # the arbiter finds for the buyer: no pay, a slash (capped), compensation up to what the buyer paid
    tx = env.market.resolve(env.arbiter, oid, 0, 2 * ETH * env.market.terms().dispute_slash_bps // 10_000)
    assert tx.event("Resolved").args["paid"] == 0 and env.market.balance(p.address) == 0


def test_F3_terms_are_fixed_per_order_when_it_is_placed(env: Env):
    oid, p = _running(env)
    o = env.market.order(oid)
    old = env.market.terms(o.terms)
    # the operator shortens the dispute window and raises the fee for new orders
    env.market.set_terms(env.operator, dispute_window=60, fee_bps=1000)
    assert env.market.terms().dispute_window == 60 and env.market.order(oid).terms == o.terms
    wait_until(env.market, o.started_at + 100)
    env.market.complete(p, oid, RESULT, 100)
    completed = env.market.order(oid).completed_at
    wait_until(env.market, completed + 61)
    env.market.dispute(env.buyers[0], oid)  # the order's own window (300 s) is still open
    env.market.resolve(env.arbiter, oid, cost(1, 100, PRICE), 0)
    paid = cost(1, 100, PRICE)
    assert env.market.balance(p.address) == paid - paid * old.fee_bps // 10_000  # at the order's own fee


def test_F3_the_dispute_window_cannot_be_set_to_zero(env: Env):
    with reverts("SettingOutOfBounds", setting=5, value=0, min=60):
        env.market.set_terms(env.operator, dispute_window=0)


def test_F4_a_running_lease_past_its_end_can_be_expired_by_anyone(env: Env):
    oid, p = _running(env, duration=600, backups=())
    o = env.market.order(oid)
    grace = env.market.terms(o.terms).run_grace
    with reverts("LeaseNotOver", until=o.started_at + 600 + grace):
        env.market.expire(env.stranger, oid)
    env.registry.begin_unbond(p)  # the provider wants out: its live lease must not lock it forever
    wait_until(env.market, o.started_at + 600 + grace + 1)
    tx = env.market.expire(env.stranger, oid)
    ev = tx.event("Expired").args
    assert ev["refund"] == o.escrow and ev["compensation"] == 0  # nothing was paid, all escrow back
    assert env.market.state(oid) is OrderState.REFUNDED
    assert env.registry.provider(p.address).live_leases == 0
    wait_until(env.market, env.registry.provider(p.address).unbond_at)
    env.registry.finish_unbond(p)  # no longer locked
    env.assert_balanced()


def test_F5_a_dispute_the_arbiter_ignores_lapses_to_settlement(env: Env):
    oid, p = _running(env)
    wait_until(env.market, env.market.order(oid).started_at + 900)
    env.market.complete(p, oid, RESULT, 900)
    tx = env.market.dispute(env.buyers[0], oid)
    o = env.market.order(oid)
    window = env.market.terms(o.terms).arbitration_window
    with reverts("ArbitrationOpen", until=o.disputed_at + window):
        env.market.lapse(env.stranger, oid)
    wait_until(env.market, o.disputed_at + window + 1)
    ev = env.market.lapse(env.stranger, oid).event("DisputeLapsed").args
    assert ev["paid"] == cost(1, 900, PRICE) and ev["refund"] == o.escrow - ev["paid"]
    assert env.market.state(oid) is OrderState.RESOLVED and env.registry.provider(p.address).live_leases == 0
    assert tx.event("Disputed").args["by"] == env.buyers[0].address
    env.assert_balanced()


def test_F6_a_batch_skips_orders_no_longer_assignable_instead_of_reverting(env: Env):
    p, q, b = env.providers[0], env.providers[1], env.buyers[0]
    env.register(p)
    env.register(q)
    ids = [env.open_order(b) for _ in range(3)]
    env.market.cancel(b, ids[0])  # the buyer cancels just before the round lands
    env.registry.pause(q)  # and a provider pauses
    bid = keccak(b"round")
    tx = env.market.assign_batch(env.orchestrator, bid, keccak(b"i"), keccak(b"d"),
                                 [(ids[0], p.address, PRICE, ()), (ids[1], q.address, PRICE, ()),
                                  (ids[2], p.address, PRICE, ())])
    skipped = {e.args["order"]: e.args["reason"] for e in tx.named("AssignmentSkipped")}
    assert skipped == {ids[0]: 1, ids[1]: 5}  # IComputeMarket.Reason: OrderNotOpen, ProviderIneligible
    assert tx.event("BatchCommitted").args["orders"] == 1 and env.market.batch(bid).orders == 1
    assert env.market.state(ids[2]) is OrderState.ASSIGNED and env.market.state(ids[1]) is OrderState.OPEN


def test_F7_an_assignment_below_the_providers_ask_is_refused(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p, prices=(PRICE // 2,) * 4)
    oid = env.open_order(b)
    with pytest.raises(Unassignable, match="price-below-ask"):
        env.market.assign(env.orchestrator, oid, p.address, 1)  # 1 wei per unit-hour
    env.market.assign(env.orchestrator, oid, p.address, PRICE // 2)
    assert env.market.order(oid).price == PRICE // 2


def test_F7_a_backup_takes_over_at_its_own_ask(env: Env):
    p, q, r, b = *env.providers, env.buyers[0]
    env.register(p)
    env.register(q, prices=(PRICE * 2,) * 4)  # asks more than the buyer's ceiling: never handed the lease
    env.register(r, prices=(PRICE // 4,) * 4)
    oid = env.open_order(b)
    env.market.assign(env.orchestrator, oid, p.address, PRICE, [q.address, r.address])
    wait_until(env.market, env.market.order(oid).accept_deadline + 1)
    ev = env.market.timeout_acceptance(env.stranger, oid).event("AcceptanceTimedOut").args
    assert ev["next"] == r.address and ev["price"] == PRICE // 4
    assert env.market.order(oid).price == PRICE // 4


def test_F8_an_arbiter_slash_is_capped_per_dispute(env: Env):
    oid, p = _running(env)
    wait_until(env.market, env.market.order(oid).started_at + 60)
    env.market.complete(p, oid, RESULT, 60)
    env.market.dispute(env.buyers[0], oid)
    cap = 2 * ETH * env.market.terms().dispute_slash_bps // 10_000
    assert cap < 2 * ETH
    with reverts("SlashTooLarge", amount=2 * ETH, maximum=cap):
        env.market.resolve(env.arbiter, oid, 0, 2 * ETH)  # all of the stake, as before the cap
    env.market.resolve(env.arbiter, oid, 0, cap)
    assert env.registry.provider(p.address).stake == 2 * ETH - cap


def test_F8_a_failure_slash_is_capped_and_pays_the_buyer_no_more_than_it_lost(env: Env):
    env.market.set_terms(env.operator, fail_slash_bps=2000)
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    oid = env.running_order(b, p, tier=0)
    wait_until(env.market, env.market.order(oid).started_at + 60)
    tx = env.market.fail(env.orchestrator, oid)
    ev, taken = tx.event("OrderFailed").args, tx.event("Slashed").args["amount"]
    assert taken == 2 * ETH * 2000 // 10_000  # at most MAX_FAIL_SLASH_BPS, whatever the tier
    assert ev["compensation"] == ev["paid"]  # the buyer gets back what it paid for the lost time...
    assert tx.event("Burned").args["amount"] == taken - ev["paid"]  # ...and the rest is burned
    assert env.market.contract.call("totalBurned") == taken - ev["paid"]
    env.market.burn(env.stranger)
    assert env.market.contract.call("totalBurned") == 0
    env.assert_balanced()


def test_F8_a_refused_lease_pays_the_buyer_nothing_beyond_its_loss(env: Env):
    """The slashing farm of the review: an order nobody serves, refused by provider after provider."""
    p, q, r, b = *env.providers, env.buyers[0]
    for x in (p, q, r):
        env.register(x, stake=2 * ETH)
    oid = env.open_order(b, duration=60)
    escrow = env.market.order(oid).escrow
    env.market.assign(env.orchestrator, oid, p.address, PRICE, [q.address, r.address])
    for _ in range(3):
        wait_until(env.market, env.market.order(oid).accept_deadline + 1)
        env.market.timeout_acceptance(env.stranger, oid)
    assert env.market.state(oid) is OrderState.REFUNDED
    assert env.market.balance(b.address) == escrow  # its escrow back, and not a wei of stake more
    env.assert_balanced()


def test_F8_roles_and_settings_change_only_through_the_timelock(env: Env):
    m, op = env.market, env.operator
    # the operator holds no role on the market's settings or orchestrators, nor on the registry's
    with reverts("NotAdmin", caller=op.address):
        m.contract.transact(op, "setOrchestrator", env.stranger.address, True)
    with reverts("NotAdmin", caller=op.address):
        m.contract.transact(op, "setSettings", m.terms().as_tuple())
    with reverts("AccessControlUnauthorizedAccount"):
        env.registry.contract.transact(op, "setMinStake", 1)
    # through the timelock (a zero delay on this development chain) the change applies, in public
    tx = m.set_orchestrator(op, env.stranger.address)
    assert tx.event("OrchestratorSet").args == {"orchestrator": env.stranger.address, "allowed": True}
    assert m.is_orchestrator(env.stranger.address)
    m.set_orchestrator(op, env.stranger.address, False)
    assert not m.is_orchestrator(env.stranger.address)


def test_F8_with_a_delay_a_change_waits_in_public_before_it_applies(chain):
    params = MarketParams(**{**PARAMS, "timelock_delay": 3600})
    dep = deploy_market(chain, params=params)
    market = Market.from_deployment(chain, dep)
    operator, newcomer = chain.signers[0], chain.signers[9]
    timelock = market.timelock
    change = Change.call(market.contract, "setOrchestrator", newcomer.address, True)
    with pytest.raises(ChangePending, match="executable from"):
        market.set_orchestrator(operator, newcomer.address)
    assert not market.is_orchestrator(newcomer.address)
    with reverts("TimelockUnexpectedOperationState"):
        timelock.execute(operator, change)  # not before the delay
    wait_until(market, timelock.ready_at(change))
    timelock.execute(operator, change)
    assert market.is_orchestrator(newcomer.address)


def test_F8_a_deployment_outside_a_dev_chain_needs_a_day_of_delay(chain):
    with pytest.raises(ConfigError, match="at least"):
        check_delay(1, 0)
    with pytest.raises(ConfigError, match="at least"):
        check_delay(8453, MIN_PRODUCTION_DELAY - 1)
    check_delay(1, MIN_PRODUCTION_DELAY)
    check_delay(31337, 0)  # anvil: a development chain


# ---------------------------------------------------------------------------- low findings


def test_low_a_buyer_can_revoke_its_signed_intents(env: Env):
    b = env.buyers[0]
    env.market.deposit(b, ETH)
    it = env.intent(b)
    sig = env.market.sign(b, it)
    tx = env.market.invalidate_nonces(b, it.nonce + 1)
    assert tx.event("NoncesInvalidated").args == {"buyer": b.address, "nonce": it.nonce + 1}
    with reverts("BadNonce"):
        env.market.place_signed(env.orchestrator, it, sig)
    with reverts("NonceNotAhead"):
        env.market.invalidate_nonces(b, it.nonce)


def test_low_the_accept_window_is_longer_than_two_l1_blocks(env: Env):
    with reverts("SettingOutOfBounds", setting=4, value=24, min=30):
        env.market.set_terms(env.operator, accept_window=24)


def test_low_the_market_refuses_a_registry_of_another_asset(env: Env):
    registry = env.chain.deploy("ProviderRegistry", env.market.address, env.operator.address, ETH, 3600,
                                sender=env.operator)  # settles in "a token" at the market's address
    with reverts("AssetMismatch"):
        env.chain.deploy("ComputeMarket", ZERO, registry.address, ZERO, env.operator.address, env.operator.address,
                         env.orchestrator.address, env.market.terms().as_tuple(), sender=env.operator)


def test_low_the_market_refuses_to_assign_through_a_registry_bound_elsewhere(env: Env):
    registry = env.chain.deploy("ProviderRegistry", ZERO, env.operator.address, ETH, 3600, sender=env.operator)
    market = env.chain.deploy("ComputeMarket", ZERO, registry.address, ZERO, env.operator.address,
                              env.operator.address, env.orchestrator.address, env.market.terms().as_tuple(),
                              sender=env.operator)
    with reverts("RegistryNotBound", registryMarket=ZERO):
        market.transact(env.orchestrator, "assignBatch", keccak(b"x"), keccak(b"i"), keccak(b"d"), [], [], [], [])


def test_low_a_fee_on_transfer_token_is_credited_what_arrived(env: Env):
    token = env.chain.deploy("FeeToken", 100, sender=env.operator)  # 1% burned on every transfer
    registry = env.chain.deploy("ProviderRegistry", token.address, env.operator.address, ETH, 3600,
                                sender=env.operator)
    market = env.chain.deploy("ComputeMarket", token.address, registry.address, ZERO, env.operator.address,
                              env.operator.address, env.orchestrator.address, env.market.terms().as_tuple(),
                              sender=env.operator)
    b, p = env.buyers[0], env.providers[0]
    for who in (b, p):
        token.transact(env.operator, "mint", who.address, 10 * ETH)
    token.transact(b, "approve", market.address, ETH)
    market.transact(b, "deposit", ETH)
    assert market.call("balances", b.address) == ETH * 99 // 100  # what arrived, not what was sent
    assert market.call("held") == market.call("totalOwed")
    token.transact(p, "approve", registry.address, 2 * ETH)
    registry.transact(p, "register", REQUIREMENT, 1, REQUIREMENT, [PRICE] * 4, 2 * ETH)
    assert registry.call("stakeOf", p.address) == 2 * ETH * 99 // 100
    assert registry.call("held") == registry.call("totalStaked")


def test_low_zero_addresses_are_refused(env: Env):
    terms = env.market.terms().as_tuple()
    with reverts("ZeroAddress"):
        env.chain.deploy("ComputeMarket", ZERO, env.registry.address, ZERO, ZERO, env.operator.address,
                         env.orchestrator.address, terms, sender=env.operator)
    with reverts("ZeroAddress"):
        env.chain.deploy("ComputeMarket", ZERO, env.registry.address, ZERO, env.operator.address, ZERO,
                         env.orchestrator.address, terms, sender=env.operator)
    with reverts("SettingOutOfBounds", setting=8):  # the arbiter
        env.market.set_terms(env.operator, arbiter=ZERO)
    with reverts("ZeroAddress"):
        env.chain.deploy("ProviderRegistry", ZERO, ZERO, ETH, 3600, sender=env.operator)
    p, b = env.providers[0], env.buyers[0]
    env.register(p)
    oid = env.open_order(b)
    for plan, reason in (([(oid, ZERO, PRICE, ())], 2), ([(oid, p.address, PRICE, [ZERO])], 4)):
        tx = env.market.assign_batch(env.orchestrator, keccak(repr(plan).encode()), keccak(b"i"), keccak(b"d"), plan)
        assert tx.event("AssignmentSkipped").args["reason"] == reason  # ZeroProvider, ZeroBackup


def test_low_a_contract_wallets_intent_is_verified_by_erc1271(env: Env):
    owner = env.buyers[1]
    wallet = env.chain.deploy("ContractWallet", owner.address, sender=owner)
    env.chain.writer.transact(owner, to=wallet.address, value=ETH)
    wallet.transact(owner, "depositTo", env.market.address, ETH // 10)
    it = env.market.intent(wallet.address, requirement=REQUIREMENT, device_class=2, units=1, duration=60,
                           max_price=PRICE)
    oid = env.market.place_signed(env.orchestrator, it, _raw_sign(owner, env.market.digest(it)))  # owner signs
    assert env.market.order(oid.event("OrderPlaced").args["order"]).buyer == wallet.address
    later = OrderIntent(**{**it.__dict__, "nonce": it.nonce + 1})
    with reverts("BadSignature", buyer=wallet.address):  # a key that is not the wallet's owner
        env.market.place_signed(env.orchestrator, later, _raw_sign(env.stranger, env.market.digest(later)))


def _raw_sign(signer, digest: bytes) -> bytes:
    v, r, s = signer.sign_digest(digest)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])


def test_low_the_tier_gate_verifier_changes_only_through_the_timelock(env: Env):
    gate_address = env.market.contract.call("tierGate")
    if gate_address == ZERO:
        pytest.skip("tiers are not deployed on this market")
    gate = env.chain.at("TierGate", gate_address)
    verifier = gate.call("verifiers", 1)
    with reverts("AccessControlUnauthorizedAccount", account=env.operator.address):
        gate.transact(env.operator, "setVerifier", 1, verifier)
    with reverts("NotBinder"):
        gate.transact(env.stranger, "bindMarket", env.stranger.address)
    timelock = Timelock(env.chain, env.chain.at("Timelock", env.market.contract.call("admin")), None)
    tx = timelock.apply(env.operator, Change.call(gate, "setVerifier", 1, verifier))
    assert tx.event("VerifierSet").args["verifier"] == verifier


# ---------------------------------------------------------------------------- behaviours with no test before


def test_withdrawing_escrow_locked_in_a_live_order_is_refused(env: Env):
    b = env.buyers[0]
    oid = env.open_order(b)
    escrow = env.market.order(oid).escrow
    assert env.market.balance(b.address) == 0
    with reverts("InsufficientBalance", requested=escrow, available=0):
        env.market.withdraw(b, escrow)


def test_terminal_states_refuse_every_transition(env: Env):
    p, b = env.providers[0], env.buyers[0]
    env.register(p, stake=2 * ETH)
    cancelled = env.open_order(b)
    env.market.cancel(b, cancelled)
    settled = env.running_order(b, p)
    env.complete(p, settled, 60, RESULT)
    wait_until(env.market, env.market.order(settled).completed_at + 300)
    env.market.settle(env.stranger, settled)
    refunded = env.running_order(b, p)
    env.market.fail(env.orchestrator, refunded)
    resolved = env.running_order(b, p)
    env.complete(p, resolved, 60, RESULT)
    env.market.dispute(b, resolved)
    env.market.resolve(env.arbiter, resolved, 0, 0)
    for oid, state in ((cancelled, OrderState.CANCELLED), (settled, OrderState.SETTLED),
                       (refunded, OrderState.REFUNDED), (resolved, OrderState.RESOLVED)):
        assert env.market.state(oid) is state
        calls = [lambda: env.market.accept(p, oid), lambda: env.market.complete(p, oid, RESULT, 1),
                 lambda: env.market.settle(env.stranger, oid), lambda: env.market.cancel(b, oid),
                 lambda: env.market.timeout_acceptance(env.stranger, oid),
                 lambda: env.market.fail(env.orchestrator, oid), lambda: env.market.expire(env.stranger, oid),
                 lambda: env.market.dispute(b, oid), lambda: env.market.resolve(env.arbiter, oid, 0, 0),
                 lambda: env.market.lapse(env.stranger, oid)]
        for call in calls:
            with reverts("WrongState", actual=state):
                call()
        with pytest.raises(Unassignable, match="order-not-open"):
            env.market.assign(env.orchestrator, oid, p.address, PRICE)
    env.assert_balanced()


def test_token_deposit_with_allowance_but_no_balance_is_refused(token_env: Env):
    env = token_env
    poor = env.arbiter  # holds ETH, never any token
    env.market.token.transact(poor, "approve", env.market.address, ETH)
    with reverts("ERC20InsufficientBalance"):
        env.market.contract.transact(poor, "deposit", ETH)
    assert env.market.balance(poor.address) == 0


def test_token_allowance_decreases_by_the_deposit(token_env: Env):
    env, b = token_env, token_env.buyers[0]
    token = env.market.token
    token.transact(b, "approve", env.market.address, 5 * ETH)
    env.market.contract.transact(b, "deposit", 2 * ETH)
    assert token.call("allowance", b.address, env.market.address) == 3 * ETH
    assert env.market.balance(b.address) == 2 * ETH
    env.assert_balanced()


def test_token_zero_amount_deposit_and_withdraw_are_refused(token_env: Env):
    env, b = token_env, token_env.buyers[0]
    with reverts("ZeroAmount"):
        env.market.contract.transact(b, "deposit", 0)
    with reverts("ZeroAmount"):
        env.market.withdraw(b, 0)


def test_the_demo_token_behaves_as_an_erc20(token_env: Env):
    env = token_env
    token = env.market.token
    a, b, c = env.buyers
    supply = token.call("totalSupply")
    token.transact(a, "transfer", b.address, ETH)
    assert token.call("balanceOf", b.address) == 1001 * ETH and token.call("totalSupply") == supply
    with reverts("ERC20InsufficientBalance"):
        token.transact(c, "transfer", a.address, 10**6 * ETH)
    token.transact(a, "approve", c.address, ETH)
    token.transact(c, "transferFrom", a.address, c.address, ETH)
    with reverts("ERC20InsufficientAllowance"):
        token.transact(c, "transferFrom", a.address, c.address, 1)
    with reverts("OwnableUnauthorizedAccount"):
        token.transact(a, "mint", a.address, ETH)
    with reverts("ERC20InvalidReceiver"):
        token.transact(a, "transfer", ZERO, 1)
