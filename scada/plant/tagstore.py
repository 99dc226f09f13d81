"""Latest value, quality and source time of every tag, as numpy arrays over the TagSchema."""

from __future__ import annotations

import numpy as np

from drivers.base import Reading
from scada.core.tags import Quality, TagSchema

NO_VALUE_YET = "no value received yet"
NOT_FINITE = "not a finite number"


def _finite_or_bad(reading: Reading) -> tuple[np.ndarray, dict[int, str]]:
    """The one place readings enter: a NaN or infinite value is bad, whatever status the
    device or simulator gave it, so clients never see it as good and limit checks never
    compare it (the quality alarm reports it instead)."""
    with np.errstate(invalid="ignore"):
        suspect = ~np.isfinite(reading.values) & (reading.quality != Quality.BAD)
    if not suspect.any():
        return reading.quality, reading.reasons
    quality = np.where(suspect, np.uint8(Quality.BAD), reading.quality).astype(np.uint8)
    reasons = dict(reading.reasons)
    reasons.update(dict.fromkeys(reading.indices[suspect].tolist(), NOT_FINITE))
    return quality, reasons


class TagStore:
    def __init__(self, schema: TagSchema) -> None:
        n = schema.size
        self.schema = schema
        self.values = np.full(n, np.nan)
        self.quality = np.full(n, Quality.BAD, dtype=np.uint8)
        self.source_time = np.zeros(n)  # epoch seconds, from the device
        self.fresh_at = np.full(n, -np.inf)  # monotonic seconds of the last fresh value
        self.reasons: dict[int, str] = dict.fromkeys(range(n), NO_VALUE_YET)
        self._dirty = np.ones(len(schema.line_ids), dtype=bool)
        self.writes = 0

    def write(self, reading: Reading, now: float) -> None:
        """Store fresh values read at monotonic time `now`."""
        idx = reading.indices
        if len(idx) == 0:
            return
        quality, reasons = _finite_or_bad(reading)
        old_v, old_q = self.values[idx], self.quality[idx]
        self.values[idx] = reading.values
        self.quality[idx] = quality
        self.source_time[idx] = reading.source_time
        self.fresh_at[idx] = now
        changed = (old_q != quality) | ~(
            (old_v == reading.values) | (np.isnan(old_v) & np.isnan(reading.values))
        )
        self._dirty[self.schema.line_of[idx[changed]]] = True
        good = idx[quality != Quality.BAD]
        if self.reasons:
            for i in good.tolist():
                self.reasons.pop(i, None)
        self.reasons.update(reasons)
        self.writes += 1

    def mark_bad(self, indices: np.ndarray, reason: str) -> None:
        """The device feeding these tags failed: their values are no longer known."""
        if len(indices) == 0:
            return
        was = self.quality[indices]
        self.quality[indices] = Quality.BAD
        newly = indices[was != Quality.BAD]
        self._dirty[self.schema.line_of[newly]] = True
        for i in indices.tolist():
            self.reasons[i] = reason

    def refresh(self, now: float) -> None:
        """Turn values that had no fresh update for `stale_after` seconds stale."""
        live = (self.quality == Quality.GOOD) | (self.quality == Quality.UNCERTAIN)
        expired = live & (now - self.fresh_at > self.schema.stale_after)
        if expired.any():
            self.quality[expired] = Quality.STALE
            self._dirty[self.schema.line_of[expired]] = True
            for i in np.flatnonzero(expired).tolist():
                self.reasons[i] = "no fresh value"

    def line_quality(self) -> np.ndarray:
        """Worst quality of each line's tags, in schema line order."""
        return np.maximum.reduceat(self.quality, self.schema.line_starts)

    def line_source_time(self) -> np.ndarray:
        return np.maximum.reduceat(self.source_time, self.schema.line_starts)

    def take_dirty(self) -> np.ndarray:
        """Positions of lines that changed since the last call, and clear the marks."""
        lines = np.flatnonzero(self._dirty)
        self._dirty[:] = False
        return lines

    def history_row(self) -> np.ndarray:
        """Values as trends should show them: no value where it is bad or stale."""
        trusted = (self.quality == Quality.GOOD) | (self.quality == Quality.UNCERTAIN)
        return np.where(trusted, self.values, np.nan)
