"""TierGate on every chain backend: the Python and Solidity verifiers agree on shared vectors,
every rejection reverts with its named custom error, and a tier-2 order goes through the
market with a proof that cannot be used again.

Rings are small (4 keys) so the embedded chain's py-evm precompiles stay quick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from eth_utils import keccak

from marketplace.chain.contracts import Chain
from marketplace.chain.tiergate import TierGateClient, bind_market, deploy_tier_gate
from marketplace.chain.writer import Signer
from marketplace.errors import ProofError, TransactionReverted
from zk import SecretKey, Statement, TierGroup, check_tier_proof, generate_key, prove, prove_tier
from zk.curve import N, P
from zk.encoding import encode_proof
from tests.chain.market_env import Env, reverts

TIER = 2
SLOTS = 2
RING = 4
RING_AT = 7
IMAGE_AT = RING_AT + 64 * RING
C0_AT = IMAGE_AT + 64
DIGEST = keccak(b"order under test")


@dataclass
class GateEnv:
    chain: Chain
    gate: TierGateClient
    operator: Signer
    market: Signer  # an account bound as the gate's market, so tests can call consume directly
    stranger: Signer
    buyer: Signer
    secrets: list[SecretKey]
    group: TierGroup
    outsiders: list[SecretKey]

    @property
    def me(self) -> SecretKey:
        return self.secrets[1]

    def statement(self, **kw) -> Statement:
        base = dict(chain_id=self.chain.backend.chain_id, gate=self.gate.address, market=self.market.address,
                    epoch=1, tier=TIER, order_digest=DIGEST, beneficiary=self.buyer.address)
        base.update(kw)
        return Statement(**base)

    def proof(self, slot: int = 0, **kw) -> bytes:
        return prove_tier(self.me, self.group if "epoch" not in kw and "tier" not in kw else
                          TierGroup.build(kw.get("tier", TIER), kw.get("epoch", 1), self.group.keys, slots=SLOTS),
                          self.statement(**kw), slot)


_gates: dict[str, GateEnv] = {}


@pytest.fixture(scope="session")
def gate_session(chain: Chain) -> GateEnv:
    name = chain.backend.name
    if name not in _gates:
        s = chain.signers
        operator, market, stranger, buyer = s[0], s[4], s[9], s[7]
        address = deploy_tier_gate(chain, operator)
        bind_market(chain, address, market.address, operator)
        gate = TierGateClient.at(chain, address)
        rng = random.Random(8)
        secrets_ = [generate_key(rng) for _ in range(RING)]
        group = TierGroup.build(TIER, 1, [k.public_key() for k in secrets_], slots=SLOTS, bucket_size=RING)
        for g in (group, group.for_epoch(2), TierGroup.build(3, 1, group.keys, slots=SLOTS)):
            gate.commit_group(operator, g)
        outsiders = [generate_key(rng) for _ in range(RING)]
        _gates[name] = GateEnv(chain, gate, operator, market, stranger, buyer, secrets_, group, outsiders)
    return _gates[name]


@pytest.fixture
def g(gate_session: GateEnv, isolated) -> GateEnv:
    return gate_session


# ---------------------------------------------------------------------- shared vectors


def _put(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(32, "big") + data[offset + 32:]


def _word(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 32], "big")


def vectors(e: GateEnv) -> dict[str, tuple[bytes, str | None]]:
    """name -> (proof bytes checked against e.statement(), the error both verifiers must raise)."""
    good = e.proof()
    x0, y_img = _word(good, RING_AT), _word(good, IMAGE_AT + 32)
    rogue_ring = [e.me.public_key()] + [k.public_key() for k in e.outsiders[:RING - 1]]
    return {
        "valid": (good, None),
        "other order": (e.proof(order_digest=keccak(b"another order")), "InvalidRingSignature"),
        "other beneficiary": (e.proof(beneficiary=e.stranger.address), "InvalidRingSignature"),
        "other chain": (e.proof(chain_id=e.chain.backend.chain_id + 1), "InvalidRingSignature"),
        "other gate contract": (e.proof(gate=e.market.address), "InvalidRingSignature"),
        "other market contract": (e.proof(market=e.stranger.address), "InvalidRingSignature"),
        "other epoch": (e.proof(epoch=2), "InvalidRingSignature"),
        "other tier": (e.proof(tier=3), "InvalidRingSignature"),
        "slot rewritten": (good[:1] + (1).to_bytes(4, "big") + good[5:], "InvalidRingSignature"),
        "ring not committed": (encode_proof(prove(e.me, rogue_ring, e.statement(), 0)), "RingNotCommitted"),
        "slot beyond the tier's uses": (good[:1] + SLOTS.to_bytes(4, "big") + good[5:], "SlotOutOfRange"),
        "ring x >= p": (_put(good, RING_AT, x0 + P), "CoordinateNotInField"),
        "image y >= p": (_put(good, IMAGE_AT + 32, y_img + P), "CoordinateNotInField"),
        "image at infinity": (_put(_put(good, IMAGE_AT, 0), IMAGE_AT + 32, 0), "PointAtInfinity"),
        "ring point off curve": (_put(good, RING_AT + 64 + 32, (_word(good, RING_AT + 96) + 1) % P),
                                 "PointNotOnCurve"),
        "c0 >= n": (_put(good, C0_AT, _word(good, C0_AT) + N), "ScalarNotInGroup"),
        "last s >= n": (_put(good, len(good) - 32, N), "ScalarNotInGroup"),
        "truncated": (good[:-1], "BadProofLength"),
        "padded": (good + b"\x00", "BadProofLength"),
        "empty": (b"", "BadProofLength"),
        "header only": (good[:6], "BadProofLength"),
        "ring size 0": (good[:5] + b"\x00\x00" + good[7:], "RingSizeOutOfRange"),
        "ring size 65": (good[:5] + (65).to_bytes(2, "big") + good[7:], "RingSizeOutOfRange"),
        "unknown scheme": (b"\x02" + good[1:], "UnknownScheme"),
    }


VECTOR_NAMES = [
    "valid", "other order", "other beneficiary", "other chain", "other gate contract", "other market contract",
    "other epoch", "other tier", "slot rewritten", "ring not committed", "slot beyond the tier's uses",
    "ring x >= p", "image y >= p", "image at infinity", "ring point off curve", "c0 >= n", "last s >= n",
    "truncated", "padded", "empty", "header only", "ring size 0", "ring size 65", "unknown scheme",
]
_vectors: dict[str, dict[str, tuple[bytes, str | None]]] = {}


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_python_and_solidity_verifiers_agree(g: GateEnv, name: str):
    key = g.chain.backend.name
    if key not in _vectors:
        _vectors[key] = vectors(g)
    assert list(_vectors[key]) == VECTOR_NAMES
    data, expected = _vectors[key][name]
    st = g.statement()

    py_error, py_result = None, None
    try:
        py_result = check_tier_proof(data, st, g.group)
    except ProofError as exc:
        py_error = exc

    sol_error, sol_result = None, None
    try:
        sol_result = g.gate.check(st, data)
    except TransactionReverted as exc:
        sol_error = exc

    if expected is None:
        assert py_error is None and sol_error is None, (py_error, sol_error)
        assert (sol_result.commitment, sol_result.nullifier) == (py_result.commitment, py_result.nullifier)
        assert g.gate.is_committed(TIER, 1, py_result.commitment)
        return
    assert type(py_error).__name__ == expected, py_error
    assert sol_error is not None and sol_error.error.split(".")[-1] == expected, sol_error
    # the same fault is reported at the same place by both
    args = sol_error.error_args
    if "offset" in args:
        assert args["offset"] == py_error.offset
    if expected == "BadProofLength":
        assert (args["expected"], args["actual"]) == (py_error.fields["expected"], py_error.fields["actual"])


def test_the_verifier_contract_alone_matches_python(g: GateEnv):
    data = g.proof(slot=1)
    st = g.statement()
    verifier = g.gate.verifier()
    commitment, nullifier = verifier.call(
        "verify", (st.chain_id, st.gate, st.market, st.epoch, st.tier, 1, st.order_digest, st.beneficiary), data)
    ok = check_tier_proof(data, st, g.group)
    assert (commitment, nullifier) == (ok.commitment, ok.nullifier)
    from zk.blsag import key_image_base

    assert tuple(verifier.call("keyImageBase", st.chain_id, st.gate, 1, TIER, 1)) == key_image_base(st.scope(1))[0]


# ---------------------------------------------------------------------- consume and its rejections


def test_consume_spends_the_nullifier_once(g: GateEnv):
    data = g.proof()
    st = g.statement()
    rec = g.gate.consume(g.market, st, data)
    (event,) = g.gate.events(rec)
    ok = check_tier_proof(data, st, g.group)
    assert event.name == "NullifierSpent"
    assert event.args == {"nullifier": ok.nullifier, "tier": TIER, "epoch": 1, "orderDigest": DIGEST,
                          "commitment": ok.commitment}
    assert g.gate.is_spent(ok.nullifier)
    with reverts("NullifierAlreadySpent", nullifier=ok.nullifier):
        g.gate.consume(g.market, st, data)
    # a fresh proof of the same member in the same slot, for another order: same nullifier
    other = g.statement(order_digest=keccak(b"second order"))
    with reverts("NullifierAlreadySpent"):
        g.gate.consume(g.market, other, prove_tier(g.me, g.group, other, 0))
    assert g.gate.free_slot(g.me, TIER) == 1
    g.gate.consume(g.market, other, prove_tier(g.me, g.group, other, 1))
    assert g.gate.free_slot(g.me, TIER) is None
    # another member still has both slots
    assert g.gate.free_slot(g.secrets[0], TIER) == 0


def test_only_the_bound_market_consumes(g: GateEnv):
    with reverts("NotMarket", caller=g.stranger.address):
        g.gate.consume(g.stranger, g.statement(), g.proof())


def test_epoch_rules(g: GateEnv):
    st2 = g.statement(epoch=2)
    with reverts("WrongEpoch", epoch=2, current=1):
        g.gate.consume(g.market, st2, g.proof(epoch=2))
    with reverts("EpochNotAfter"):
        g.gate.start_epoch(g.operator, 1)
    rec = g.gate.start_epoch(g.operator, 2)
    assert g.gate.events(rec)[0].args == {"epoch": 2, "previous": 1}
    assert g.gate.current_epoch() == 2
    g.gate.consume(g.market, st2, g.proof(epoch=2))  # committed ahead of time for epoch 2
    with reverts("WrongEpoch", epoch=1, current=2):
        g.gate.consume(g.market, g.statement(), g.proof())
    with reverts("EpochPassed"):
        g.gate.commit_group(g.operator, g.group)
    with reverts("NoGroup", tier=3, epoch=2):
        g.gate.check(g.statement(epoch=2, tier=3), g.proof(epoch=2, tier=3))


def test_recommitting_a_group_retires_its_old_buckets(g: GateEnv):
    old = g.proof()
    grown = g.group.with_keys(*(k.public_key() for k in g.outsiders[:1]))
    rec = g.gate.commit_group(g.operator, grown)
    (event,) = g.gate.events(rec)
    assert event.name == "GroupCommitted" and event.args["version"] == 2
    assert tuple(event.args["commitments"]) == grown.commitments()
    assert g.gate.group_info(TIER).version == 2 and g.gate.group_info(TIER).buckets == 2
    with reverts("RingNotCommitted"):
        g.gate.check(g.statement(), old)
    fresh = prove_tier(g.me, grown, g.statement(), 0)
    assert g.gate.check(g.statement(), fresh).nullifier == check_tier_proof(fresh, g.statement(), grown).nullifier
    assert [e.args["version"] for e in g.gate.committed_groups() if e.args["tier"] == TIER
            and e.args["epoch"] == 1] == [1, 2]


def test_operator_and_admin_rules(g: GateEnv):
    with reverts("MarketAlreadyBound", market=g.market.address):
        bind_market(g.chain, g.gate.address, g.stranger.address, g.operator)
    with reverts("AccessControlUnauthorizedAccount"):
        g.gate.commit_group(g.stranger, g.group)
    with reverts("AccessControlUnauthorizedAccount"):
        g.gate.start_epoch(g.stranger, 5)
    with reverts("NoTier"):
        g.gate.contract.transact(g.operator, "commitGroup", 0, 1, 1, [b"\x01" * 32])
    with reverts("NoSlots"):
        g.gate.contract.transact(g.operator, "commitGroup", 1, 1, 0, [b"\x01" * 32])
    with reverts("BucketCount", count=0, maximum=256):
        g.gate.contract.transact(g.operator, "commitGroup", 1, 1, 1, [])
    with reverts("SchemeMismatch", scheme=2, verifierScheme=1):
        g.gate.contract.transact(g.operator, "setVerifier", 2, g.gate.verifier().address)


# ---------------------------------------------------------------------- through the market


@pytest.fixture
def tier_env(env: Env) -> tuple[Env, TierGateClient, TierGroup, SecretKey]:
    dep_gate = env.market.contract.call("tierGate")
    gate = TierGateClient.at(env.chain, dep_gate)
    assert gate.market == env.market.address
    rng = random.Random(99)
    credentials = [generate_key(rng) for _ in range(RING)]
    group = TierGroup.build(TIER, gate.current_epoch(), [k.public_key() for k in credentials], slots=SLOTS)
    gate.commit_group(env.operator, group)
    return env, gate, group, credentials[2]


def test_a_tier_two_order_is_placed_with_a_proof_and_the_proof_fails_on_a_second_order(tier_env):
    env, gate, group, credential = tier_env
    buyer = env.buyers[0]
    first = env.intent(buyer, tier=TIER)
    env.market.deposit(buyer, 3 * first.escrow())
    statement = gate.statement(TIER, env.market.digest(first), buyer.address)
    proof = prove_tier(credential, group, statement, gate.free_slot(credential, TIER))
    tx = env.market.place_tx(buyer, first, proof)
    oid = tx.event("OrderPlaced").args["order"]
    assert env.market.order(oid).tier == TIER
    spent = [e for e in gate.events(tx.receipt) if e.name == "NullifierSpent"]
    assert len(spent) == 1 and spent[0].args["orderDigest"] == env.market.digest(first)
    assert gate.is_spent(spent[0].args["nullifier"])

    second = env.intent(buyer, tier=TIER)
    with reverts("InvalidRingSignature"):
        env.market.place(buyer, second, proof)
    # the failed placement left nothing behind
    assert env.market.nonce(buyer.address) == second.nonce
    env.assert_balanced()
    # a fresh proof reusing the slot is caught by its nullifier; the next slot is accepted
    st2 = gate.statement(TIER, env.market.digest(second), buyer.address)
    with reverts("NullifierAlreadySpent"):
        env.market.place(buyer, second, prove_tier(credential, group, st2, 0))
    oid2 = env.market.place(buyer, second, prove_tier(credential, group, st2, gate.free_slot(credential, TIER)))
    assert env.market.order(oid2).tier == TIER
    # out of slots for this epoch
    assert gate.free_slot(credential, TIER) is None
    env.assert_balanced()


def test_signed_orders_carry_proofs_too(tier_env):
    env, gate, group, credential = tier_env
    buyer = env.buyers[1]
    it = env.intent(buyer, tier=TIER)
    env.market.deposit(buyer, it.escrow())
    proof = prove_tier(credential, group, gate.statement(TIER, env.market.digest(it), buyer.address), 0)
    tx = env.market.place_signed(env.orchestrator, it, env.market.sign(buyer, it), proof)
    assert env.market.order(tx.event("OrderPlaced").args["order"]).tier == TIER


def test_a_tier_order_without_a_proof_or_with_a_stranger_s_proof_is_refused(tier_env):
    env, gate, group, credential = tier_env
    buyer, other = env.buyers[0], env.buyers[1]
    it = env.intent(buyer, tier=TIER)
    env.market.deposit(buyer, it.escrow())
    with reverts("BadProofLength", expected=5, actual=0):
        env.market.place(buyer, it)
    # a proof made for another buyer's identical-looking order does not transfer
    stolen = prove_tier(credential, group, gate.statement(TIER, env.market.digest(it), other.address), 0)
    with reverts("InvalidRingSignature"):
        env.market.place(buyer, it, stolen)
    with reverts("NoGroup"):
        env.market.place(buyer, env.intent(buyer, tier=1), b"\x01" + bytes(10))
