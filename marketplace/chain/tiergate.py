"""TierGate on chain: deployment, wiring, tier groups, epochs, and proof checks.

``deploy_tier_gate`` deploys the bLSAG verifier and the gate (the operator holds the admin
and operator roles); ``bind_market`` lets exactly one market consume proofs (once, for
good). ``TierGateClient`` is the typed client the engine, the CLI and the tests use:

- the operator: ``commit_group(operator, group)``, ``start_epoch(operator, epoch)``;
- a buyer: ``statement(tier, order_digest, buyer)`` -> the ``zk.Statement`` to prove for
  the current epoch, ``free_slot(secret, tier)`` -> a slot whose nullifier is unspent;
- anyone: ``check(statement, proof)`` (an ``eth_call`` of everything ``consume`` checks but
  the caller and the spent set), ``is_spent(nullifier)``, ``committed_groups()`` from the
  ``GroupCommitted`` events, ``committed_group(tier, epoch)`` -> the live commit.

The chain holds only the bucket commitments, never the keys: each commitment is the keccak-256
of its ring's bytes, so the group file that lists the keys (``TierGroup.to_json``) is
content-addressed by what the chain holds. ``GroupStore`` keeps published group files under
the id ``group_id(commitments)``: a prover finds the file from chain data alone and
``GroupStore.load`` accepts a file only if its buckets hash to the committed commitments,
so a group file may travel over any untrusted channel.

Every revert surfaces as ``TransactionReverted`` naming the custom error
(``InvalidRingSignature``, ``NullifierAlreadySpent``, ``RingNotCommitted``, ...).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak

from marketplace.chain.contracts import BoundContract, Chain, Event
from marketplace.chain.writer import Receipt, as_signer
from marketplace.errors import InputError, NotFound
from zk.blsag import Scope, Statement
from zk.encoding import SCHEME_BLSAG
from zk.errors import GroupError
from zk.groups import TierGroup
from zk.keys import SecretKey
from zk.tier import nullifier_for

log = logging.getLogger(__name__)

GATE = "TierGate"
VERIFIER = "BlsagVerifier"
OPERATOR_ROLE = keccak(b"OPERATOR_ROLE")


def deploy_tier_gate(chain: Chain, operator_signer: Any, admin: str | None = None) -> str:
    """Deploys BlsagVerifier and TierGate; returns the gate's address. ``admin`` (the deployment's
    timelock; the operator when omitted) registers verifiers, the operator commits groups and epochs,
    and the deployer (the operator) binds the market once."""
    signer = as_signer(operator_signer)
    verifier = chain.deploy(VERIFIER, sender=signer)
    gate = chain.deploy(GATE, admin or signer.address, signer.address, verifier.address, sender=signer)
    log.info("tier gate %s with bLSAG verifier %s", gate.address, verifier.address)
    return gate.address


def bind_market(chain: Chain, tier_gate_address: str, market_address: str, operator_signer: Any) -> Receipt:
    """Lets ``market_address`` (and only it, for good) call ``consume``."""
    gate = chain.at(GATE, tier_gate_address)
    return gate.transact(as_signer(operator_signer), "bindMarket", market_address)


def commit_group(chain: Chain, tier_gate_address: str, group: TierGroup, operator_signer: Any) -> Receipt:
    return TierGateClient.at(chain, tier_gate_address).commit_group(operator_signer, group)


@dataclass(frozen=True)
class GroupInfo:
    """What the gate holds for one (tier, epoch): version 0 means never committed."""

    tier: int
    epoch: int
    version: int
    slots: int
    buckets: int


@dataclass(frozen=True)
class Checked:
    commitment: bytes
    nullifier: bytes


@dataclass(frozen=True, slots=True)
class CommittedGroup:
    """One ``GroupCommitted`` event: what the chain holds for (tier, epoch) at ``version``."""

    tier: int
    epoch: int
    version: int
    slots: int
    commitments: tuple[bytes, ...]
    tx_hash: str
    block_number: int

    @property
    def group_id(self) -> str:
        return group_id(self.commitments)

    @classmethod
    def from_event(cls, ev: Event) -> "CommittedGroup":
        a = ev.args
        return cls(a["tier"], a["epoch"], a["version"], a["slots"], tuple(bytes(c) for c in a["commitments"]),
                   ev.tx_hash, ev.block_number)


def group_id(commitments: tuple[bytes, ...] | list[bytes]) -> str:
    """keccak256 of the concatenated bucket commitments, in committed order (0x-hex): the name
    of the group file, computable from one ``GroupCommitted`` event."""
    return "0x" + keccak(b"".join(commitments)).hex()


class GroupStore:
    """Published tier-group files, named by ``group_id``: ``<root>/<group id>.json``.

    Invariant: a file is accepted (``load``) only when its tier, epoch, slots and bucket
    commitments equal the commit it is loaded for, so the store may be shared or copied
    from anywhere.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def in_state_dir(cls, state_dir: Path, chain_id: int, gate: str) -> "GroupStore":
        return cls(Path(state_dir) / "tier-groups" / str(chain_id) / gate.lower())

    def path_for(self, commitments: tuple[bytes, ...] | list[bytes]) -> Path:
        return self.root / f"{group_id(commitments)}.json"

    def save(self, group: TierGroup) -> Path:
        path = self.path_for(list(group.commitments()))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(group.to_json() + "\n")
        tmp.replace(path)
        return path

    def load(self, committed: CommittedGroup, path: Path | None = None) -> TierGroup:
        """The group whose keys hash to ``committed``'s buckets (from ``path`` or the store)."""
        path = Path(path) if path is not None else self.path_for(committed.commitments)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise NotFound(
                f"no group file for tier {committed.tier} epoch {committed.epoch} (version {committed.version}, "
                f"group id {committed.group_id}) at {path}",
                hint="the operator publishes it with `cona tier issue`; pass the file you were given with --group",
                field="group") from None
        except OSError as exc:
            raise InputError(f"cannot read group file {path}: {exc.strerror}", field="group") from None
        group = TierGroup.from_json(text)
        where = f"tier {committed.tier} epoch {committed.epoch} version {committed.version}"
        if (group.tier, group.epoch, group.slots) != (committed.tier, committed.epoch, committed.slots):
            raise GroupError(
                f"group file {path} is tier {group.tier} epoch {group.epoch} with {group.slots} slot(s); the chain "
                f"holds {where} with {committed.slots} slot(s)", hint="use the group file of the live commit",
                field="group")
        if group.commitments() != committed.commitments:
            raise GroupError(f"the keys in {path} do not hash to the buckets committed on chain for {where}",
                             hint="the file is stale or altered: fetch the group file the operator published "
                                  "with the latest commit", field="group")
        return group

    def __repr__(self) -> str:
        return f"<GroupStore {self.root}>"


class TierGateClient:
    def __init__(self, chain: Chain, contract: BoundContract) -> None:
        self.chain = chain
        self.contract = contract
        self.address = contract.address

    @classmethod
    def at(cls, chain: Chain, address: str) -> "TierGateClient":
        return cls(chain, chain.at(GATE, address))

    def __repr__(self) -> str:
        return f"<TierGateClient {self.address}>"

    # -- reads
    @property
    def market(self) -> str:
        return self.contract.call("market")

    def verifier(self, scheme: int = SCHEME_BLSAG) -> BoundContract:
        return self.chain.at(VERIFIER, self.contract.call("verifiers", scheme))

    def current_epoch(self) -> int:
        return self.contract.call("currentEpoch")

    def group_info(self, tier: int, epoch: int | None = None) -> GroupInfo:
        epoch = self.current_epoch() if epoch is None else epoch
        version, slots, buckets = self.contract.call("group", tier, epoch)
        return GroupInfo(tier, epoch, version, slots, buckets)

    def is_committed(self, tier: int, epoch: int, commitment: bytes) -> bool:
        return self.contract.call("isCommitted", tier, epoch, commitment)

    def is_spent(self, nullifier: bytes) -> bool:
        return self.contract.call("spent", nullifier)

    def committed_groups(self, from_block: int = 0) -> list[Event]:
        """Every ``GroupCommitted`` event: the history of tier groups an auditor replays."""
        return self.contract.get_logs(from_block, event="GroupCommitted")

    def committed_group(self, tier: int, epoch: int | None = None) -> CommittedGroup | None:
        """The live commit for (tier, epoch) (the event of the gate's current version), or None."""
        info = self.group_info(tier, epoch)
        if info.version == 0:
            return None
        for ev in reversed(self.committed_groups()):
            c = CommittedGroup.from_event(ev)
            if (c.tier, c.epoch, c.version) == (tier, info.epoch, info.version):
                return c
        raise NotFound(f"tier {tier} epoch {info.epoch} is at version {info.version} but its GroupCommitted "
                       f"event is not in the node's logs",
                       hint="use a node that serves logs from the gate's deployment")

    def live_groups(self) -> list[CommittedGroup]:
        """The latest commit per (tier, epoch), in (epoch, tier) order."""
        latest: dict[tuple[int, int], CommittedGroup] = {}
        for ev in self.committed_groups():
            c = CommittedGroup.from_event(ev)
            latest[(c.tier, c.epoch)] = c  # logs come in chain order and each commit bumps the version
        return [latest[k] for k in sorted(latest, key=lambda te: (te[1], te[0]))]

    def spent_events(self) -> list[Event]:
        return self.contract.get_logs(0, event="NullifierSpent")

    def is_operator(self, address: str) -> bool:
        return self.contract.call("hasRole", OPERATOR_ROLE, address)

    # -- what a prover needs
    def statement(self, tier: int, order_digest: bytes, beneficiary: str, *, epoch: int | None = None,
                  market: str | None = None) -> Statement:
        """The statement the market will ask the gate to check for this order."""
        return Statement(
            chain_id=self.chain.backend.chain_id,
            gate=self.address,
            market=market or self.market,
            epoch=self.current_epoch() if epoch is None else epoch,
            tier=tier,
            order_digest=order_digest,
            beneficiary=beneficiary,
        )

    def free_slot(self, secret: SecretKey, tier: int, *, epoch: int | None = None) -> int | None:
        """The lowest slot this member has not used yet in the epoch, or None when all are spent."""
        info = self.group_info(tier, epoch)
        for slot in range(info.slots):
            scope = Scope(self.chain.backend.chain_id, self.address, info.epoch, tier, slot)
            if not self.is_spent(nullifier_for(secret, scope)):
                return slot
        return None

    def check(self, statement: Statement, proof: bytes) -> Checked:
        """Everything ``consume`` would check, as an ``eth_call`` (raises TransactionReverted)."""
        commitment, nullifier = self.contract.call(
            "check", statement.tier, statement.epoch, statement.order_digest, statement.beneficiary,
            statement.market, proof)
        return Checked(commitment, nullifier)

    # -- writes
    def commit_group(self, operator: Any, group: TierGroup) -> Receipt:
        commitments = list(group.commitments())
        rec = self.contract.transact(as_signer(operator), "commitGroup", group.tier, group.epoch, group.slots,
                                     commitments)
        log.info("tier %d epoch %d: committed %d bucket(s) of %d keys, %d slot(s)", group.tier, group.epoch,
                 len(commitments), len(group), group.slots)
        return rec

    def start_epoch(self, operator: Any, epoch: int) -> Receipt:
        return self.contract.transact(as_signer(operator), "startEpoch", epoch)

    def consume(self, market_signer: Any, statement: Statement, proof: bytes, *, gas: int | None = None) -> Receipt:
        """Calls ``consume`` directly: only works from the bound market's address (tests bind an
        account as the market to exercise the gate alone)."""
        if statement.gate != self.address:
            raise InputError(f"the statement is for gate {statement.gate}, not {self.address}", field="gate")
        return self.contract.transact(as_signer(market_signer), "consume", statement.tier, statement.epoch,
                                      statement.order_digest, statement.beneficiary, proof, gas=gas)

    def events(self, receipt: Receipt) -> list[Event]:
        return self.contract.events(receipt)
