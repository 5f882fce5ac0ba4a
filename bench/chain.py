"""``cona bench chain``: contract transactions per second through the transaction writer.

Workload: ``ChainProbe.bump(1)`` (a storage write and an event, ~50k gas), sent by
one dev account, each transaction waited for (receipt) before it counts.

- ``embedded_tx_per_s``: the writer on the embedded chain (eth-tester + py-evm), one at a time;
- ``anvil_tx_per_s``, ``anvil_p50_ms``, ``anvil_p99_ms``: the writer on anvil, one at a time
  (sign, send, receipt), with the latency of each;
- ``anvil_batched_tx_per_s``: the writer on anvil, batches of 200 (one JSON-RPC batch of raw
  transactions, then one batch of receipt queries);
- ``anvil_web3_transact_tx_per_s``: the baseline, the same call through web3.py's
  ``contract.functions.bump(1).transact()`` on the same node in the same run.
- ``lifecycle_per_s``: whole leases per second on anvil through the writer: a buyer signs
  EIP-712 intents, the orchestrator places them (``placeSignedOrders``) and assigns them
  (``assignBatch``) in one JSON-RPC batch, the provider accepts and completes each, time
  moves past the dispute window (``evm_increaseTime``), each order is settled, and provider
  and buyer withdraw. A round of ``LIFECYCLE_ROUND`` orders is the unit; every order must end
  Settled with the books balanced or the figure is not reported. ``lifecycle_tx_per_order``
  says how many transactions each lease took (batching makes it fractional).
"""

from __future__ import annotations

import time

from eth_utils import keccak

from bench.stats import percentile, rnd
from marketplace.chain.backends import AnvilBackend, EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import MarketParams, deploy_market
from marketplace.chain.market import Market, OrderState, cost
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

GAS = 90_000
LIFECYCLE_ROUND = 50  # orders per round (anvil slows per tx in larger batches from one sender)
LIFECYCLE_CHUNK = 50  # orders per placeSignedOrders / assignBatch transaction (~8M gas, under the block limit)
# explicit gas limits: a batch is signed before the transactions it depends on are mined, so it
# cannot be estimated. Limits must exceed docs/gas.md's figures by a wide margin: gasUsed is net
# of storage refunds, which are paid back only after execution needed the gross amount.
_GAS_PLACE, _GAS_ASSIGN, _GAS_ACCEPT, _GAS_COMPLETE, _GAS_SETTLE = 300_000, 150_000, 100_000, 150_000, 250_000
_PRICE = 36 * 10**14
#: each lease is accepted and completed in one batch, so within its first second: the contract caps
#: usage at units x seconds elapsed (at least one), so it is billed one unit-second
_USAGE = 1


def _single(chain: Chain, n: int) -> tuple[float, list[float]]:
    probe = chain.deploy("ChainProbe", 10**9)
    signer = chain.signers[1]
    req = probe.request("bump", 1, gas=GAS)
    chain.writer.transact(signer, req)  # warm the nonce and fee caches
    lat = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        chain.writer.transact(signer, req)
        lat.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - start
    assert probe.call("counter") == n + 1
    return n / elapsed, lat


def _batched(chain: Chain, n: int, batch: int) -> float:
    probe = chain.deploy("ChainProbe", 10**9)
    signer = chain.signers[2]
    reqs = [probe.request("bump", 1, gas=GAS) for _ in range(batch)]
    chain.writer.transact(signer, reqs[0])
    start = time.perf_counter()
    for _ in range(n // batch):
        receipts = chain.writer.transact_many(signer, reqs)
        assert all(r.ok for r in receipts)
    elapsed = time.perf_counter() - start
    assert probe.call("counter") == (n // batch) * batch + 1
    return (n // batch) * batch / elapsed


def _web3_transact(chain: Chain, n: int) -> float:
    w3 = chain.backend.w3
    probe = chain.deploy("ChainProbe", 10**9)
    contract = w3.eth.contract(address=probe.address, abi=chain.artifacts["ChainProbe"].abi)
    sender = chain.signers[3].address  # anvil keeps its dev accounts unlocked
    contract.functions.bump(1).transact({"from": sender, "gas": GAS})
    start = time.perf_counter()
    for _ in range(n):
        tx = contract.functions.bump(1).transact({"from": sender, "gas": GAS})
        w3.eth.wait_for_transaction_receipt(tx, poll_latency=0.001)
    elapsed = time.perf_counter() - start
    return n / elapsed


def _lifecycle(chain: Chain, rounds: int, per_round: int) -> tuple[float, float]:
    """Whole leases per second, and transactions per lease. See the module docstring."""
    eth = 10**18
    dep = deploy_market(chain, params=MarketParams(min_stake=eth, accept_window=3600, dispute_window=300))
    market = Market.from_deployment(chain, dep)
    s = chain.signers
    orch, provider, buyer = s[1], s[3], s[4]
    market.registry.register(provider, hardware=keccak(b"bench-gpu"), domain=1, prices=[_PRICE] * 4, stake=eth)
    req = keccak(b"bench-requirement")
    per_order = cost(1, 3600, _PRICE)
    market.deposit(buyer, rounds * per_round * per_order)
    window = market.settings()["disputeWindow"]
    ids: list[int] = []
    txs = 0
    start = time.perf_counter()
    for _ in range(rounds):
        nonce = market.nonce(buyer.address)
        deadline = market.chain_time() + 3600
        intents = [market.intent(buyer.address, requirement=req, device_class=2, units=1, duration=3600,
                                 max_price=_PRICE, nonce=nonce + i, deadline=deadline) for i in range(per_round)]
        signed = [market.sign(buyer, it) for it in intents]
        first = market.order_count + 1
        round_ids = list(range(first, first + per_round))
        reqs = []
        for c in range(0, per_round, LIFECYCLE_CHUNK):
            chunk = slice(c, c + LIFECYCLE_CHUNK)
            n = len(intents[chunk])
            reqs.append(market.contract.request("placeSignedOrders", [i.as_tuple() for i in intents[chunk]],
                                                signed[chunk], [b""] * n, gas=_GAS_PLACE * n + 100_000))
        for c in range(0, per_round, LIFECYCLE_CHUNK):
            chunk = round_ids[c:c + LIFECYCLE_CHUNK]
            # one matching batch per chunk: its record and its assignments in one transaction
            bid = keccak(b"bench-batch" + b"".join(i.to_bytes(32, "big") for i in chunk))
            reqs.append(market.assign_batch_request(bid, keccak(b"inputs" + bid), keccak(b"decisions" + bid),
                                                    [(i, provider.address, _PRICE, ()) for i in chunk],
                                                    gas=_GAS_ASSIGN * len(chunk) + 200_000))
        work = [(orch, reqs)]
        work.append((provider, [market.contract.request("accept", i, gas=_GAS_ACCEPT) for i in round_ids]
                     + [market.contract.request("complete", i, keccak(b"done"), _USAGE, gas=_GAS_COMPLETE)
                        for i in round_ids]))
        for sender, batch in work:
            receipts = chain.writer.transact_many(sender, batch)
            assert all(r.ok for r in receipts), [r.error for r in receipts if not r.ok][:3]
            txs += len(batch)
        chain.backend.increase_time(window + 1)
        settles = [market.contract.request("settle", i, gas=_GAS_SETTLE) for i in round_ids]
        receipts = chain.writer.transact_many(buyer, settles)
        assert all(r.ok for r in receipts), [r.error for r in receipts if not r.ok][:3]
        market.withdraw(provider)
        # the refunds only (each order used a second of its escrow): the deposit still funds the next rounds;
        # were this arithmetic wrong, the contract would refuse the withdrawal
        market.withdraw(buyer, per_round * (per_order - cost(1, _USAGE, _PRICE)))
        txs += len(settles) + 2
        ids += round_ids
    elapsed = time.perf_counter() - start
    # the figure counts only if every lease really ended settled and the books hold
    assert all(market.state(i) is OrderState.SETTLED for i in ids)
    assert market.escrow_check().balanced and market.registry.escrow_check().balanced
    assert market.balance(provider.address) == 0
    return len(ids) / elapsed, txs / len(ids)


def run(quick: bool = False) -> dict:
    project = ProjectConfig.load(PACKAGE_ROOT)
    out: dict = {}
    emb = Chain(EmbeddedBackend(project.mnemonic, 5), project)
    try:
        rate, _ = _single(emb, 20 if quick else 300)
        out["embedded_tx_per_s"] = rnd(rate)
    finally:
        emb.close()
    anvil = Chain(AnvilBackend(project.root, project.mnemonic, accounts=5), project)
    try:
        rate, lat = _single(anvil, 100 if quick else 3000)
        out["anvil_tx_per_s"] = rnd(rate)
        out["anvil_p50_ms"] = rnd(percentile(lat, 50))
        out["anvil_p99_ms"] = rnd(percentile(lat, 99))
        out["anvil_batched_tx_per_s"] = rnd(_batched(anvil, 200 if quick else 10_000, 100 if quick else 500))
        out["anvil_web3_transact_tx_per_s"] = rnd(_web3_transact(anvil, 50 if quick else 500))
        rate, per = _lifecycle(anvil, 1 if quick else 10, 20 if quick else LIFECYCLE_ROUND)
        out["lifecycle_per_s"] = rnd(rate)
        out["lifecycle_tx_per_order"] = rnd(per)
    finally:
        anvil.close()
    out["workload"] = "ChainProbe.bump(1), receipt awaited per tx"
    return out
