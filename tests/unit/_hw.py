"""Shared helpers for the discovery tests: real fixtures and ways to damage them."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hw"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def truncations(text: str) -> list[str]:
    """The text cut at a quarter, a half and three quarters, mid-line (as a killed tool leaves it)."""
    return [text[: len(text) * k // 4] for k in (1, 2, 3)]


def garble(text: str) -> str:
    """Every fifth line replaced by noise a parser cannot understand."""
    lines = text.splitlines(keepends=True)
    return "".join("\x00@@ garbled ;; {{ <\n" if i % 5 == 2 else ln for i, ln in enumerate(lines))
