"""Who governs a market, and every change they made, from its events, checked against its views.

A market's rules change only through its admin (a timelock on any real network, docs/trust.md):
new terms (``SettingsChanged``: a new version; orders keep the version they were placed under),
orchestrators allowed or revoked (``OrchestratorSet``), the registry's least stake
(``SettingChanged``). ``governance`` folds those events and checks the fold against the
contracts at the same block: every version's terms as the event states them against
``terms(version)``, the last version against ``termsVersion``, every orchestrator the events
name against ``orchestrators(address)``, the last least stake against ``minStake``. A mismatch
(an event the index missed, a contract whose storage moved without an event) is named in
``mismatches``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

from eth_utils import to_checksum_address

from marketplace.chain.audit_values import MARKET, REGISTRY, HistoryEntry, as_int
from marketplace.chain.indexer import IndexedEvent
from marketplace.chain.market import Market, MarketTerms
from marketplace.errors import ConaError

#: the order of ``IComputeMarket.Settings``'s fields in a ``SettingsChanged`` event
TERMS_ARGS = ("feeBps", "missSlashBps", "failSlashBps", "disputeSlashBps", "acceptWindow", "disputeWindow",
              "arbitrationWindow", "runGrace", "arbiter")


@dataclass(frozen=True)
class TermsVersion:
    version: int
    terms: MarketTerms
    entry: HistoryEntry

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "terms": asdict(self.terms), "block": self.entry.block,
                "timestamp": self.entry.timestamp, "tx_hash": self.entry.tx_hash}


@dataclass(frozen=True)
class GovernanceAudit:
    """A market's admin and every change of its rules, as of ``block``."""

    block: int
    market: str
    admin: str
    admin_delay: int | None  # the timelock's least delay in seconds; None when the admin is no timelock
    terms: tuple[TermsVersion, ...]
    orchestrators: dict[str, bool]  # every address the events name: allowed now?
    changes: tuple[HistoryEntry, ...]  # every governance event, in chain order
    mismatches: tuple[str, ...]

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "market": self.market, "admin": self.admin, "admin_delay": self.admin_delay,
                "terms": [t.to_dict() for t in self.terms], "orchestrators": dict(self.orchestrators),
                "changes": [c.to_dict() for c in self.changes], "consistent": self.consistent,
                "mismatches": list(self.mismatches)}


def governance(market: Market, events: Callable[..., list[IndexedEvent]], call: Callable[..., Any],
               block: int) -> GovernanceAudit:
    """The fold of ``market``'s governance events (``events(contract, name)``, up to ``block``) and its check
    against the contracts' views (``call(contract, fn, *args)`` at ``block``)."""
    mismatches: list[str] = []
    versions = []
    for e in events(MARKET, "SettingsChanged"):
        version = as_int(e.args["version"])
        stated = MarketTerms.from_chain([e.args[k] for k in TERMS_ARGS])
        held = MarketTerms.from_chain(call(market.contract, "terms", version))
        if stated != held:
            mismatches.append(f"terms version {version}: the event states {stated.as_tuple()}, "
                              f"the contract holds {held.as_tuple()}")
        versions.append(TermsVersion(version, stated, HistoryEntry.of(e)))
    current = as_int(call(market.contract, "termsVersion"))
    if current != (versions[-1].version if versions else 0):
        mismatches.append(f"termsVersion is {current}, the events' last version "
                          f"{versions[-1].version if versions else 'none'}")
    orchestrators: dict[str, bool] = {}
    for e in events(MARKET, "OrchestratorSet"):
        orchestrators[to_checksum_address(e.args["orchestrator"])] = bool(e.args["allowed"])
    for who, allowed in orchestrators.items():
        if bool(call(market.contract, "orchestrators", who)) != allowed:
            mismatches.append(f"orchestrator {who}: the events say {'allowed' if allowed else 'revoked'}, "
                              f"the contract says the opposite")
    settings = events(REGISTRY, "SettingChanged")
    stakes = [e for e in settings if _name(e.args["name"]) == "minStake"]
    if stakes and as_int(stakes[-1].args["newValue"]) != as_int(call(market.registry.contract, "minStake")):
        mismatches.append(f"minStake: the events' last value {as_int(stakes[-1].args['newValue'])}, the registry "
                          f"holds {as_int(call(market.registry.contract, 'minStake'))}")
    admin = to_checksum_address(call(market.contract, "admin"))
    try:
        delay: int | None = market.timelock.min_delay
    except ConaError:  # an admin that is no timelock (an account, a multisig) answers no getMinDelay
        delay = None
    changes = sorted([*(v.entry for v in versions), *(HistoryEntry.of(e) for e in events(MARKET, "OrchestratorSet")),
                      *(HistoryEntry.of(e) for e in settings)], key=lambda h: (h.block, h.log_index))
    return GovernanceAudit(block, market.address, admin, delay, tuple(versions), orchestrators, tuple(changes),
                           tuple(mismatches))


def _name(raw: Any) -> str:
    """A ``bytes32`` setting name (``"minStake"`` padded with zeros) as text."""
    data = bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)
    return data.rstrip(b"\0").decode("ascii", "replace")
