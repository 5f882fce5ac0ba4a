"""``cona bench zk``: the tier proof's cost in Python (prove, verify) and on chain (gas).

- ``prove_ms_N`` / ``verify_ms_N`` (p50) and ``prove_ms_p99_N`` / ``verify_ms_p99_N`` for ring
  sizes N = 4, 16, 32: ``zk.blsag.prove`` and ``zk.blsag.verify_bytes`` (decode + verify) in
  this process, *cold*: the H(scope) cache is cleared before every run and every proof uses a
  fresh slot, so hashing to the curve and every table build is inside the figure;
- ``prove_ms_p50`` / ``verify_ms_p50``: the p50 at N = 16, the size the issue's 50 ms target
  is set at (the same figures as ``prove_ms_16`` / ``verify_ms_16``);
- ``verify_gas_N``: gas used by a ``TierGate.consume`` transaction carrying that proof (the
  whole on-chain cost of a tier check: 21,000 intrinsic, calldata, the bLSAG verification,
  the nullifier's storage write and its event), from the receipt, on anvil when it is
  installed (native precompiles: a second) and else on the embedded chain (py-evm's
  pure-Python ecMul: about 8 s); gas is fixed by the protocol, the same on either or on
  mainnet for the same hardfork, and ``gas_chain`` names the one used;
- ``verify_call_gas_N``: ``eth_estimateGas`` of a bare call to ``BlsagVerifier.verify``
  (intrinsic + calldata + verification, nothing stored);
- ``gas_per_key``: the slope of ``verify_gas`` between N = 4 and N = 32.
"""

from __future__ import annotations

import random
import time

from bench.stats import percentile, rnd
from marketplace.chain.backends import AnvilBackend, ChainBackend, EmbeddedBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.tiergate import TierGateClient, bind_market, deploy_tier_gate
from marketplace.errors import ConfigError
from marketplace.settings import PACKAGE_ROOT, ProjectConfig
from zk.blsag import Statement, key_image_base, prove, verify_bytes
from zk.encoding import encode_proof
from zk.groups import TierGroup
from zk.keys import generate_key

SIZES = (4, 16, 32)
TARGET_SIZE = 16
CHAIN_ID = 131277322940537
GATE = "0x" + "5a" * 20
MARKET = "0x" + "6b" * 20
BUYER = "0x" + "7c" * 20


def _python(n: int, runs: int, rng: random.Random) -> dict:
    keys = [generate_key(rng) for _ in range(n)]
    ring = sorted(k.public_key() for k in keys)
    me = keys[rng.randrange(n)]
    prove_ms, verify_ms = [], []
    for i in range(runs + 1):  # the first run warms the interpreter, not the caches
        st = Statement(CHAIN_ID, GATE, MARKET, 1, 2, rng.randbytes(32), BUYER)
        key_image_base.cache_clear()
        t = time.perf_counter()
        proof = prove(me, ring, st, slot=i)
        t_prove = (time.perf_counter() - t) * 1000
        data = encode_proof(proof)
        key_image_base.cache_clear()
        t = time.perf_counter()
        ok = verify_bytes(data, st)
        t_verify = (time.perf_counter() - t) * 1000
        assert ok.nullifier == proof.nullifier  # a benchmark that verifies nothing measures nothing
        if i:
            prove_ms.append(t_prove)
            verify_ms.append(t_verify)
    return {
        f"prove_ms_{n}": rnd(percentile(prove_ms, 50)),
        f"prove_ms_p99_{n}": rnd(percentile(prove_ms, 99)),
        f"verify_ms_{n}": rnd(percentile(verify_ms, 50)),
        f"verify_ms_p99_{n}": rnd(percentile(verify_ms, 99)),
    }


def _gas(rng: random.Random, uses: int) -> dict:
    """Median gas over ``uses`` proofs per ring size, each in its own slot: the scope changes
    H(scope), whose try-and-increment takes 1, 2, 3... tries (a modexp each), and the calldata's
    zero bytes change with the values, so single proofs differ by a few thousand gas."""
    project = ProjectConfig.load(PACKAGE_ROOT)
    backend: ChainBackend
    try:
        backend = AnvilBackend(project.root, project.mnemonic, accounts=3)
    except ConfigError:  # anvil not installed (no `npm ci`): the same gas, slower
        backend = EmbeddedBackend(project.mnemonic, 3)
    chain = Chain(backend, project)
    out: dict = {"gas_chain": backend.name}
    try:
        operator, market = chain.signers[0], chain.signers[1]
        gate = TierGateClient.at(chain, deploy_tier_gate(chain, operator))
        bind_market(chain, gate.address, market.address, operator)
        verifier = gate.verifier()
        for n in SIZES:
            keys = [generate_key(rng) for _ in range(n)]
            group = TierGroup.build(2, gate.current_epoch(), [k.public_key() for k in keys], slots=uses,
                                    bucket_size=n)
            gate.commit_group(operator, group)
            call_gas, tx_gas = [], []
            for slot in range(uses):
                st = gate.statement(2, rng.randbytes(32), BUYER, market=market.address)
                data = encode_proof(prove(keys[slot % n], group.buckets()[0], st, slot))
                call = verifier.request(
                    "verify",
                    (st.chain_id, st.gate, st.market, st.epoch, st.tier, slot, st.order_digest, st.beneficiary), data)
                est = chain.backend.request("eth_estimateGas", [{"from": market.address, "to": verifier.address,
                                                                  "data": "0x" + call.data.hex()}])
                call_gas.append(int(est, 16))
                rec = gate.consume(market, st, data)
                assert rec.ok and gate.is_spent(gate.events(rec)[0].args["nullifier"])
                tx_gas.append(rec.gas_used)
            out[f"verify_call_gas_{n}"] = round(percentile(call_gas, 50))
            out[f"verify_gas_{n}"] = round(percentile(tx_gas, 50))
            out[f"verify_gas_min_{n}"], out[f"verify_gas_max_{n}"] = min(tx_gas), max(tx_gas)
            out[f"proof_bytes_{n}"] = len(data)
    finally:
        chain.close()
    out["gas_per_key"] = rnd((out["verify_gas_32"] - out["verify_gas_4"]) / 28)
    return out


def run(quick: bool = False) -> dict:
    rng = random.Random(20260501)
    out: dict = {}
    for n in SIZES:
        out.update(_python(n, 3 if quick else 25, rng))
    out["prove_ms_p50"] = out[f"prove_ms_{TARGET_SIZE}"]
    out["verify_ms_p50"] = out[f"verify_ms_{TARGET_SIZE}"]
    out.update(_gas(rng, 1 if quick else 9))
    out["workload"] = ("bLSAG over alt_bn128 G1: prove and decode+verify in Python (cold H(scope) cache); "
                       "gas of TierGate.consume receipts")
    return out


if __name__ == "__main__":  # python -m bench.zk [--quick]
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
