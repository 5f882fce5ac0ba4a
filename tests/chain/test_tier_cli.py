"""``cona tier`` end to end, in process, against an anvil node this module owns.

The market is deployed with ``marketplace.chain.deploy`` into a temporary state directory;
the CLI finds it there and talks to the node only through ``--rpc-url`` (no dev accounts:
the operator signs with ``--operator-key-file``). A buyer makes a credential, the operator
issues it into tier 2, the buyer proves for an order, the market accepts the order, and the
same proof is refused on a second order with the gate's named error. Bad inputs fail with a
``ConaError`` that names the fault and carries a hint.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace.chain.backends import AnvilBackend
from marketplace.chain.contracts import Chain
from marketplace.chain.deploy import Deployment, MarketParams, deploy_market
from marketplace.chain.market import Market
from marketplace.chain.tiergate import GroupStore, TierGateClient
from marketplace.chain.writer import Signer
from marketplace.cli.tier import CredentialError, tier_app
from marketplace.errors import ConaError, InputError, NotFound, Rejected
from marketplace.settings import ProjectConfig
from tests.chain.market_env import GPU, PARAMS, PRICE, REQUIREMENT, reverts
from zk import generate_key
from zk.errors import GroupError, NotAMember

ROOT = Path(__file__).resolve().parents[2]
TIER = 2
PASSPHRASE = "correct horse battery staple"


@dataclass
class CliEnv:
    chain: Chain
    dep: Deployment
    market: Market
    gate: TierGateClient
    state: Path
    files: Path
    operator_key: Path
    passphrase: Path

    def invoke(self, *args: str, input: str | None = None):
        runner = CliRunner()
        chain = [] if args[0] == "keygen" else ["--rpc-url", self.chain.backend.url]  # keygen is offline
        return runner.invoke(tier_app, [*args, *chain, "--json"], input=input,
                             env={"CONA_DATA_DIR": str(self.state), "CONA_CHAIN": None, "CONA_RPC_URL": None})

    def ok(self, *args: str, input: str | None = None) -> dict:
        result = self.invoke(*args, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def fails(self, error: type[ConaError], *args: str, input: str | None = None) -> ConaError:
        result = self.invoke(*args, input=input)
        assert isinstance(result.exception, error), (result.exception, result.output)
        assert result.exception.hint or isinstance(result.exception, InputError), result.exception
        return result.exception


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory):
    project = ProjectConfig.load(ROOT)
    chain = Chain(AnvilBackend(project.root, project.mnemonic, accounts=10), project)
    try:
        state = tmp_path_factory.mktemp("state")
        dep = deploy_market(chain, state_dir=state, params=MarketParams(asset="eth", **PARAMS))
        files = tmp_path_factory.mktemp("files")
        operator_key = files / "operator.key"
        operator_key.write_text(chain.backend.accounts[0].key.hex() + "\n")
        passphrase = files / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        yield CliEnv(chain, dep, Market.from_deployment(chain, dep),
                     TierGateClient.at(chain, dep.address("TierGate")), state, files, operator_key, passphrase)
    finally:
        chain.close()


def _keygen(cli: CliEnv, name: str) -> tuple[Path, str]:
    out = cli.files / name
    res = cli.ok("keygen", "--out", str(out), "--passphrase-file", str(cli.passphrase))
    return out, res["public_key"]


def _order(cli: CliEnv, buyer: Signer):
    it = cli.market.intent(buyer.address, requirement=REQUIREMENT, device_class=GPU, units=1, duration=3600,
                           max_price=PRICE, tier=TIER)
    cli.market.deposit(buyer, it.escrow())
    return it


def _prove(cli: CliEnv, key: Path, digest: bytes, buyer: Signer, *extra: str) -> list[str]:
    return ["prove", "--key", str(key), "--tier", str(TIER), "--order-digest", "0x" + digest.hex(),
            "--beneficiary", buyer.address, "--passphrase-file", str(cli.passphrase), *extra]


def test_keygen_issue_prove_place_and_the_proof_fails_on_a_second_order(cli: CliEnv):
    buyer = cli.chain.signers[6]
    mine, my_pub = _keygen(cli, "buyer.cred")
    # the file is private, encrypted and never holds the secret in the clear
    assert stat.S_IMODE(os.stat(mine).st_mode) == 0o600
    doc = json.loads(mine.read_text())
    assert doc["public_key"] == my_pub and doc["crypto"]["kdf"] == "scrypt"
    # a second credential by prompt (no passphrase on the command line)
    prompted = cli.files / "prompted.cred"
    res = cli.ok("keygen", "--out", str(prompted), input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    others = [generate_key().public_key().hex() for _ in range(2)]

    issued = cli.ok("issue", "--tier", str(TIER), "--slots", "2", "--operator-key-file", str(cli.operator_key),
                    my_pub, res["public_key"], *others)
    assert issued["version"] == 1 and issued["members"] == 4 and issued["added"] == 4 and issued["tx_hash"]
    assert [b["size"] for b in issued["buckets"]] == [4]
    live = cli.gate.committed_group(TIER)
    assert ["0x" + c.hex() for c in live.commitments] == [b["commitment"] for b in issued["buckets"]]

    # one more member from a file: the group grows and is committed again (version 2)
    late = cli.files / "late.keys"
    late.write_text(f"# issued later\n{generate_key().public_key().hex()}\n\n")
    again = cli.ok("issue", "--tier", str(TIER), "--from", str(late), "--operator-key-file", str(cli.operator_key))
    assert (again["version"], again["members"], again["added"], again["slots"]) == (2, 5, 1, 2)
    # issuing keys already in the group sends nothing
    same = cli.ok("issue", "--tier", str(TIER), my_pub, "--operator-key-file", str(cli.operator_key))
    assert same["tx_hash"] is None and same["version"] == 2

    first = _order(cli, buyer)
    proof = cli.ok(*_prove(cli, mine, cli.market.digest(first), buyer))
    assert proof["slot"] == 0 and proof["ring_size"] == 5 and proof["checked_on_chain"]
    tx = cli.market.place_tx(buyer, first, bytes.fromhex(proof["proof"][2:]))
    oid = tx.event("OrderPlaced").args["order"]
    assert cli.market.order(oid).tier == TIER
    spent = [e for e in cli.gate.events(tx.receipt) if e.name == "NullifierSpent"]
    assert ["0x" + e.args["nullifier"].hex() for e in spent] == [proof["nullifier"]]

    second = _order(cli, buyer)
    with reverts("InvalidRingSignature"):  # the proof is bound to the first order
        cli.market.place(buyer, second, bytes.fromhex(proof["proof"][2:]))
    # the used slot is refused before anything is sent; the next free one is taken by default
    refused = cli.fails(Rejected, *_prove(cli, mine, cli.market.digest(second), buyer, "--slot", "0"))
    assert refused.reason == "NullifierAlreadySpent"
    proof2 = cli.ok(*_prove(cli, mine, cli.market.digest(second), buyer))
    assert proof2["slot"] == 1 and proof2["nullifier"] != proof["nullifier"]
    oid2 = cli.market.place(buyer, second, bytes.fromhex(proof2["proof"][2:]))
    assert cli.market.order(oid2).tier == TIER
    # both uses of the epoch are spent now
    third = _order(cli, buyer)
    out = cli.fails(Rejected, *_prove(cli, mine, cli.market.digest(third), buyer))
    assert out.reason == "no-free-slot"

    status = cli.ok("status", "--tier", str(TIER))
    assert status["current_epoch"] == 1
    [grp] = status["groups"]
    assert (grp["version"], grp["members"], grp["slots"], grp["spent"], grp["bucket_sizes"]) == (2, 5, 2, 2, [5])


def test_bad_inputs_fail_with_named_errors_and_hints(cli: CliEnv):
    buyer = cli.chain.signers[7]
    key, pub = _keygen(cli, "bad-inputs.cred")
    outsider, _ = _keygen(cli, "outsider.cred")
    cli.ok("issue", "--tier", "3", pub, generate_key().public_key().hex(), "--operator-key-file",
           str(cli.operator_key))
    digest = cli.market.digest(cli.market.intent(buyer.address, requirement=REQUIREMENT, device_class=GPU, units=1,
                                                 duration=60, max_price=PRICE, tier=3))
    base = ["--order-digest", "0x" + digest.hex(), "--beneficiary", buyer.address]

    wrong = cli.files / "wrong-passphrase"
    wrong.write_text("not the passphrase\n")
    err = cli.fails(CredentialError, "prove", "--key", str(key), "--tier", "3", *base, "--passphrase-file", str(wrong))
    assert "wrong passphrase" in err.message
    err = cli.fails(CredentialError, "prove", "--key", str(cli.files / "missing.cred"), "--tier", "3", *base,
                    "--passphrase-file", str(cli.passphrase))
    assert "no credential file" in err.message and "keygen" in err.hint

    ok = ["--passphrase-file", str(cli.passphrase)]
    err = cli.fails(NotFound, "prove", "--key", str(key), "--tier", "7", *base, *ok)
    assert "no group is committed for tier 7" in err.message and "3" in err.hint
    err = cli.fails(NotAMember, "prove", "--key", str(outsider), "--tier", "3", *base, *ok)
    assert "not in tier 3" in err.message
    cli.fails(InputError, "prove", "--key", str(key), "--tier", "0", *base, *ok)
    err = cli.fails(InputError, "prove", "--key", str(key), "--tier", "3", "--order-digest", "0x1234",
                    "--beneficiary", buyer.address, *ok)
    assert err.field == "order_digest"
    err = cli.fails(InputError, "prove", "--key", str(key), "--tier", "3", "--order-digest", "0x" + digest.hex(),
                    "--beneficiary", "nobody", *ok)
    assert err.field == "beneficiary"

    # a tampered group file is refused: its keys no longer hash to the committed buckets
    committed = cli.gate.committed_group(3)
    store = GroupStore.in_state_dir(cli.state, cli.chain.backend.chain_id, cli.gate.address)
    tampered = cli.files / "tampered.json"
    raw = json.loads(store.path_for(committed.commitments).read_text())
    raw["keys"][1] = generate_key().public_key().hex()
    del raw["commitments"]
    tampered.write_text(json.dumps(raw))
    err = cli.fails(GroupError, "prove", "--key", str(key), "--tier", "3", *base, *ok, "--group", str(tampered))
    assert "do not hash to the buckets committed on chain" in err.message

    # the operator's side: a stranger's key, a malformed public key, a credential never overwritten
    stranger = cli.files / "stranger.key"
    stranger.write_text(cli.chain.backend.accounts[9].key.hex())
    err = cli.fails(Rejected, "issue", "--tier", "3", pub, "--operator-key-file", str(stranger))
    assert "OPERATOR_ROLE" in err.message
    err = cli.fails(InputError, "issue", "--tier", "3", "0x" + "00" * 64, "--operator-key-file", str(cli.operator_key))
    assert "argument 1" in err.message
    cli.fails(InputError, "keygen", "--out", str(key), "--passphrase-file", str(cli.passphrase))
