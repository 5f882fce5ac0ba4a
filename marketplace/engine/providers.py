"""Providers as the engine knows them: the registry's record and the provider's own LSA, projected
into the matcher's ``Provider``.

``ProviderTable`` keeps, per address, the registry's record (``chain_info``: read from the
registry, or folded from its events with ``lifecycle.fold_provider``), the installed Compute
LSA (``lsas``) and whether the heartbeat monitor declared it failed (``offline``); it follows
the registry's ``minStake``. ``project(addr)`` is the matcher's view of one provider:

- hardware from the LSA, load from its availability for the provider's primary class;
- attachment node from the LSA when it is a node of the engine's topology (else none);
- price: ``price(addr, device_class)``, the one price rule: the LSA's price for that class,
  never above the registered price;
- the runtimes it serves from the LSA's RUNTIMES TLV (none: the shipped wasm modules only);
- domain and stake from the registry; status ACTIVE, DRAINING (paused, unbonding), RETIRED
  (exited) or OFFLINE (heartbeats missed).

Invariants: a provider is projected only with both an installed LSA and a registry record;
``chain_info`` is the chain's as of the event index (or a fresher registry read), and a
registry event is folded once, in chain order (from the index; a receipt's registry events are
applied by a read, which is idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Mapping

from eth_utils import to_checksum_address

from marketplace.chain.deploy import ZERO
from marketplace.chain.indexer import arg_bytes
from marketplace.chain.lifecycle import PROVIDER_EVENTS, ProviderFold, ProviderStatus as ChainStatus, fold_provider
from marketplace.chain.registry import ProviderInfo, Registry
from marketplace.convergence.lsa import ComputeLsa
from marketplace.errors import TopologyError
from marketplace.matching import Provider, ProviderStatus
from marketplace.resources.model import DeviceClass
from marketplace.routing import RoutingTable

log = logging.getLogger(__name__)

#: the matcher's status of a provider by its registry status (absent: retired)
MATCHING_STATUS = {ChainStatus.ACTIVE: ProviderStatus.ACTIVE, ChainStatus.PAUSED: ProviderStatus.DRAINING,
                   ChainStatus.UNBONDING: ProviderStatus.DRAINING}


def primary_class(lsa: ComputeLsa) -> DeviceClass:
    """The class a provider is matched as: its lowest accelerator class, or CPU without one."""
    classes = sorted({d.device_class for d in lsa.descriptor.devices if d.device_class != DeviceClass.CPU})
    return classes[0] if classes else DeviceClass.CPU


class ProviderTable:
    """The registry's records, the LSAs and liveness of the providers (see the module docstring)."""

    def __init__(self, registry: Registry, *, routing: RoutingTable | None, topology_name: str,
                 clock: Callable[[], float]) -> None:
        self.registry = registry
        self.routing = routing
        self.topology_name = topology_name
        self.clock = clock
        self.chain_info: dict[str, ProviderInfo] = {}
        self.lsas: dict[str, ComputeLsa] = {}
        self.offline: set[str] = set()
        #: each provider's registry events folded from the index, and those whose Registered it saw
        self.folds: dict[str, ProviderFold] = {}
        self.registered: set[str] = set()
        #: the registry's minStake, read once here and then followed through its SettingChanged events
        #: (read before the index replays them, so the last one applied is the chain's value)
        self.min_stake: int = registry.min_stake

    # -- the registry's record

    def info(self, addr: str, refresh: bool = False) -> ProviderInfo | None:
        """The registry's record of ``addr`` (read from the chain when not known yet, or ``refresh``)."""
        if refresh or addr not in self.chain_info:
            info = self.registry.provider(addr)
            if info.status == ChainStatus.NONE:
                return None
            self.chain_info[addr] = info
        return self.chain_info.get(addr)

    def known_originator(self, originator: bytes) -> bool:
        info = self.info(to_checksum_address(originator))
        return info is not None and info.status == ChainStatus.ACTIVE

    def eligible(self, addr: str) -> bool:
        """The contract's ``isEligible`` (Active, stake at least minStake) on the synced state: every
        change of a provider's status or stake emits an event that refreshes ``chain_info``, and
        minStake follows its ``SettingChanged`` events. A provider without a record is asked on chain."""
        info = self.chain_info.get(addr)
        if info is None:
            return self.registry.is_eligible(addr)
        return info.status == ChainStatus.ACTIVE and info.stake >= self.min_stake

    def apply(self, name: str, args: Mapping[str, Any], *, block: int, indexed: bool) -> str | None:
        """A registry event (``indexed``: from the event index, in chain order, once; else from one of
        the engine's own receipts). Returns the provider whose matching view may have changed."""
        if name == "SettingChanged":
            if arg_bytes(args["name"]).rstrip(b"\0") == b"minStake":
                self.min_stake = int(args["newValue"])
            return None
        who = args.get("provider")
        if not who or who == ZERO:
            return None
        addr = to_checksum_address(who)
        fold = self._fold(addr, name, args, block) if indexed and name in PROVIDER_EVENTS else None
        info = self.chain_info.get(addr)
        if name == "LeaseCountChanged" and info is not None:
            # the market's lease hooks change the live-lease count and nothing else, and the event
            # carries the new count: no registry read (one EVM call per assign and per end of lease),
            # and nothing the matcher reads has changed
            self.chain_info[addr] = replace(info, live_leases=int(args["liveLeases"]))
            return None
        if fold is not None:
            self.chain_info[addr] = ProviderInfo.of_fold(fold)
            return addr
        return addr if self.info(addr, refresh=True) is not None else None

    def _fold(self, addr: str, name: str, args: Mapping[str, Any], block: int) -> ProviderFold | None:
        """Fold one indexed registry event; the fold is the record only once it saw the Registered."""
        fold, problem = fold_provider(self.folds.get(addr), name, args, block=block)
        self.folds[addr] = fold
        if problem:
            log.warning("provider %s: %s", addr, problem)
        if name == "Registered":
            self.registered.add(addr)
        return fold if addr in self.registered else None

    # -- LSAs and liveness

    def raw_lsas(self) -> dict[str, bytes]:
        return {a: lsa.raw for a, lsa in self.lsas.items()}

    def mark_offline(self, addr: str) -> None:
        """The heartbeat monitor declared ``addr`` failed: matched as OFFLINE until it is heard again."""
        self.offline.add(addr)

    def mark_alive(self, addr: str) -> bool:
        """``addr`` was heard: True if it was offline (its projection changes)."""
        if addr not in self.offline:
            return False
        self.offline.discard(addr)
        return True

    # -- the projection

    def price(self, addr: str, device_class: int) -> int:
        """What the provider is paid per unit-hour for ``device_class``: its registered ask, or its LSA's
        price when that is higher (an LSA may raise the price at once; the contract refuses an assignment
        below the registered ask, so an LSA cannot lower it)."""
        ask = self.chain_info[addr].price(device_class)
        lsa = self.lsas.get(addr)
        offered = dict(lsa.prices).get(DeviceClass(device_class)) if lsa else None
        return ask if offered is None else max(offered, ask)

    def project(self, addr: str) -> Provider | None:
        """The matcher's ``Provider`` for ``addr`` (None without an LSA or a registry record)."""
        lsa = self.lsas.get(addr)
        info = self.chain_info.get(addr)
        if lsa is None or info is None:
            return None
        cls = primary_class(lsa)
        attach = lsa.attachment or None
        if attach is not None and self.routing is not None:
            try:
                self.routing.index(attach)
            except TopologyError:
                log.warning("provider %s attaches to %r, not a node of %s: no latency known", addr, attach,
                            self.topology_name)
                attach = None
        if addr in self.offline:
            status = ProviderStatus.OFFLINE
        else:
            status = MATCHING_STATUS.get(info.status, ProviderStatus.RETIRED)
        av = {a.device_class: a for a in lsa.availability}
        load = av[cls].load_bp / 10_000 if cls in av else 0.0
        return Provider(addr, lsa.descriptor, attach, self.price(addr, int(cls)), info.domain, status, info.stake,
                        min(1.0, load), self.clock(), 1.0, lsa.runtimes)
