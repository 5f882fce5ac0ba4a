"""A lease's result: the bytes a provider uploads and the digest it commits on chain, defined once.

The result of a run is ``status``, a zero byte, the exit code as a signed 32-bit big-endian
integer, then the workload's output (stdout). The provider commits ``keccak256`` of exactly
these bytes with ``ComputeMarket.complete``; the engine refuses an upload whose keccak is not
the committed one, and the buyer's CLI checks the bytes it downloads the same way.

Pure: no I/O. Invariant: ``parse(encode(r)) == r`` for every record, and ``digest`` is the
keccak of ``encode``'s bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """What a workload run produced, as committed on chain."""

    status: str
    exit_code: int
    output: bytes

    def encode(self) -> bytes:
        return self.status.encode() + b"\x00" + self.exit_code.to_bytes(4, "big", signed=True) + self.output

    @property
    def digest(self) -> bytes:
        """keccak-256 of ``encode()``: what the provider commits with ``complete``."""
        return result_digest(self.encode())


def result_digest(blob: bytes) -> bytes:
    """The on-chain result hash of uploaded result bytes."""
    return keccak(blob)


def parse_result(blob: bytes) -> ResultRecord | None:
    """The record in ``blob``, or ``None`` when the bytes are not in the result format."""
    status, sep, rest = blob.partition(b"\x00")
    if not sep or len(rest) < 4:
        return None
    return ResultRecord(status.decode(errors="replace"), int.from_bytes(rest[:4], "big", signed=True), rest[4:])
