"""Reading history: pick the tier for a range, then M4 buckets (min/max/first/last + mean).

Every source becomes the same "rows" shape before bucketing: an m1/h1 row is the aggregate
of one minute/hour, a raw sample is a row of one. Rows are bucketed by their start time, so a
bucket's min and max are exact whatever tier served it, spikes included.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from scada.historian import codec
from scada.historian.db import CHUNK_MS, HOUR_MS, raw_id, raw_time

QUALITY_NAMES = ("good", "uncertain", "stale", "bad")
MISSING = -1
GAP_INTERVALS = 3  # samples missing for longer than this many intervals: a gap


@dataclass(frozen=True)
class SeriesSpec:
    path: str
    series_id: int | None  # None: never recorded
    position: int | None  # column in the live writer, None for a tag no longer configured
    unit: str = ""
    setpoint: float | None = None
    limits: dict[str, float] = field(default_factory=dict)
    compressed: str | None = None  # the compression method, if the tag has one


@dataclass
class Rows:
    t: np.ndarray  # int64 ms, sorted
    n: np.ndarray
    ngood: np.ndarray
    vmin: np.ndarray  # float64, NaN where no good value
    vmax: np.ndarray
    vsum: np.ndarray
    vfirst: np.ndarray
    vlast: np.ndarray
    q: np.ndarray  # int64 worst code

    @classmethod
    def from_samples(cls, s: codec.Samples) -> Rows:
        q = (s.q & codec.QUALITY_MASK).astype(np.int64)
        good = (q == codec.GOOD) & np.isfinite(s.v)
        v = np.where(good, s.v.astype(np.float64), np.nan)
        ones = np.ones(len(s), dtype=np.int64)
        return cls(s.t, ones, good.astype(np.int64), v, v, np.where(good, v, 0.0), v, v, q)

    @classmethod
    def from_sql(cls, rows: list[tuple[Any, ...]]) -> Rows:
        a = np.array(rows, dtype=np.float64) if rows else np.empty((0, 9))  # None -> NaN
        col = a.T
        return cls(
            col[0].astype(np.int64),
            col[1].astype(np.int64),
            np.nan_to_num(col[2]).astype(np.int64),
            col[3],
            col[4],
            np.nan_to_num(col[5]),
            col[6],
            col[7],
            np.nan_to_num(col[8]).astype(np.int64),
        )

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        parts = [p for p in parts if len(p.t)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.from_sql([])
        merged = cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))
        order = np.argsort(merged.t, kind="stable")
        return cls(*(getattr(merged, f)[order] for f in _FIELDS))


_FIELDS = ("t", "n", "ngood", "vmin", "vmax", "vsum", "vfirst", "vlast", "q")


@dataclass
class Buckets:
    t: np.ndarray  # bucket starts, ms
    vmin: np.ndarray
    vmax: np.ndarray
    vfirst: np.ndarray
    vlast: np.ndarray
    mean: np.ndarray
    q: np.ndarray  # worst code, MISSING where no sample
    samples: int


def bucketize(rows: Rows, start: float, width: float, count: int) -> Buckets:
    def empty() -> np.ndarray:
        return np.full(count, np.nan)

    out = Buckets(
        np.floor(start + width * np.arange(count)).astype(np.int64),
        empty(),
        empty(),
        empty(),
        empty(),
        empty(),
        np.full(count, MISSING, dtype=np.int64),
        int(rows.n.sum()),
    )
    if not len(rows.t):
        return out
    idx = np.floor((rows.t - start) / width).astype(np.int64)
    inside = (idx >= 0) & (idx < count)
    if not inside.all():
        rows = Rows(*(getattr(rows, f)[inside] for f in _FIELDS))
        idx = idx[inside]
        out.samples = int(rows.n.sum())
    if not len(idx):
        return out
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    occ = idx[starts]
    out.vmin[occ] = np.fmin.reduceat(rows.vmin, starts)
    out.vmax[occ] = np.fmax.reduceat(rows.vmax, starts)
    ngood = np.add.reduceat(rows.ngood, starts)
    vsum = np.add.reduceat(np.where(rows.ngood > 0, rows.vsum, 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out.mean[occ] = np.where(ngood > 0, vsum / np.maximum(ngood, 1), np.nan)
    out.q[occ] = np.maximum.reduceat(rows.q, starts)
    good = rows.ngood > 0
    pos = np.arange(len(idx))
    last_row = len(idx) - 1
    first = np.minimum.reduceat(np.where(good, pos, len(idx)), starts)
    last = np.maximum.reduceat(np.where(good, pos, -1), starts)
    out.vfirst[occ] = np.where(first <= last_row, rows.vfirst[np.minimum(first, last_row)], np.nan)
    out.vlast[occ] = np.where(last >= 0, rows.vlast[np.maximum(last, 0)], np.nan)
    return out


@dataclass(frozen=True)
class Plan:
    tier: str  # raw, 1m, 1h
    bucket_ms: int | None  # None: raw samples
    start: int  # first bucket start
    count: int


def plan(
    from_ms: int,
    to_ms: int,
    points: int,
    resolution_ms: int,
    now_ms: int,
    raw_days: float,
    m1_days: float,
) -> Plan:
    span = to_ms - from_ms
    raw_ok = from_ms >= now_ms - raw_days * 86_400_000
    m1_ok = from_ms >= now_ms - m1_days * 86_400_000
    if raw_ok and span / resolution_ms <= points:
        return Plan("raw", None, from_ms, 0)
    want = math.ceil(span / points)
    # The coarsest tier whose resolution is within twice the wanted bucket: reading a few
    # hundred rollup rows beats decoding thousands of finer ones, and a chart of 30 days
    # at 1,000 points looks the same drawn from 720 hourly buckets.
    if want * 2 >= HOUR_MS or not m1_ok:
        tier, unit = "1h", HOUR_MS
    elif want * 2 >= CHUNK_MS or not raw_ok:
        tier, unit = "1m", CHUNK_MS
    else:
        tier, unit = "raw", resolution_ms
    bucket = max(math.ceil(want / unit), 1) * unit
    while True:
        start = from_ms - from_ms % bucket
        count = math.ceil((to_ms - start) / bucket)
        if count <= points:
            return Plan(tier, bucket, start, count)
        bucket += unit


def raw_samples(
    database: sqlite3.Connection, series_id: int | None, from_ms: int, to_ms: int
) -> codec.Samples:
    if series_id is None:
        return codec.concat([])
    chunks = database.execute(
        "SELECT id, blob FROM raw WHERE id >= ? AND id < ? ORDER BY id",
        (raw_id(series_id, from_ms), raw_id(series_id, to_ms + CHUNK_MS - 1)),
    ).fetchall()
    return codec.concat([codec.decode(raw_time(i), blob) for i, blob in chunks])


def rollup_rows(
    database: sqlite3.Connection, table: str, series_id: int | None, from_ms: int, to_ms: int
) -> Rows:
    if series_id is None:
        return Rows.from_sql([])
    rows = database.execute(
        f"SELECT t, n, ngood, vmin, vmax, vsum, vfirst, vlast, q FROM {table}"
        " WHERE series = ? AND t >= ? AND t < ? ORDER BY t",
        (series_id, from_ms, to_ms),
    ).fetchall()
    return Rows.from_sql(rows)


def clip(s: codec.Samples, from_ms: int, to_ms: int) -> codec.Samples:
    keep = (s.t >= from_ms) & (s.t < to_ms)
    return codec.Samples(s.t[keep], s.v[keep], s.q[keep])


def tidy(values: np.ndarray) -> np.ndarray:
    """float32: orjson (OPT_SERIALIZE_NUMPY) writes the shortest decimal form, NaN as null."""
    return values.astype(np.float32)


_LABELS = np.array(["missing", *QUALITY_NAMES])


def labels(codes: np.ndarray) -> list[str]:
    return list(_LABELS[np.clip(codes, -1, 3) + 1].tolist())


def plain(doc: Any) -> Any:
    """The answer as plain Python (lists, floats, None), as a client reads it."""
    return orjson.loads(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))


def samples_entry(s: codec.Samples, resolution_ms: int, compressed: str | None) -> dict[str, Any]:
    """Raw samples, with a null entry wherever samples are missing (a chart draws a gap)."""
    q = s.q & codec.QUALITY_MASK
    good = (q == codec.GOOD) & np.isfinite(s.v)
    gap = (s.q & codec.GAP_FLAG) != 0
    if not compressed and len(s):
        gap[1:] |= np.diff(s.t) > GAP_INTERVALS * resolution_ms
    gap[:1] = False
    where = np.flatnonzero(gap)
    t = np.insert(s.t, where, s.t[where - 1] + resolution_ms)
    v = np.insert(np.where(good, s.v.astype(np.float64), np.nan), where, np.nan)
    quality = np.insert(q.astype(np.int64), where, MISSING)
    values = tidy(v)
    return {
        "t": t,
        "min": values,
        "max": values,
        "first": values,
        "last": values,
        "mean": values,
        "quality": labels(quality),
    }


def buckets_entry(b: Buckets) -> dict[str, Any]:
    return {
        "t": b.t,
        "min": tidy(b.vmin),
        "max": tidy(b.vmax),
        "first": tidy(b.vfirst),
        "last": tidy(b.vlast),
        "mean": tidy(b.mean),
        "quality": labels(b.q),
    }
