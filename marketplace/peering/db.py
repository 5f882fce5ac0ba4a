"""The binding of flooding to ``marketplace.convergence.lsdb.Lsdb``: summaries and raw bytes per key.

Flooding compares LSA instances by summary (``SnpEntry``) and sends raw bytes. The LSDB
keeps purges (lifetime 0) for ZeroAgeLifetime and they must be flooded and summarised like
any other instance, so every view here goes through ``Lsdb.raw`` (which includes purges
and patches in the current remaining lifetime), never ``Lsdb.get`` (live LSAs only).
"""

from __future__ import annotations

from typing import Callable

from marketplace.convergence.lsa import LsaHeader, decode_header
from marketplace.convergence.lsdb import Lsdb
from marketplace.peering.wire import Key, SnpEntry


def entry_of(h: LsaHeader) -> SnpEntry:
    return SnpEntry(h.lsa_type, h.originator, h.sequence, h.lifetime, h.checksum)


def open_lsdb(config, clock: Callable[[], float]) -> Lsdb:
    return Lsdb(clock, max_age=config.max_age, zero_age_lifetime=config.zero_age_lifetime,
                min_arrival_interval=config.min_arrival_interval)


class LsdbView:
    """``flooding.LsdbAccess`` over an ``Lsdb``."""

    __slots__ = ("lsdb",)

    def __init__(self, lsdb: Lsdb) -> None:
        self.lsdb = lsdb

    def summary(self, key: Key) -> SnpEntry | None:
        if key not in self.lsdb:
            return None
        return entry_of(decode_header(self.lsdb.raw(key)))

    def summaries(self) -> list[SnpEntry]:
        return [entry_of(h) for h in self.lsdb.headers()]

    def raw_now(self, key: Key) -> bytes | None:
        if key not in self.lsdb:
            return None
        return self.lsdb.raw(key)

    def key_of(self, raw: bytes) -> Key:
        return decode_header(raw).key
