"""A lease's result: the bytes a provider uploads and the digest it commits on chain, defined once.

A run with no output files is encoded as it always was: ``status``, a zero byte, the exit code
as a signed 32-bit big-endian integer, then the workload's output (stdout).

A run that left output files is encoded ``status``, a 0x01 byte, the exit code, the length of
the manifest (uint32 BE), the manifest, then stdout. The manifest names every output file by
its sha256 digest, sorted by name: ``count`` (uint32 BE), then per file ``len(name)`` (uint16
BE), the name (UTF-8, a relative path with ``/`` separators), the size (uint64 BE) and the
32-byte sha256 of its content. The files themselves travel separately (as artifacts named by
those digests); the manifest in the committed bytes is what binds them to the result.

The provider commits ``keccak256`` of exactly these bytes with ``ComputeMarket.complete``; the
engine refuses an upload whose keccak is not the committed one, and the buyer's CLI checks the
bytes it downloads the same way, then each file against its manifest digest.

Pure: no I/O. Invariants: ``parse(encode(r)) == r`` for every record (statuses and names are
UTF-8); ``digest`` is the keccak of
``encode``'s bytes; a status never contains the bytes 0x00 or 0x01 (the separator tells the two
encodings apart); a record without files encodes byte-for-byte as before output files existed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from eth_utils import keccak

from marketplace.errors import InputError

#: separator after the status: 0x00 without output files (the original format), 0x01 with them
PLAIN, WITH_FILES = b"\x00", b"\x01"
MAX_NAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One output file of a run: its relative name, its size and the sha256 of its bytes."""

    name: str
    size: int
    sha256: bytes

    def __post_init__(self) -> None:
        try:
            raw = self.name.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"output file name {self.name!r} is not UTF-8", field="files.name") from None
        parts = self.name.split("/")
        if not raw or len(raw) > MAX_NAME_BYTES or "\x00" in self.name or self.name.startswith("/") \
                or any(p in ("", ".", "..") for p in parts):
            raise InputError(f"output file name {self.name!r} is not a relative path", field="files.name")
        if not 0 <= self.size < 2**64:
            raise InputError(f"output file {self.name}: size {self.size} out of range", field="files.size")
        if len(self.sha256) != 32:
            raise InputError(f"output file {self.name}: a sha256 digest is 32 bytes", field="files.sha256")

    @classmethod
    def of(cls, name: str, content: bytes) -> OutputFile:
        return cls(name, len(content), hashlib.sha256(content).digest())


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """What a workload run produced, as committed on chain. ``files`` are kept sorted by name."""

    status: str
    exit_code: int
    output: bytes
    files: tuple[OutputFile, ...] = ()

    def __post_init__(self) -> None:
        if "\x00" in self.status or "\x01" in self.status:
            raise InputError("a result status may not contain the bytes 0x00 or 0x01", field="status")
        files = tuple(sorted(self.files, key=lambda f: f.name.encode()))
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            raise InputError("an output file is named twice", field="files")
        object.__setattr__(self, "files", files)

    def encode(self) -> bytes:
        head = self.status.encode()
        code = self.exit_code.to_bytes(4, "big", signed=True)
        if not self.files:
            return head + PLAIN + code + self.output
        manifest = encode_manifest(self.files)
        return head + WITH_FILES + code + len(manifest).to_bytes(4, "big") + manifest + self.output

    @property
    def digest(self) -> bytes:
        """keccak-256 of ``encode()``: what the provider commits with ``complete``."""
        return result_digest(self.encode())


def encode_manifest(files: tuple[OutputFile, ...]) -> bytes:
    out = bytearray(len(files).to_bytes(4, "big"))
    for f in files:
        name = f.name.encode()
        out += len(name).to_bytes(2, "big") + name + f.size.to_bytes(8, "big") + f.sha256
    return bytes(out)


def decode_manifest(blob: bytes) -> tuple[OutputFile, ...] | None:
    """The files of a manifest, or ``None`` when the bytes are not one (truncated, trailing bytes,
    a bad name)."""
    if len(blob) < 4:
        return None
    count, pos, files = int.from_bytes(blob[:4], "big"), 4, []
    for _ in range(count):
        if pos + 2 > len(blob):
            return None
        size = int.from_bytes(blob[pos:pos + 2], "big")
        end = pos + 2 + size + 8 + 32
        if end > len(blob):
            return None
        try:
            name = blob[pos + 2:pos + 2 + size].decode()
        except UnicodeDecodeError:
            return None
        length = int.from_bytes(blob[pos + 2 + size:pos + 2 + size + 8], "big")
        try:
            files.append(OutputFile(name, length, blob[end - 32:end]))
        except InputError:
            return None
        pos = end
    return tuple(files) if pos == len(blob) else None


def result_digest(blob: bytes) -> bytes:
    """The on-chain result hash of uploaded result bytes."""
    return keccak(blob)


def parse_result(blob: bytes) -> ResultRecord | None:
    """The record in ``blob``, or ``None`` when the bytes are not in the result format."""
    cuts = [i for i in (blob.find(PLAIN), blob.find(WITH_FILES)) if i >= 0]
    cut = min(cuts, default=-1)
    if cut < 0 or len(blob) - cut - 1 < 4:
        return None
    status = blob[:cut].decode(errors="replace")  # shown to people: never fail on a provider's odd bytes
    code = int.from_bytes(blob[cut + 1:cut + 5], "big", signed=True)
    rest = blob[cut + 5:]
    if blob[cut] == 0:
        return ResultRecord(status, code, rest)
    if len(rest) < 4:
        return None
    size = int.from_bytes(rest[:4], "big")
    files = decode_manifest(rest[4:4 + size]) if len(rest) >= 4 + size else None
    if not files:  # a with-files record always has at least one file (else it is encoded plainly)
        return None
    try:
        return ResultRecord(status, code, rest[4 + size:], files)
    except InputError:
        return None
