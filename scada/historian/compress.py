"""Optional per-tag compression of raw samples: which samples of a chunk to keep.

Both methods keep the first and last sample of a chunk, every sample that is not good and
its neighbours, and every sample after a gap, so qualities and gaps survive exactly.

- deadband: a sample is kept when it differs from the last kept one by more than the
  deviation; holding the last kept value reproduces every dropped sample within it.
- swinging_door: a sample is dropped while a straight line from the last kept sample can
  pass within the deviation of every sample since; linear interpolation between kept
  samples reproduces every dropped one within it.

Rollups are computed from all samples before compression, so they stay exact.
"""

from __future__ import annotations

import numpy as np

from scada.historian.codec import GAP_FLAG as GAP_FLAG_BIT
from scada.historian.codec import GOOD, QUALITY_MASK, Samples


def _pinned(s: Samples) -> np.ndarray:
    n = len(s)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    keep[0] = keep[-1] = True
    special = ((s.q & QUALITY_MASK) != GOOD) | (s.q != (s.q & QUALITY_MASK)) | ~np.isfinite(s.v)
    keep |= special
    keep[:-1] |= special[1:]  # the last good value before it
    keep[1:] |= special[:-1]  # the first good value after it
    return keep


def deadband(s: Samples, deviation: float) -> np.ndarray:
    keep = _pinned(s)
    values = s.v.astype(np.float64).tolist()
    pinned = keep.tolist()
    last = values[0] if values else 0.0
    for i, v in enumerate(values):
        if pinned[i] or abs(v - last) > deviation:
            keep[i] = True
            last = v
    return keep


def swinging_door(s: Samples, deviation: float) -> np.ndarray:
    keep = _pinned(s)
    t = s.t.astype(np.float64).tolist()
    v = s.v.astype(np.float64).tolist()
    pinned = keep.tolist()
    n = len(t)
    a = 0
    lo, hi = -np.inf, np.inf  # slopes from `a` that pass every sample between
    i = 1
    while i < n:
        dt = t[i] - t[a]
        slope = (v[i] - v[a]) / dt if dt else 0.0
        if not lo <= slope <= hi:
            # No line from `a` to here passes every sample between: keep the one before
            # (the line to it did), and look at this one again from there.
            a = i - 1
            keep[a] = True
            lo, hi = -np.inf, np.inf
            continue
        if pinned[i]:
            a = i
            lo, hi = -np.inf, np.inf
        elif dt:
            lo = max(lo, (v[i] - deviation - v[a]) / dt)
            hi = min(hi, (v[i] + deviation - v[a]) / dt)
        i += 1
    return keep


METHODS = {"deadband": deadband, "swinging_door": swinging_door}


def reconstruct(kept: Samples, t: np.ndarray, method: str) -> np.ndarray:
    """Values at times `t` as a reader of the kept samples sees them."""
    if method == "deadband":
        idx = np.searchsorted(kept.t, t, side="right") - 1
        held: np.ndarray = kept.v[np.clip(idx, 0, len(kept) - 1)].astype(np.float64)
        return held
    between: np.ndarray = np.interp(t, kept.t, kept.v.astype(np.float64))
    return between


def expand(kept: Samples, resolution_ms: int, method: str) -> Samples:
    """Kept samples back on the sampling grid, so buckets between them are not empty.

    Between two kept samples (unless the later one follows a gap) every grid point gets the
    reconstructed value and the earlier sample's quality."""
    if len(kept) < 2:
        return kept
    steps = np.diff(kept.t) // resolution_ms
    steps[(kept.q[1:] & GAP_FLAG_BIT) != 0] = 1  # never fill across a gap
    steps = np.maximum(steps, 1)
    count = np.r_[steps, 1]
    owner = np.repeat(np.arange(len(kept)), count)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    t = kept.t[owner] + offset * resolution_ms
    v = reconstruct(kept, t, method).astype(np.float32)
    q = np.where(offset == 0, kept.q[owner], kept.q[owner] & QUALITY_MASK)
    return Samples(t, v, q.astype(np.uint8))
