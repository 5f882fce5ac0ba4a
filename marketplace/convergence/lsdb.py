"""The link-state database of Compute LSAs, and the originator of the node's own LSA.

Install rules follow ISO 10589 §7.3.15-16 and RFC 2328 §13:
- an LSA replaces the stored one for its key (type, originator) only when ``newer``:
  higher sequence; on a tie higher checksum; on a tie again, a purge (lifetime 0);
- an equal instance is a DUPLICATE (acknowledged, not flooded); an older one is OLDER
  (counted as "stale-sequence"; the caller sends its newer copy back, ``result.lsa``);
- a newer instance arriving less than ``min_arrival_interval`` after the last install of
  its key is TOO_SOON (RFC 2328 MinLSArrival): dropped, not acknowledged, so the
  neighbour retransmits it later and a flapping originator cannot drive a flood storm;
- remaining lifetimes count down with the injected clock; an LSA reaching 0 is purged:
  kept with lifetime 0 and flooded for ``zero_age_lifetime`` seconds (ISO 10589
  ZeroAgeLifetime), then removed; a received purge of a stored LSA does the same;
- a purge of an LSA the database never held is acknowledged and not stored.

Invariants:
- a rejected input never changes the database; it is counted in ``rejected`` under its
  reason (``malformed``, ``oversized``, ``bad-checksum``, ``wrong-type``, ``bad-signature``,
  ``unknown-originator``, ``bad-lifetime``, ``stale-sequence``);
- the signature is checked for every LSA that would change the database and for every
  "duplicate" whose bytes differ from the stored ones; nothing else costs a recovery;
- time comes only from ``clock``; the core never reads the wall clock.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterable, Iterator

from eth_utils import keccak

from marketplace.convergence.errors import (
    BadSignature,
    LsaDecodeError,
    LsaEncodeError,
    SequenceWrapPending,
    UnknownLsa,
)
from marketplace.convergence.lsa import (
    MAX_LSA_SIZE,
    MAX_SEQUENCE,
    ComputeLsa,
    LsaContent,
    LsaHeader,
    address_of,
    decode_header,
    decode_lsa,
    encode_lsa,
    newer,
    purge,
    recover_originator,
    with_lifetime,
)

log = logging.getLogger(__name__)

Key = tuple[int, bytes]


class Outcome(Enum):
    INSTALLED = "installed"
    DUPLICATE = "duplicate"
    OLDER = "older"
    REJECTED = "rejected"
    TOO_SOON = "too-soon"


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What ``Lsdb.install`` did. ``flood``: send the LSA on to the other neighbours;
    ``ack``: acknowledge it to the sender. For OLDER, ``lsa`` is the database's newer
    copy (send it back to the sender); otherwise the LSA that arrived, when it decoded."""

    outcome: Outcome
    reason: str | None = None
    lsa: ComputeLsa | None = None
    flood: bool = False
    ack: bool = False


@dataclass(slots=True)
class _Entry:
    lsa: ComputeLsa
    installed_at: float  # clock time when this instance was installed
    lifetime: int  # remaining lifetime at installed_at
    purged_at: float | None  # clock time its remaining lifetime reached 0

    def remaining(self, now: float) -> int:
        if self.purged_at is not None:
            return 0
        return max(0, self.lifetime - int(math.floor(now - self.installed_at)))

    def header(self, now: float) -> LsaHeader:
        h = self.lsa.header
        return LsaHeader(h.lsa_type, h.originator, h.sequence, self.remaining(now), h.checksum, h.length)


class Lsdb:
    """A link-state database of Compute LSAs keyed by (type, originator)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_age: int = 3600,
        zero_age_lifetime: int = 60,
        min_arrival_interval: float = 1.0,
        known_originators: Callable[[bytes], bool] | None = None,
        max_size: int = MAX_LSA_SIZE,
    ) -> None:
        if not 0 < max_size <= MAX_LSA_SIZE:
            raise LsaEncodeError(f"max_size must be within 1..{MAX_LSA_SIZE}", field="max_size")
        self._clock = clock
        self.max_age = max_age
        self.zero_age_lifetime = zero_age_lifetime
        self.min_arrival_interval = min_arrival_interval
        self._known = known_originators
        self.max_size = max_size
        self._db: dict[Key, _Entry] = {}
        self.rejected: Counter[str] = Counter()

    # ------------------------------------------------------------------ install

    def _reject(self, reason: str, message: str, lsa: ComputeLsa | None = None) -> InstallResult:
        self.rejected[reason] += 1
        log.info("LSA rejected (%s): %s", reason, message)
        return InstallResult(Outcome.REJECTED, reason, lsa)

    def install(self, raw: bytes) -> InstallResult:
        """Apply one received LSA to the database and say what to do about it."""
        raw = bytes(raw)
        now = self._clock()
        if len(raw) > self.max_size:
            return self._reject("oversized", f"{len(raw)} bytes exceeds {self.max_size}")
        try:
            lsa = decode_lsa(raw)
        except LsaDecodeError as exc:
            return self._reject(exc.reason, f"{exc} at offset {exc.offset}")
        h = lsa.header
        who = h.originator.hex()
        if self._known is not None and not self._known(h.originator):
            return self._reject("unknown-originator", f"originator {who} is not registered", lsa)
        if h.lifetime > self.max_age:
            return self._reject("bad-lifetime", f"{who} seq {h.sequence} lifetime {h.lifetime} > {self.max_age}", lsa)
        entry = self._db.get(h.key)
        if entry is None:
            if h.lifetime == 0:
                # ISO 10589 7.3.15.1: a purge of an LSP not held is acknowledged, not stored
                return InstallResult(Outcome.DUPLICATE, "purge-of-unknown", lsa, flood=False, ack=True)
            return self._accept(lsa, now, None)
        order = newer(LsaHeader(h.lsa_type, h.originator, h.sequence, h.lifetime, h.checksum, h.length),
                      entry.header(now))
        if order < 0:
            self.rejected["stale-sequence"] += 1
            log.debug("LSA %s seq %d older than held seq %d", who, h.sequence, entry.lsa.header.sequence)
            return InstallResult(Outcome.OLDER, "stale-sequence", entry.lsa, flood=False, ack=False)
        if order == 0:
            if raw[2:] != entry.lsa.raw[2:]:
                # same sequence and checksum but other bytes: only the signature can tell
                try:
                    recover_originator(lsa)
                except BadSignature as exc:
                    return self._reject("bad-signature", str(exc), lsa)
            return InstallResult(Outcome.DUPLICATE, None, lsa, flood=False, ack=True)
        if now - entry.installed_at < self.min_arrival_interval:
            log.debug("LSA %s seq %d arrived %.3fs after the last install", who, h.sequence, now - entry.installed_at)
            return InstallResult(Outcome.TOO_SOON, "min-arrival", lsa, flood=False, ack=False)
        return self._accept(lsa, now, entry)

    def _accept(self, lsa: ComputeLsa, now: float, old: _Entry | None) -> InstallResult:
        try:
            recover_originator(lsa)
        except BadSignature as exc:
            return self._reject("bad-signature", str(exc), lsa)
        h = lsa.header
        self._db[h.key] = _Entry(lsa, now, h.lifetime, now if h.lifetime == 0 else None)
        log.info(
            "LSA %s seq %d installed (%s)",
            h.originator.hex(),
            h.sequence,
            "purge" if h.lifetime == 0 else f"lifetime {h.lifetime}",
        )
        return InstallResult(Outcome.INSTALLED, None, lsa, flood=True, ack=True)

    # ------------------------------------------------------------------ ageing

    def tick(self) -> list[bytes]:
        """Age the database: LSAs whose lifetime ran out become purges (returned, to flood);
        purges older than ``zero_age_lifetime`` are removed."""
        now = self._clock()
        flood: list[bytes] = []
        for key in sorted(self._db):
            entry = self._db[key]
            if entry.purged_at is None:
                if entry.remaining(now) == 0:
                    entry.purged_at = entry.installed_at + entry.lifetime
                    flood.append(purge(entry.lsa.raw))
                    log.info("LSA %s seq %d expired; purging", key[1].hex(), entry.lsa.header.sequence)
            if entry.purged_at is not None and now - entry.purged_at >= self.zero_age_lifetime:
                del self._db[key]
                log.debug("purged LSA %s removed after ZeroAgeLifetime", key[1].hex())
        return flood

    # ------------------------------------------------------------------ queries

    def _live(self, entry: _Entry, now: float) -> bool:
        return entry.purged_at is None and entry.remaining(now) > 0

    def get(self, key: Key) -> ComputeLsa | None:
        """The live LSA under ``key`` (None when absent, expired or purged)."""
        entry = self._db.get(key)
        if entry is None or not self._live(entry, self._clock()):
            return None
        return entry.lsa

    def raw(self, key: Key) -> bytes:
        """The stored LSA's bytes with its current remaining lifetime (0 for a purge)."""
        entry = self._db.get(key)
        if entry is None:
            raise UnknownLsa(f"no LSA for originator {key[1].hex()} type {key[0]}", field="key")
        return with_lifetime(entry.lsa.raw, entry.remaining(self._clock()))

    def headers(self) -> list[LsaHeader]:
        """Every stored LSA's header with its current remaining lifetime, sorted by key:
        the content of a complete sequence number PDU (purges included)."""
        now = self._clock()
        return [self._db[k].header(now) for k in sorted(self._db)]

    def missing_or_older(self, headers: Iterable[LsaHeader]) -> list[LsaHeader]:
        """The neighbour's headers whose LSA we lack or hold an older copy of: what to request."""
        now = self._clock()
        out = []
        for h in headers:
            entry = self._db.get(h.key)
            if entry is None:
                if h.lifetime > 0:
                    out.append(h)
            elif newer(h, entry.header(now)) > 0:
                out.append(h)
        return out

    def newer_than(self, headers: Iterable[LsaHeader]) -> list[LsaHeader]:
        """Our headers that the neighbour (whose complete list ``headers`` is) lacks or holds
        older: what to send (fetch each with ``raw(h.key)``)."""
        now = self._clock()
        theirs = {h.key: h for h in headers}
        out = []
        for key in sorted(self._db):
            mine = self._db[key].header(now)
            other = theirs.get(key)
            if other is None:
                if mine.lifetime > 0:
                    out.append(mine)
            elif newer(mine, other) > 0:
                out.append(mine)
        return out

    def digest(self) -> bytes:
        """keccak256 over the sorted (type, originator, sequence, checksum) of the live LSAs;
        equal on two databases that hold the same instances, whatever their ages."""
        now = self._clock()
        parts = []
        for key in sorted(self._db):
            entry = self._db[key]
            if self._live(entry, now):
                h = entry.lsa.header
                parts.append(bytes((h.lsa_type,)) + h.originator + h.sequence.to_bytes(4, "big") + h.checksum.to_bytes(2, "big"))
        return keccak(b"".join(parts))

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for e in self._db.values() if self._live(e, now))

    def __iter__(self) -> Iterator[ComputeLsa]:
        now = self._clock()
        return iter([self._db[k].lsa for k in sorted(self._db) if self._live(self._db[k], now)])

    def __contains__(self, key: object) -> bool:
        return key in self._db


class Originator:
    """The node's own Compute LSA: sequence numbers, refresh timing and wrap.

    ``next(content)`` numbers, signs and returns the next instance. When the sequence
    number has reached ``MAX_SEQUENCE``, ``next`` instead returns the purge of the last
    instance and the originator waits ``max_age + zero_age_lifetime`` (every copy in the
    network has then aged out) before it restarts at sequence 1 (ISO 10589 §7.3.16.1,
    RFC 2328 §12.1.6); meanwhile ``next`` raises ``SequenceWrapPending``.
    """

    def __init__(
        self,
        key: bytes,
        clock: Callable[[], float],
        *,
        max_age: int = 3600,
        zero_age_lifetime: int = 60,
        refresh_interval: float | None = None,
        sequence: int = 0,
    ) -> None:
        self.key = bytes(key)
        self.address = address_of(self.key)
        self._clock = clock
        self.max_age = max_age
        self.zero_age_lifetime = zero_age_lifetime
        # IS-IS refreshes at 900 s for a 1200 s MaxAge: three quarters of the lifetime
        self.refresh_interval = refresh_interval if refresh_interval is not None else max_age * 0.75
        if not 0 < self.refresh_interval < max_age:
            raise LsaEncodeError("refresh_interval must be within (0, max_age)", field="refresh_interval")
        self.sequence = sequence
        self.last: bytes | None = None
        self.last_at: float | None = None
        self.wrap_until: float | None = None

    def next(self, content: LsaContent) -> bytes:
        now = self._clock()
        if self.wrap_until is not None:
            if now < self.wrap_until:
                raise SequenceWrapPending(
                    f"originator {self.address.hex()} wrapped its sequence; wait until {self.wrap_until}",
                    retry_at=self.wrap_until,
                )
            self.wrap_until = None
            self.sequence = 0
        if self.sequence >= MAX_SEQUENCE:
            self.wrap_until = now + self.max_age + self.zero_age_lifetime
            self.last_at = now
            log.warning("originator %s reached MAX_SEQUENCE; purging and waiting", self.address.hex())
            if self.last is None:
                raise SequenceWrapPending(
                    f"originator {self.address.hex()} starts at MAX_SEQUENCE", retry_at=self.wrap_until
                )
            return purge(self.last)
        self.sequence += 1
        self.last = encode_lsa(content, sequence=self.sequence, lifetime=self.max_age, key=self.key)
        self.last_at = now
        log.debug("originator %s issued seq %d", self.address.hex(), self.sequence)
        return self.last

    def refresh_due(self, now: float | None = None) -> bool:
        """True when the own LSA should be reissued: never issued, refresh interval passed,
        or a sequence wrap's wait is over."""
        now = self._clock() if now is None else now
        if self.wrap_until is not None:
            return now >= self.wrap_until
        return self.last_at is None or now - self.last_at >= self.refresh_interval

    def observe(self, header: LsaHeader) -> bool:
        """Note an LSA seen in the network. An instance of our own with a higher sequence
        (left from before a restart) makes us jump past it; returns True when we must reissue."""
        if header.originator != self.address or header.sequence <= self.sequence:
            return False
        log.info("originator %s saw its own seq %d > %d; jumping", self.address.hex(), header.sequence, self.sequence)
        self.sequence = header.sequence
        return True
