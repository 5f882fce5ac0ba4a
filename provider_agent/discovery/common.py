"""Shared pieces of the discovery parsers: warnings and tolerant number parsing.

Invariants:
- a parser never raises on the text it is given; what it cannot read becomes a
  ``DiscoveryWarning`` naming the source and the line or field at fault;
- numbers are parsed only from the text (``"81559 MiB"`` -> 81559); anything
  else (``N/A``, ``[N/A]``, ``Requested functionality has been deprecated``)
  is ``None``, never a default.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DiscoveryWarning:
    """Something a parser saw but could not use. ``source`` names the file or tool."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class Warnings:
    """Collects warnings for one parse and logs each once, with its source id."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._items: list[DiscoveryWarning] = []

    def add(self, message: str) -> None:
        log.warning("discovery %s: %s", self.source, message)
        self._items.append(DiscoveryWarning(self.source, message))

    def extend(self, items: "tuple[DiscoveryWarning, ...] | list[DiscoveryWarning]") -> None:
        self._items.extend(items)

    def freeze(self) -> tuple[DiscoveryWarning, ...]:
        return tuple(self._items)


_NUMBER = re.compile(r"^\s*\(?\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z/%]*)\s*\)?\s*$")

_MISSING = ("n/a", "[n/a]", "", "not supported", "[not supported]", "unknown error", "[unknown error]")


def is_missing(text: str | None) -> bool:
    if text is None:
        return True
    t = text.strip().lower()
    return t in _MISSING or t.startswith("requested functionality") or t.startswith("[requested functionality")


def number(text: str | None, unit: str | None = None) -> float | None:
    """``"81559 MiB"`` -> 81559.0; ``"(1502Mhz)"`` -> 1502.0; ``None`` for anything else.

    With ``unit`` the text must carry that unit (case-insensitive) or none at all.
    """
    if is_missing(text):
        return None
    m = _NUMBER.match(text or "")
    if not m:
        return None
    if unit is not None and m.group(2) and m.group(2).lower() != unit.lower():
        return None
    return float(m.group(1))


def integer(text: str | None, unit: str | None = None) -> int | None:
    value = number(text, unit)
    if value is None or value != int(value):
        return None
    return int(value)


def cpu_list(text: str) -> frozenset[int] | None:
    """The kernel's cpu list format (``"0-5,48-53"``) as a set; ``None`` if it does not parse."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return frozenset()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            return None
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo or hi - lo > 1 << 16:
            return None
        out.update(range(lo, hi + 1))
    return frozenset(out)


def truncation(text: str, w: Warnings) -> None:
    """A tool's output always ends with a newline; text that does not was cut."""
    if text and not text.endswith("\n"):
        w.add("text does not end with a newline: the output may be truncated")
