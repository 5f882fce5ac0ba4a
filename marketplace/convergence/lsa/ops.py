"""Codec tables, as FRR isisd's ``tlv_ops`` tables: one row per TLV or sub-TLV type.

A row (``TlvOps``) is everything the codec knows about one type: its wire code, the name
errors give it, the rule its length follows, how its value is decoded and encoded, and
where the value sits in the object being encoded. A table (``OpsTable``) holds the rows of
one level (the LSA's TLVs, the NODE TLV's sub-TLVs, a DEVICE TLV's sub-TLVs) indexed by
code. ``decode_subtlvs`` and ``encode_rows`` walk any table, so a new sub-TLV is a new row.
The rows themselves are in ``tables``; ``docs/tlv.md`` prints them.

Invariants:
- a table's rows are in strictly ascending code order: the order the encoder writes them;
- a code without a row is unknown: a sub-TLV of unknown type is skipped (the LSA's raw
  bytes still carry it); the top-level decoder keeps unknown TLVs (``decode``);
- a value whose length breaks its row's ``Length`` is refused before it is decoded; a
  row that is not ``repeated`` appears at most once (``DuplicateTlv``); a repeated sub-TLV
  comes in strictly ascending order of its values (``NonCanonical``);
- a decode function takes ``(data, start, end)`` of the value and returns the value or
  raises an ``LsaDecodeError`` whose offset is the byte at fault; an encode function
  takes the value and returns its bytes or raises ``LsaEncodeError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Callable, Iterable

from marketplace.convergence.errors import (
    BadValue,
    DuplicateTlv,
    LsaDecodeError,
    LsaEncodeError,
    MalformedTlv,
    NonCanonical,
)
from marketplace.convergence.lsa.wire import MAX_LSA_SIZE, SUB_TLV, TLV

Decoder = Callable[[bytes, int, int], Any]
Encoder = Callable[[Any], bytes]


class Level(Enum):
    """Where a table's rows sit: top-level TLVs (u16 length) or sub-TLVs of one (u8 length).
    The value is how errors name the level."""

    TLV = "TLV"
    SUB_TLV = "sub-TLV"


@dataclass(frozen=True, slots=True)
class Length:
    """A value's length rule: exactly ``size`` bytes or, when ``size`` is 0, any multiple of ``unit``."""

    size: int = 0
    unit: int = 1

    def fits(self, n: int) -> bool:
        return n == self.size if self.size else n % self.unit == 0

    def __str__(self) -> str:
        if self.size:
            return str(self.size)
        return "any" if self.unit == 1 else f"n × {self.unit}"


def exactly(size: int) -> Length:
    return Length(size=size)


def multiple_of(unit: int) -> Length:
    return Length(unit=unit)


ANY = Length()


@dataclass(frozen=True, slots=True)
class TlvOps:
    """One row of a codec table.

    ``get`` returns the value this row encodes from the object being encoded (a descriptor,
    a device, an ``LsaContent``), ``None`` when the field is absent; a ``required`` row is
    encoded even then (and its absence on the wire is an error). A ``repeated`` row's
    ``get`` returns the values in wire order. A row without ``encode`` is written elsewhere
    (the signature, by ``seal``). ``malformed`` is the error of a value of the wrong length.
    """

    code: IntEnum
    name: str
    length: Length
    decode: Decoder | None
    encode: Encoder | None
    get: Callable[[Any], Any] | None
    required: bool = False
    repeated: bool = False
    malformed: type[LsaDecodeError] = MalformedTlv
    #: ``fits[n]`` is 1 when a value of ``n`` bytes follows ``length``, for every n a TLV in
    #: an LSA can have (the decoders' loops index it instead of calling ``length.fits``)
    fits: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fits", bytes(self.length.fits(n) for n in range(MAX_LSA_SIZE)))


class OpsTable:
    """The rows of one level, by wire code.

    ``container`` names the TLV whose value the sub-TLVs make up ("node", "device"; None at
    the top level). ``slots`` is the size of the value list ``decode_subtlvs`` returns (a
    value's index is its code).
    """

    __slots__ = ("level", "container", "rows", "by_code", "slots", "max_length", "_header")

    def __init__(self, level: Level, container: str | None, rows: Iterable[TlvOps]) -> None:
        self.level = level
        self.container = container
        self.rows = tuple(rows)
        codes = [int(r.code) for r in self.rows]
        if codes != sorted(set(codes)) or not all(0 <= c <= 255 for c in codes):
            raise ValueError(f"{level.value} rows must have distinct codes 0..255 in ascending order: {codes}")
        by_code: list[TlvOps | None] = [None] * 256
        for r in self.rows:
            by_code[r.code] = r
        self.by_code: tuple[TlvOps | None, ...] = tuple(by_code)
        self.slots = codes[-1] + 1
        self._header = TLV if level is Level.TLV else SUB_TLV
        self.max_length = (1 << (8 * self._header.size - 8)) - 1  # the length field's range

    def __getitem__(self, code: int) -> TlvOps | None:
        return self.by_code[code]

    def bad_length(self, ops: TlvOps, n: int, at: int) -> LsaDecodeError:
        """The error of a value of ``n`` bytes that breaks ``ops.length`` (raised by the caller)."""
        if ops.length.size:
            return ops.malformed(f"{ops.name} {self.level.value} has {n} bytes, expected {ops.length.size}", offset=at)
        return ops.malformed(f"{ops.name} {self.level.value} of {n} bytes is not a multiple of {ops.length.unit}", offset=at)

    def pack(self, ops: TlvOps, value: bytes) -> bytes:
        """``value`` behind its type and length."""
        n = len(value)
        if n > self.max_length:
            raise LsaEncodeError(
                f"{ops.name} is {n} bytes on the wire; a {self.level.value} holds at most {self.max_length}", field=ops.name
            )
        return self._header.pack(ops.code, n) + value


def decode_subtlvs(data: bytes, pos: int, end: int, table: OpsTable) -> list[Any]:
    """The sub-TLVs in ``data[pos:end]`` decoded through ``table``: a list indexed by code, with
    ``None`` for an absent sub-TLV and a list of values for a repeated one.

    Checks every boundary, duplicate, length rule and the order of repeated values, in that
    order; the value checks are the rows' own. (A value is never ``None``, so ``values[t]``
    tells whether type ``t`` was seen.)
    """
    values: list[Any] = [None] * table.slots
    by_code = table.by_code
    ops = None
    v = pos
    try:
        while pos < end:
            v = pos + 2  # past the sub-TLV's type and length bytes
            if v > end:
                raise _overrun(table, pos, None, 0)
            t = data[pos]
            ln = data[pos + 1]
            nxt = v + ln
            if nxt > end:
                raise _overrun(table, pos, t, ln)
            ops = by_code[t]
            if ops is None:
                pass  # unknown: skipped
            elif not ops.repeated:
                if values[t] is not None:
                    raise DuplicateTlv(f"{table.container} sub-TLV {t} appears twice", offset=pos)
                if not ops.fits[ln]:
                    raise table.bad_length(ops, ln, pos)
                values[t] = ops.decode(data, v, nxt)
            else:
                if not ops.fits[ln]:
                    raise table.bad_length(ops, ln, pos)
                value = ops.decode(data, v, nxt)
                previous = values[t]
                if previous is None:
                    values[t] = [value]
                elif value > previous[-1]:
                    previous.append(value)
                else:
                    raise NonCanonical(f"{ops.name}s are not in strictly ascending order", offset=pos)
            pos = nxt
    except UnicodeDecodeError as exc:  # only text rows decode UTF-8, and ``ops`` is the one that failed
        raise BadValue(f"{ops.name} is not valid UTF-8", offset=v + exc.start) from None
    return values


def _overrun(table: OpsTable, pos: int, t: int | None, ln: int) -> MalformedTlv:
    outer = str(table.container).upper()
    if t is None:
        return MalformedTlv(f"{table.container} sub-TLV header overruns the {outer} TLV", offset=pos)
    return MalformedTlv(f"{table.container} sub-TLV {t} of {ln} bytes overruns the {outer} TLV", offset=pos)


def encode_rows(obj: Any, table: OpsTable) -> bytes:
    """Every row of ``table`` that ``obj`` has a value for, in code order, each behind its type and length."""
    out = bytearray()
    for ops in table.rows:
        if ops.encode is None or ops.get is None:
            continue
        value = ops.get(obj)
        if value is None and not ops.required:
            continue
        for item in value if ops.repeated else (value,):
            out += table.pack(ops, ops.encode(item))
    return bytes(out)
