"""Small statistics helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
from typing import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def p50(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def rnd(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}") if x < 100 else round(x, 1)
