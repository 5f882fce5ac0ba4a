"""The timelock client: role and setting changes are scheduled in public and applied after a delay.

The market's and the registry's admin (settings, orchestrators, ``minStake``) and the tier gate's
(verifiers) is the deployment's ``Timelock`` (OpenZeppelin's ``TimelockController``). A change is
one call on one of those contracts, wrapped: ``schedule`` publishes it (``CallScheduled``, with the
earliest time it may run), and ``execute`` runs it once ``minDelay`` seconds have passed. Users watch
the schedule and can leave (cancel orders, unbond) before a change reaches them.

The delay is a deployment setting: 0 on a local development chain (``apply`` then schedules and
executes in one go), at least a day elsewhere (``apply`` schedules and reports when it will be
ready; ``execute`` later runs it). Operation ids are the contract's own ``hashOperation``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from marketplace.chain.client import ContractClient, Tx, b32
from marketplace.chain.contracts import BoundContract
from marketplace.chain.writer import as_signer
from marketplace.errors import ChainError

log = logging.getLogger(__name__)

ZERO32 = b"\x00" * 32
#: the least delay a deployment outside a local development chain may choose
MIN_PRODUCTION_DELAY = 24 * 3600


class ChangePending(ChainError):
    """A change was scheduled and is not yet executable: run ``execute`` after ``ready_at``."""

    code = "change-pending"
    http_status = 409


@dataclass(frozen=True)
class Change:
    """One call the timelock will make: ``contract.data`` (with a salt that makes it unique)."""

    contract: BoundContract
    data: bytes
    salt: bytes
    description: str

    @property
    def target(self) -> str:
        return self.contract.address

    @classmethod
    def call(cls, contract: BoundContract, fn: str, *args: Any, salt: bytes | None = None) -> "Change":
        data = contract.abi.encode_call(fn, args)
        salt = salt if salt is not None else keccak(data + contract.address.encode())
        return cls(contract, data, b32("salt", salt), f"{contract.abi.name}.{fn}{tuple(args)!r}")


class Timelock(ContractClient):
    """A deployment's ``Timelock``: schedule, execute, and read the state of changes."""

    @property
    def min_delay(self) -> int:
        return self.contract.call("getMinDelay")

    def operation_id(self, change: Change) -> bytes:
        return bytes(self.contract.call("hashOperation", change.target, 0, change.data, ZERO32, change.salt))

    def ready_at(self, change: Change) -> int:
        """The time the change may run (0: never scheduled; 1: already done)."""
        return self.contract.call("getTimestamp", self.operation_id(change))

    def schedule(self, proposer: Any, change: Change, *, delay: int | None = None) -> Tx:
        delay = self.min_delay if delay is None else delay
        log.info("timelock %s: scheduling %s (delay %d s)", self.address, change.description, delay)
        return self._tx(proposer, "schedule", change.target, 0, change.data, ZERO32, change.salt, delay)

    def execute(self, executor: Any, change: Change) -> Tx:
        """Runs a scheduled change; the returned ``Tx`` carries the target's events too."""
        log.info("timelock %s: executing %s", self.address, change.description)
        rec = self.contract.transact(as_signer(executor), "execute", change.target, 0, change.data, ZERO32,
                                     change.salt)
        events = [ev for ev in (c.abi.decode_log(lg) for lg in rec.logs
                                for c in (self.contract, change.contract)
                                if to_checksum_address(lg["address"]) == c.address) if ev is not None]
        return Tx(rec, tuple(events))

    def apply(self, operator: Any, change: Change) -> Tx:
        """Schedule ``change`` and, when the delay is 0, execute it at once. With a delay, raise
        ``ChangePending`` naming when ``execute`` may run it."""
        scheduled = self.schedule(operator, change)
        if self.min_delay == 0:
            return self.execute(operator, change)
        raise ChangePending(f"{change.description} scheduled as 0x{self.operation_id(change).hex()}; "
                            f"executable from {self.ready_at(change)} (tx {scheduled.tx_hash})",
                            hint="run it then with `cona admin execute`")
