"""In-memory trend history: one ring of rows (one per tick) and min/max/mean downsampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class HistoryRing:
    """Fixed-size ring of [time, values...] rows; float32 values keep 10 Hz cheap."""

    def __init__(self, capacity: int, width: int) -> None:
        self.capacity = capacity
        self.times = np.zeros(capacity)
        self.data = np.full((capacity, width), np.nan, dtype=np.float32)
        self.head = 0  # next row to write
        self.count = 0

    def append(self, t: float, row: np.ndarray) -> None:
        self.times[self.head] = t
        self.data[self.head] = row
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def window(self, since: float, columns: slice) -> tuple[np.ndarray, np.ndarray]:
        """Rows newer than `since` (epoch seconds), oldest first, for the given columns."""
        start = (self.head - self.count) % self.capacity
        order = (start + np.arange(self.count)) % self.capacity
        times = self.times[order]
        keep = times >= since
        return times[keep], self.data[order[keep], columns]


@dataclass(frozen=True)
class Downsampled:
    bucket_times: np.ndarray  # [points] bucket start, epoch seconds
    minimum: np.ndarray  # [points, tags], NaN where a bucket is empty
    maximum: np.ndarray
    mean: np.ndarray


def downsample(
    times: np.ndarray, values: np.ndarray, t0: float, t1: float, points: int
) -> Downsampled:
    """Min, max and mean per equal-width time bucket: spikes survive, unlike plain decimation."""
    width = values.shape[1] if values.ndim == 2 else 0
    edges = np.linspace(t0, t1, points + 1)
    shape = (points, width)
    lo, hi, mean = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    if len(times):
        bucket = np.clip(((times - t0) / (t1 - t0) * points).astype(np.intp), 0, points - 1)
        # Rows are time-ordered, so each non-empty bucket is one contiguous run.
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        occupied = bucket[starts]
        v = values.astype(np.float64)
        finite = np.isfinite(v)
        lo[occupied] = np.fmin.reduceat(v, starts, axis=0)
        hi[occupied] = np.fmax.reduceat(v, starts, axis=0)
        sums = np.add.reduceat(np.where(finite, v, 0.0), starts, axis=0)
        counts = np.add.reduceat(finite.astype(np.int64), starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[occupied] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Downsampled(edges[:-1], lo, hi, mean)
