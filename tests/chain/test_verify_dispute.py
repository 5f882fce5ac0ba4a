"""A buyer wins a dispute with a re-run that does not match: ``cona order verify --dispute``, then the
arbiter resolves (docs/trust.md: "submit a garbage result: the buyer disputes; the arbiter can refuse
pay and slash").

The buyer's own module (the C wordcount example) and input file are uploaded as artifacts; the
engine assigns the order to the one provider that runs buyers' modules; that provider accepts and
commits a result it did not compute (here the test holds its key). The buyer's ``cona order
verify`` (a real process, against the market's API and ``/rpc``) fetches the module and input by
digest, re-runs the order, finds another result, and disputes. The arbiter re-runs it the same way
(anyone can), pays the provider nothing and slashes it: the whole escrow returns to the buyer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import keccak

from marketplace.artifacts import Kind
from marketplace.artifacts.transfer import upload
from marketplace.chain.lifecycle import OrderState
from marketplace.chain.market import wait_until
from marketplace.results import ResultRecord
from marketplace.resources.runtimes import RuntimeOffer
from marketplace.settings import PACKAGE_ROOT
from provider_agent.workloads.examples import EXAMPLES
from tests.chain.test_api_artifacts import served  # noqa: F401 - fixture
from tests.chain.test_engine import HW, w, world  # noqa: F401 - fixtures
from tests.chain.test_engine_runtimes import lsa_with, spec_of

pytestmark = pytest.mark.chain

BUYER = 6


def cona(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    return subprocess.run([sys.executable, "-m", "marketplace.cli.main", *args], cwd=PACKAGE_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_mismatching_rerun_wins_the_buyer_its_dispute(served, tmp_path):  # noqa: F811
    w, engine, api = served
    h100, l40s, t4 = HW
    for i in HW:
        w.register(i)
        engine.submit_lsa(lsa_with(w, i, RuntimeOffer() if i == h100 else None))
    buyer = w.signers[BUYER]
    module = upload(api, buyer, (EXAMPLES / "wordcount-c.wasm").read_bytes(), Kind.WASM, chain_id=w.dep.chain_id,
                    market=w.market.address)["digest"]
    text = upload(api, buyer, b"the quick brown fox\n", Kind.DATA, chain_id=w.dep.chain_id,
                  market=w.market.address)["digest"]
    spec = spec_of({"module": module, "input": "", "fuel": 10**8, "args": ["fox.txt"], "inputs": {"fox.txt": text}})
    it, sig = w.signed(BUYER, spec, max_price=36 * 10**14)
    oid = engine.place_order(it, sig, spec)
    engine.step()
    o = w.market.order(oid)
    provider = w.signers[h100]
    assert o.provider == provider.address
    # the provider accepts and commits a result it never computed
    w.market.accept(provider, oid)
    wait_until(w.market, w.market.order(oid).started_at + 30)
    forged = ResultRecord("ok", 0, b"total 0 0 0\n").encode()
    w.market.complete(provider, oid, keccak(forged), 30)
    engine.step()
    assert httpx_post(api.base, f"/v1/orders/{oid}/result", forged) == 201
    before = w.market.balance(buyer.address)
    stake = w.market.registry.provider(provider.address).stake

    got = cona("order", "verify", str(oid), "--api", api.base, "--dev-account", str(BUYER), "--dispute", "--json")
    assert got.returncode == 2, got.stderr
    doc = json.loads(got.stdout)
    assert not doc["match"] and doc["status"] == "ok" and doc["on_chain"] == "0x" + keccak(forged).hex()
    assert doc["disputed"] and "is not the committed" in got.stderr
    assert w.market.state(oid) == OrderState.DISPUTED

    # the arbiter re-runs it too (the same command, no key needed without --dispute), then resolves
    again = cona("order", "verify", str(oid), "--api", api.base, "--json")
    assert again.returncode == 2 and json.loads(again.stdout)["result_hash"] == doc["result_hash"]
    arbiter = next(s for s in w.signers if s.address == w.dep.roles["arbiter"])
    slash = stake // 10
    tx = w.market.resolve(arbiter, oid, 0, slash)
    assert tx.event("Resolved") is not None
    settled = w.market.order(oid)
    assert settled.state == OrderState.RESOLVED and settled.paid == 0
    assert w.market.balance(buyer.address) >= before + o.escrow  # the whole escrow back, and compensation if any
    assert w.market.registry.provider(provider.address).stake == stake - slash


def httpx_post(base: str, path: str, body: bytes) -> int:
    import httpx

    return httpx.post(base + path, content=body, headers={"content-type": "application/octet-stream"}).status_code


def test_only_deterministic_wasm_orders_can_be_verified(served):  # noqa: F811
    w, engine, api = served
    h100, _, _ = HW
    for i in HW:
        w.register(i)
        engine.submit_lsa(lsa_with(w, i, RuntimeOffer(programs=("sha256sum",)) if i == h100 else None))
    spec = spec_of({"runtime": "native", "program": "sha256sum", "input": "", "cpu_s": 1})
    it, sig = w.signed(BUYER, spec)
    oid = engine.place_order(it, sig, spec)
    got = cona("order", "verify", str(oid), "--api", api.base)
    assert got.returncode == 2 and "cannot be verified by re-execution" in got.stderr
    assert Path(PACKAGE_ROOT).is_dir()
