"""The typed client of ``ProviderRegistry``: registration, stake, status and unbonding of providers.

``Registry`` speaks in ``ProviderInfo`` (the contract's ``provider(address)`` record) and
``Tx`` values, never raw tuples, and writes only through the transaction writer.
``ProviderInfo.of_fold`` builds the same record from the registry's events
(``marketplace.chain.lifecycle.fold_provider``), so a reader that follows the events needs no
call per event.

Invariant: ``ProviderInfo.prices`` has one price per device class (``DEVICE_CLASSES``, in the
order CPU, GPU, NPU, TPU); ``price(c)`` refuses a class outside ``1..DEVICE_CLASSES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from eth_utils import to_checksum_address

from marketplace.chain.client import ContractClient, EscrowCheck, Tx, b32, check_uint
from marketplace.chain.contracts import BoundContract, Chain
from marketplace.chain.indexer import arg_bytes
from marketplace.chain.lifecycle import ProviderFold, ProviderStatus
from marketplace.chain.timelock import Change, Timelock
from marketplace.chain.writer import as_signer
from marketplace.errors import InputError

DEVICE_CLASSES = 4


@dataclass(frozen=True)
class ProviderInfo:
    address: str
    status: ProviderStatus
    domain: int
    live_leases: int
    unbond_at: int
    stake: int
    hardware: bytes
    metadata: bytes
    prices: tuple[int, int, int, int]  # per device class CPU, GPU, NPU, TPU

    @classmethod
    def of_fold(cls, fold: ProviderFold) -> "ProviderInfo":
        """The registry's record as a provider's events describe it (``lifecycle.fold_provider``
        over every registry event since its ``Registered``): what ``Registry.provider`` reads."""
        return cls(to_checksum_address(fold.address), fold.status, fold.domain, fold.live_leases, fold.unbond_at,
                   fold.stake, arg_bytes(fold.hardware), arg_bytes(fold.metadata), tuple(fold.prices))

    def price(self, device_class: int) -> int:
        if not 1 <= device_class <= DEVICE_CLASSES:
            raise InputError(f"device class must be 1..{DEVICE_CLASSES}, got {device_class}", field="device_class")
        return self.prices[device_class - 1]


class Registry(ContractClient):
    """ProviderRegistry: registration, stake, status and unbonding of providers."""

    def __init__(self, chain: Chain, contract: BoundContract, token: BoundContract | None = None,
                 market: BoundContract | None = None) -> None:
        super().__init__(chain, contract, token)
        self._market = market

    def _contracts(self) -> list[BoundContract]:
        return [self.contract] + ([self._market] if self._market else [])

    def register(self, sender: Any, *, hardware: bytes, domain: int, prices: Sequence[int], stake: int,
                 metadata: bytes = b"\x00" * 32) -> Tx:
        signer = as_signer(sender)
        if len(prices) != DEVICE_CLASSES:
            raise InputError(f"prices must give one price per device class ({DEVICE_CLASSES})", field="prices")
        check_uint("domain", domain, 32)
        value = self._pay(signer, stake)
        return self._tx(signer, "register", b32("hardware", hardware), domain, b32("metadata", metadata),
                        list(prices), stake, value=value)

    def update(self, sender: Any, *, hardware: bytes, domain: int, prices: Sequence[int],
               metadata: bytes = b"\x00" * 32) -> Tx:
        return self._tx(sender, "update", b32("hardware", hardware), domain, b32("metadata", metadata), list(prices))

    def top_up(self, sender: Any, amount: int) -> Tx:
        signer = as_signer(sender)
        return self._tx(signer, "topUp", amount, value=self._pay(signer, amount))

    def pause(self, sender: Any) -> Tx:
        return self._tx(sender, "pause")

    def resume(self, sender: Any) -> Tx:
        return self._tx(sender, "resume")

    def begin_unbond(self, sender: Any) -> Tx:
        return self._tx(sender, "beginUnbond")

    def finish_unbond(self, sender: Any) -> Tx:
        return self._tx(sender, "finishUnbond")

    def withdraw(self, sender: Any) -> Tx:
        return self._tx(sender, "withdraw")

    def set_min_stake(self, operator: Any, value: int) -> Tx:
        """The least stake that makes a provider eligible, through the deployment's timelock (applied at
        once where its delay is 0, else ``ChangePending``)."""
        admin = self.chain.at("Timelock", self._admin())
        return Timelock(self.chain, admin, None).apply(operator, Change.call(self.contract, "setMinStake", value))

    def _admin(self) -> str:
        """The holder of the registry's OPERATOR_ROLE is its deployment's timelock: the market names it."""
        if self._market is None:
            raise InputError("this registry client has no market to find the timelock by", field="registry")
        return self._market.call("admin")

    # -- reads
    def provider(self, address: str) -> ProviderInfo:
        raw = self.contract.call("provider", address)
        status, domain, live, unbond_at, stake, hardware, metadata, prices = raw
        return ProviderInfo(to_checksum_address(address), ProviderStatus(status), domain, live, unbond_at, stake,
                            bytes(hardware), bytes(metadata), tuple(prices))

    def is_eligible(self, address: str) -> bool:
        return bool(self.contract.call("isEligible", address))

    def released(self, address: str) -> int:
        return self.contract.call("released", address)

    @property
    def min_stake(self) -> int:
        return self.contract.call("minStake")

    @property
    def unbonding_period(self) -> int:
        return self.contract.call("unbondingPeriod")

    def escrow_check(self) -> EscrowCheck:
        held = self.contract.call("held")
        staked = self.contract.call("totalStaked")
        released = self.contract.call("totalReleased")
        return EscrowCheck("ProviderRegistry", held, staked + released,
                           {"totalStaked": staked, "totalReleased": released})
