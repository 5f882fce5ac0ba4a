"""``cona up`` on a real network (issue 13, item 2): an Ethereum node reached by URL, keys in V3
keystores, no unlocked account anywhere.

The node is anvil from ``node_modules`` started as a separate process with no accounts
(``--accounts 0``: ``eth_accounts`` is empty, so nothing can be sent unsigned) on a chain id that
is not a development chain's. The test funds the admin, the orchestrator and a buyer as a faucet
would (``anvil_setBalance``). Then:

- ``cona up --rpc-url URL --orchestrator-key-file F --passphrase-file P --deploy --admin-key-file A``
  deploys the market there, paid and administered by the admin, the engine signing as the
  orchestrator; a buyer's order is placed through the API;
- demo agents are refused there (they are funded from development accounts), before anything
  is deployed;
- after kill -9 of that ``cona up``, a new one with neither ``--deploy`` nor the admin's key
  resumes the recorded deployment on the same node: same contracts, the order still there;
- on a data directory that records no deployment, ``cona up`` without ``--deploy`` is refused
  with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.market import Market
from marketplace.chain.writer import Signer
from marketplace.client import ApiClient
from marketplace.settings import PACKAGE_ROOT, ConaSettings
from provider_agent import keystore
from tests.e2e.up_env import Buyer, Up

pytestmark = pytest.mark.e2e

CHAIN_ID = 4242  # not a development chain's id: the host treats the node as a real network
PASSPHRASE = "a long passphrase for the test keys"


@pytest.fixture
def node():
    backend = AnvilBackend(PACKAGE_ROOT, ConaSettings().project().mnemonic, accounts=0, chain_id=CHAIN_ID)
    try:
        yield backend
    finally:
        backend.close()


def _keystore(tmp_path, name: str) -> tuple[Signer, str]:
    key = os.urandom(32)
    path = tmp_path / f"{name}.json"
    keystore.create(path, PASSPHRASE, key=key, scrypt_n=2**14)
    return Signer(key), str(path)


def _faucet(node: AnvilBackend, address: str, eth: int = 100) -> None:
    node.request("anvil_setBalance", [address, hex(eth * 10**18)])


def _cona_up(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("CONA_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "marketplace.cli.main", "up", "--once", *args], cwd=PACKAGE_ROOT,
                          env=env, capture_output=True, text=True, timeout=180)


def test_up_on_a_node_without_unlocked_accounts_deploys_once_and_resumes(node, tmp_path):
    assert node.request("eth_accounts", []) == [], "the node must hold no unlocked account"
    admin, admin_file = _keystore(tmp_path, "admin")
    orchestrator, orch_file = _keystore(tmp_path, "orchestrator")
    for who in (admin, orchestrator):
        _faucet(node, who.address)
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    keys = ("--rpc-url", node.url, "--orchestrator-key-file", orch_file, "--passphrase-file", str(tmp_path / "pass"))
    data = tmp_path / "data"

    agents = _cona_up(tmp_path, *keys, "--deploy", "--admin-key-file", admin_file, "--data-dir", str(data),
                      "--providers", "1")
    assert agents.returncode != 0 and "need a local development chain" in agents.stdout + agents.stderr
    assert node.request("eth_getTransactionCount", [admin.address, "latest"]) == "0x0"  # nothing deployed

    up = Up(data, tmp_path / "up1.log", *keys, "--deploy", "--admin-key-file", admin_file, providers=0)
    try:
        with ApiClient(up.api) as api:
            dep = api.deployment()
        assert dep.chain_id == CHAIN_ID and dep.roles["orchestrator"] == orchestrator.address
        assert int(node.request("eth_getTransactionCount", [admin.address, "latest"]), 16) > 0  # the admin paid
        health = httpx.get(f"{up.api}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["checks"]["engine"]["ok"], health.text
        chain = Chain.open(ConaSettings(chain="rpc", rpc_url=node.url))
        try:
            market = Market.from_deployment(chain, dep)
            buyer = Buyer(Signer(os.urandom(32)), market, 0)
            _faucet(node, buyer.address)
            market.deposit(buyer.signer, 10**18)
            body, key = buyer.order("real network", deadline=market.chain_time() + 3600)
            with ApiClient(up.api) as api:
                oid = api.place_order(body, key)
        finally:
            chain.close()
    finally:
        up.kill_tree()  # kill -9, the whole tree
    deployed_with = node.request("eth_getTransactionCount", [admin.address, "latest"])

    again = Up(data, tmp_path / "up2.log", *keys, providers=0)  # no --deploy, no admin key: the record is used
    try:
        with ApiClient(again.api) as api:
            assert api.deployment().contracts == dep.contracts
            order = api.order(oid)
        assert order["state"] == "open" and order["buyer"].lower() == buyer.address.lower(), order
        assert node.request("eth_getTransactionCount", [admin.address, "latest"]) == deployed_with  # not again
    finally:
        again.stop()

    elsewhere = _cona_up(tmp_path, *keys, "--data-dir", str(tmp_path / "empty"), "--providers", "0")
    assert elsewhere.returncode != 0
    assert "deploy" in (elsewhere.stdout + elsewhere.stderr).lower(), elsewhere.stdout + elsewhere.stderr
