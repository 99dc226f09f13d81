"""Percentiles of the small recent-sample windows kept for health and metrics."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1): the smallest value with at least q of the values
    at or below it (rank ceil(q * n), at least 1). None when there are none. The one
    definition: health, metrics, poll latency and alarm KPIs all use it."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[nearest_rank(len(ordered), q) - 1]


def percentile_rounded(values: Iterable[float], q: float, digits: int = 3) -> float | None:
    """`percentile`, rounded for a JSON status page (None stays None)."""
    value = percentile(values, q)
    return None if value is None else round(value, digits)


def nearest_rank(n: int, q: float) -> int:
    """The 1-based rank of the q-percentile among n > 0 sorted values (for SQL OFFSETs)."""
    # Rounded first: 0.07 * 100 is 7.000000000000001 in floats, and must be rank 7.
    return min(n, max(1, math.ceil(round(q * n, 9))))
