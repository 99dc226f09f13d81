"""Percentiles of the small recent-sample windows kept for health and metrics."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field


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


@dataclass
class TickStats:
    """What a fixed-rate tick counts about itself, read by /metrics and /api/health/websocket."""

    errors: int = 0
    ticks: int = 0
    tick_overruns: int = 0
    tick_ms: deque[float] = field(default_factory=lambda: deque(maxlen=3000))
    tick_seconds_sum: float = 0.0  # every tick's duration, for the metrics summary's _sum
