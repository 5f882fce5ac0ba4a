"""Checkpoints of the embedded chain: py-evm's whole key-value store at a known head, so a start
replays only the blocks logged after it.

The block log stays the truth; a checkpoint is a shortcut to it. It is used only when it is whole
(its SHA-256 matches) and its head is a block of the log (same number, same hash); otherwise the
start replays the log from genesis and says why. A checkpoint is written whole (temporary file,
fsync, rename, directory fsync), from a copy of the store taken while the chain was still, so it
never mixes two heads.

Layout: the magic ``CONACKP`` and a version byte; a 4-byte length and a JSON header (``number``,
``hash``, ``entries``); the entries as (4-byte key length, 4-byte value length, key, value); and
the SHA-256 of everything before it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

MAGIC = b"CONACKP\x01"
_LEN = struct.Struct(">I")
_PAIR = struct.Struct(">II")
_DIGEST = 32


@dataclass(frozen=True)
class Checkpoint:
    number: int
    block_hash: bytes
    store: dict[bytes, bytes]


def write(path: Path, number: int, block_hash: bytes, store: Mapping[bytes, bytes]) -> int:
    """Write a checkpoint whole; returns its size in bytes."""
    header = json.dumps({"number": number, "hash": "0x" + block_hash.hex(), "entries": len(store)}).encode()
    parts = [MAGIC, _LEN.pack(len(header)), header]
    for key, value in store.items():
        parts += (_PAIR.pack(len(key), len(value)), key, value)
    body = b"".join(parts)
    body += hashlib.sha256(body).digest()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(body)


def read(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None (and a warning) if there is none or it is not whole."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if data[: len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + _LEN.size + _DIGEST \
            or hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        log.warning("checkpoint %s is damaged or from another version; replaying the block log instead", path)
        return None
    pos = len(MAGIC)
    (size,) = _LEN.unpack_from(data, pos)
    header = json.loads(data[pos + _LEN.size: pos + _LEN.size + size])
    pos += _LEN.size + size
    end = len(data) - _DIGEST
    store: dict[bytes, bytes] = {}
    while pos < end:
        klen, vlen = _PAIR.unpack_from(data, pos)
        pos += _PAIR.size
        store[data[pos:pos + klen]] = data[pos + klen:pos + klen + vlen]
        pos += klen + vlen
    if len(store) != header["entries"]:
        log.warning("checkpoint %s holds %d entries, its header says %d; replaying the block log instead",
                    path, len(store), header["entries"])
        return None
    return Checkpoint(int(header["number"]), bytes.fromhex(header["hash"][2:]), store)
