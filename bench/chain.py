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
"""

from __future__ import annotations

import time

from bench.stats import percentile, rnd
from marketplace.chain.backends import AnvilBackend, EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.settings import PACKAGE_ROOT, ProjectConfig

GAS = 90_000


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
    finally:
        anvil.close()
    out["workload"] = "ChainProbe.bump(1), receipt awaited per tx"
    return out
