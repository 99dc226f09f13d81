"""Percentiles of the small recent-sample windows kept for health and metrics."""

from __future__ import annotations

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of the values; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]
