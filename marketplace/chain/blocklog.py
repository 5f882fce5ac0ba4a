"""The embedded chain's block log: an append-only file of checksummed records, fsynced per append.

Layout: an 8-byte magic (``CONACHN`` and a format version), then records. A record is a 13-byte
header — kind (1 byte), payload length (4), CRC-32 of the payload (4), CRC-32 of those 9 bytes
(4) — and the payload. Kinds: ``GENESIS`` (the first record, JSON: how to rebuild block 0),
``BLOCK`` (a mined block, RLP), ``REWIND`` (the head went back to a block number: a snapshot
revert), ``CLOCK`` (the development time offset).

Invariants:
- ``append`` returns only after the records are on disk (one ``write``, then ``fdatasync``); the
  chain answers a transaction only after the block holding it was appended;
- a damaged end is a write that was cut (kill -9, power loss): an incomplete record, a last record
  whose payload checksum fails, or a zero-filled tail. It was never acknowledged, so ``open``
  drops it, truncates the file to the last whole record and says so in the log;
- damage anywhere else (a header checksum that fails, a payload checksum that fails with records
  after it) is refused with ``ChainLogCorrupt`` naming the byte offset: confirmed blocks are never
  dropped silently;
- one process at a time: the file is locked (``flock``) while open;
- a new log (or a compacted one) appears whole: written to a temporary file, fsynced, renamed,
  and the directory fsynced.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from marketplace.errors import ChainError, ChainLogCorrupt

log = logging.getLogger(__name__)

MAGIC = b"CONACHN\x01"
_HEAD = struct.Struct(">BII")  # kind, payload length, payload CRC-32
_HEAD_CRC = struct.Struct(">I")
HEADER_BYTES = _HEAD.size + _HEAD_CRC.size
#: no record is larger (a block is bounded by its gas limit: 30M gas of calldata is under 8 MB)
MAX_RECORD_BYTES = 64 * 1024 * 1024


class RecordKind(enum.IntEnum):
    GENESIS = 1
    BLOCK = 2
    REWIND = 3
    CLOCK = 4


@dataclass(frozen=True)
class Record:
    kind: RecordKind
    payload: bytes
    offset: int  # byte offset of the record's header in the file
    index: int  # 0 for the genesis record


_KINDS = frozenset(int(k) for k in RecordKind)
_RESTORE = "restore the data directory from a backup, or move it away to start afresh"


def _zero_from(data: bytes, start: int) -> bool:
    return data.count(0, start) == len(data) - start


def encode_record(kind: RecordKind, payload: bytes) -> bytes:
    head = _HEAD.pack(int(kind), len(payload), zlib.crc32(payload))
    return head + _HEAD_CRC.pack(zlib.crc32(head)) + payload


@dataclass(frozen=True)
class Scan:
    """What ``scan`` found: the whole records, where they end, and how many bytes after that were torn."""

    records: tuple[Record, ...]
    end: int
    torn_bytes: int


def scan(data: bytes, path: str = "<memory>") -> Scan:
    """Parse a log's bytes: whole records, and the torn tail after them (see the module invariants)."""
    if data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            return Scan((), 0, len(data))  # the creation itself was cut: nothing was ever acknowledged
        raise ChainLogCorrupt(f"{path} is not a CONA chain log (bad magic)", path=path, offset=0, record=0)
    records: list[Record] = []
    pos = len(MAGIC)
    size = len(data)
    while pos < size:
        if size - pos < HEADER_BYTES:
            break  # a cut header
        head = data[pos:pos + _HEAD.size]
        (head_crc,) = _HEAD_CRC.unpack_from(data, pos + _HEAD.size)
        kind, length, payload_crc = _HEAD.unpack(head)
        if zlib.crc32(head) != head_crc or length > MAX_RECORD_BYTES or kind not in _KINDS:
            if _zero_from(data, pos):
                break  # a tail the file system zero-filled after a power loss
            raise ChainLogCorrupt(f"{path}: record {len(records)} at byte {pos} has a damaged header; the log cannot "
                                  "be trusted past it", path=path, offset=pos, record=len(records), hint=_RESTORE)
        end = pos + HEADER_BYTES + length
        if end > size:
            break  # the record's write was cut
        payload = data[pos + HEADER_BYTES:end]
        if zlib.crc32(payload) != payload_crc:
            if end == size or _zero_from(data, end):
                break  # the last record, cut or never flushed: it was never acknowledged
            raise ChainLogCorrupt(f"{path}: record {len(records)} at byte {pos} fails its checksum and "
                                  f"{size - end} bytes of records follow it", path=path, offset=pos,
                                  record=len(records), hint=_RESTORE)
        records.append(Record(RecordKind(kind), payload, pos, len(records)))
        pos = end
    return Scan(tuple(records), pos, size - pos)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class BlockLog:
    """An open block log, positioned at its end for appends. Its directory is locked while it is open."""

    LOCK_NAME = "LOCK"

    def __init__(self, path: Path, fd: int, lock_fd: int, end: int, records: int) -> None:
        self.path = path
        self._fd = fd
        self._lock_fd = lock_fd
        self.size = end
        self.records_written = records

    @classmethod
    def open(cls, path: Path) -> tuple["BlockLog", tuple[Record, ...]]:
        """Open an existing log: lock its directory, read every whole record, drop a torn tail."""
        lock_fd = lock_directory(path.parent)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            found = scan(data, str(path))
            if found.torn_bytes:
                log.warning("chain log %s: dropping a torn tail of %d bytes after record %d (a write cut by a "
                            "crash, never acknowledged)", path, found.torn_bytes, len(found.records) - 1)
                os.ftruncate(fd, found.end)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.close(lock_fd)
            raise
        return cls(path, fd, lock_fd, found.end, len(found.records)), found.records

    @classmethod
    def create(cls, path: Path, records: Sequence[tuple[RecordKind, bytes]]) -> "BlockLog":
        """Write a new log whole (temporary file, fsync, rename, directory fsync), locked and open."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = lock_directory(path.parent)
        try:
            end = _write_whole(path, records)
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, fd, lock_fd, end, len(records))

    def rewrite(self, records: Sequence[tuple[RecordKind, bytes]]) -> None:
        """Replace the whole log by ``records`` (compaction), atomically: a crash leaves the old or the new."""
        end = _write_whole(self.path, records)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self.size, self.records_written = end, len(records)

    def append(self, records: Sequence[tuple[RecordKind, bytes]]) -> None:
        """Append records in one write and return once they are on disk."""
        if not records:
            return
        data = b"".join(encode_record(k, p) for k, p in records)
        try:
            _write_all(self._fd, data)
            os.fdatasync(self._fd)
        except OSError as exc:
            try:  # take back a partial write, so that a later append does not land after garbage
                os.ftruncate(self._fd, self.size)
            except OSError:
                pass  # the next open drops it as a torn tail
            raise ChainError(f"cannot append to the chain log {self.path}: {exc}",
                             hint="free disk space or fix the data directory's permissions, then restart") from exc
        self.size += len(data)
        self.records_written += len(records)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the file and release the directory's lock. Idempotent."""
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def _write_whole(path: Path, records: Sequence[tuple[RecordKind, bytes]]) -> int:
    tmp = path.with_name(path.name + ".tmp")
    body = MAGIC + b"".join(encode_record(k, p) for k, p in records)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return len(body)


def lock_directory(directory: Path) -> int:
    """Lock ``directory`` for this process (``flock`` on its LOCK file); returns the descriptor, whose
    closing releases the lock. ``ChainError`` if another process holds it."""
    fd = os.open(directory / BlockLog.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ChainError(f"the chain in {directory} is in use by another process",
                         hint="stop the other market using this data directory, or use another --data-dir") from None
    return fd
