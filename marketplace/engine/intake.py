"""Providers' messages in: signed Compute LSAs and heartbeats, and the LSDB kept across restarts.

``Intake.submit_lsa`` installs an LSA in the link-state database only if its originator is a
registered, eligible provider (``unknown-originator`` otherwise) and its descriptor hashes to
the provider's on-chain hardware hash (``contradicts-registration`` otherwise); a rejection is
counted in the engine's ``rejected`` and logged. An installed LSA is kept raw with its arrival
time (``state_dir/lsdb/<provider>.json``) and projected into the matcher.

In a multi-domain market an LSA comes in two ways: posted here by a provider's agent (then
``on_installed`` hands it to the flooding peer, which sends it to every other engine), or flooded
here by another engine (``flood=False``: it goes through the same checks and is not handed back).
There an LSA must also name the domain its provider registered in (``contradicts-registration``),
so no provider can advertise itself into another engine's domain.

``heartbeat`` feeds the ``HeartbeatMonitor``; only a provider with an installed LSA may send
one (``unknown-provider`` otherwise, on which the agent advertises again at once), but a
heartbeat still proves alive a provider the monitor watches for a running lease.

``restore`` (on start) reinstalls the kept LSAs through the same checks, each with its
remaining lifetime aged by the time elapsed since it arrived (expired or disowned ones are
dropped, files included); ``age`` (once a second) drops the providers whose LSA ran out
without a refresh from matching (a lease such a provider runs is left to the heartbeats).

Invariants: the LSDB holds only LSAs whose originator the registry vouches for; a kept LSA's
lifetime never grows across a restart (the elapsed time is rounded up).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter
from typing import Any, Callable

from eth_utils import to_checksum_address

from marketplace.chain.lifecycle import ProviderStatus as ChainStatus
from marketplace.convergence.errors import LsaDecodeError
from marketplace.convergence.heartbeat import Heartbeat, HeartbeatMonitor
from marketplace.convergence.lsa import ComputeLsa, decode_header, decode_lsa, with_lifetime
from marketplace.convergence.lsdb import InstallResult, Lsdb
from marketplace.convergence.lsdb import Outcome as LsdbOutcome
from marketplace.engine.errors import HeartbeatRejected
from marketplace.engine.matcher import Matcher
from marketplace.engine.providers import ProviderTable
from marketplace.engine.store import EngineStore

log = logging.getLogger(__name__)


class Intake:
    """LSAs and heartbeats in (see the module docstring). Collaborators: the provider table and the
    matcher (what an LSA changes), the LSDB and the heartbeat monitor, the store (the LSDB copy),
    the engine's ``rejected`` counter, ``lock`` and ``clock``."""

    def __init__(self, *, table: ProviderTable, matcher: Matcher, lsdb: Lsdb, monitor: HeartbeatMonitor,
                 store: EngineStore, rejected: Counter[str], lock: threading.RLock,
                 clock: Callable[[], float]) -> None:
        self.table = table
        self.matcher = matcher
        self.lsdb = lsdb
        self.monitor = monitor
        self.store = store
        self.rejected = rejected
        self.lock = lock
        self.clock = clock
        self.aged_at = float("-inf")
        #: called with the raw bytes of every LSA installed from a provider (not from a peer), to flood it
        self.on_installed: Callable[[bytes], None] | None = None

    def submit_lsa(self, raw: bytes, *, persist: bool = True, flood: bool = True) -> InstallResult:
        """Install a provider's signed Compute LSA (see the module docstring for the checks); an
        installed one is kept in ``state_dir/lsdb`` (``persist``) so a restart reinstalls it, and
        handed to ``on_installed`` (``flood``) unless it came from a peer."""
        raw = bytes(raw)
        try:
            lsa = decode_lsa(raw)
        except LsaDecodeError:
            with self.lock:
                return self.lsdb.install(raw)  # counts and logs the decode fault under its reason
        addr = to_checksum_address(lsa.header.originator)
        with self.lock:
            info = self.table.info(addr, refresh=True)
            if info is None or info.status != ChainStatus.ACTIVE or not self.table.registry.is_eligible(addr):
                return self._reject("unknown-originator", f"{addr} is not a registered, eligible provider", lsa)
            if lsa.descriptor.digest() != info.hardware:
                return self._reject(
                    "contradicts-registration",
                    f"{addr}: descriptor digest 0x{lsa.descriptor.digest().hex()} is not the registered hardware "
                    f"0x{info.hardware.hex()}", lsa)
            if self.table.domain is not None and lsa.domain != info.domain:
                return self._reject("contradicts-registration",
                                    f"{addr}: the LSA names domain {lsa.domain}, the registry {info.domain}", lsa)
            arrived = self.clock()
            res = self.lsdb.install(raw)
            if res.outcome == LsdbOutcome.INSTALLED and res.lsa is not None and res.lsa.header.lifetime > 0:
                self.table.lsas[addr] = res.lsa
                self.matcher.refresh(addr)
                if persist:
                    self.store.put_lsa(addr, raw, arrived)
                if flood and self.on_installed is not None:
                    self.on_installed(raw)
            return res

    def _reject(self, reason: str, message: str, lsa: ComputeLsa) -> InstallResult:
        self.rejected[reason] += 1
        log.warning("LSA from %s seq %d rejected (%s): %s", lsa.header.originator.hex(), lsa.header.sequence,
                    reason, message)
        return InstallResult(LsdbOutcome.REJECTED, reason, lsa)

    def heartbeat(self, raw: dict[str, Any]) -> None:
        hb = Heartbeat.from_dict(raw)
        with self.lock:
            addr = to_checksum_address(hb.provider)
            if addr not in self.table.lsas:
                if self.monitor.last_seen(addr) is not None:
                    # a provider running a lease is watched whether or not we hold its LSA (after a
                    # restart that lost it): its signed heartbeat still proves it alive, so the
                    # lease is not failed while it re-advertises
                    self.monitor.observe(hb, self.clock())
                # "unknown-provider", not "unknown-originator": the remedy is the agent's, to
                # advertise again at once (e.g. after a restart that found no stored LSA of it)
                self.rejected["heartbeat-unknown-provider"] += 1
                raise HeartbeatRejected(f"heartbeat from {addr}, which has no installed LSA",
                                        reason="unknown-provider", field="provider",
                                        hint="post a signed Compute LSA to /v1/lsas")
            self.monitor.observe(hb, self.clock())
            if self.table.mark_alive(addr):
                log.info("provider %s is alive again", addr)
                self.matcher.refresh(addr)

    # -- the LSDB on disk: what an IS-IS router would lose on a restart, we keep

    def restore(self) -> None:
        """Reinstall the LSAs kept by an earlier run, each aged by the time elapsed since it arrived
        (its remaining lifetime then minus the seconds since), through the same checks as a fresh
        one (registered, eligible, hardware hash). Expired ones and ones the chain no longer
        vouches for are dropped, files included."""
        now = self.clock()
        kept = dropped = 0
        for path in self.store.stored_lsas():
            try:
                doc = json.loads(path.read_text())
                raw = bytes.fromhex(doc["raw"])
                header = decode_header(raw)
                remaining = header.lifetime - int(math.ceil(now - float(doc["arrived"])))
            except (OSError, ValueError, KeyError, TypeError, LsaDecodeError) as exc:
                log.warning("stored LSA %s unreadable (%s); dropped", path.name, exc)
                path.unlink(missing_ok=True)
                dropped += 1
                continue
            if remaining <= 0:
                log.info("stored LSA of %s seq %d expired %d s ago; dropped", path.stem, header.sequence, -remaining)
                path.unlink(missing_ok=True)
                dropped += 1
                continue
            res = self.submit_lsa(with_lifetime(raw, min(remaining, header.lifetime)), persist=False)
            if res.outcome == LsdbOutcome.INSTALLED:
                kept += 1
            else:
                log.info("stored LSA of %s seq %d not reinstalled (%s); dropped", path.stem, header.sequence,
                         res.reason or res.outcome.value)
                path.unlink(missing_ok=True)
                dropped += 1
        if kept or dropped:
            log.info("LSDB restored from %s: %d LSAs reinstalled with their aged lifetimes, %d dropped",
                     self.store.root / "lsdb", kept, dropped)

    def age(self, now: float) -> None:
        """Age the LSDB (at most once a second): a provider whose LSA ran out of lifetime without a
        refresh is no longer offered to the matcher, and its stored copy is dropped. A lease it is
        running is not touched here: heartbeats decide about those."""
        if now - self.aged_at < 1.0:
            return
        self.aged_at = now
        for raw in self.lsdb.tick():
            addr = to_checksum_address(decode_header(raw).originator)
            if self.table.lsas.pop(addr, None) is None:
                continue
            self.matcher.remove(addr)
            self.store.drop_lsa(addr)
            log.warning("provider %s: its LSA expired without a refresh; no longer matched", addr)
