"""A history read as a job that runs anywhere: committed rows from SQLite plus the writer's
open minute, handed over as arrays.

The server takes a `Job` (the plan and each tag's samples the writer still holds, a few
hundred rows: a copy under the writer's lock) and a worker process runs it on its own
read-only connection. A 32-tag, one-hour read is 200-400 ms of Python and numpy (decoding
chunks, bucketing); in a thread of the server it held the GIL the 100 ms tick needs, in the
worker it does not (issue #20).

The live part is taken before the database is read: rows the writer commits in between are
read from the file up to the first live sample (`edge`) and clipped there, so a sample is
never counted twice and none falls between the two.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scada.core.timefmt import iso_ms
from scada.historian import codec, compress, db, query
from scada.historian.db import CHUNK_MS
from scada.historian.query import Buckets, Plan, Rows, SeriesSpec


@dataclass(frozen=True)
class Series:
    """One tag of a job: what is known of it and the samples the writer has not written."""

    spec: SeriesSpec
    live: codec.Samples


@dataclass(frozen=True)
class Job:
    """Everything a history read needs besides the file: pickled to the worker process."""

    path: Path
    resolution_ms: int
    plan: Plan
    from_ms: int
    to_ms: int
    series: list[Series]


def samples(database: sqlite3.Connection, s: Series, from_ms: int, to_ms: int) -> codec.Samples:
    """Raw samples in [from, to): committed chunks plus what the writer still holds."""
    live = s.live
    edge = int(live.t[0]) if len(live) else to_ms
    database.execute("BEGIN")
    try:
        stored = query.raw_samples(database, s.spec.series_id, from_ms, min(to_ms, edge))
    finally:
        database.execute("COMMIT")
    stored = query.clip(stored, from_ms, min(to_ms, edge))
    return codec.concat([stored, query.clip(live, from_ms, to_ms)])


def buckets(
    database: sqlite3.Connection,
    s: Series,
    p: Plan,
    resolution_ms: int,
    width: float | None = None,
) -> Buckets:
    """`p.count` buckets of `width` (default the plan's) from the plan's tier."""
    assert p.bucket_ms is not None or width is not None
    bucket = float(width if width is not None else p.bucket_ms)  # type: ignore[arg-type]
    end = math.ceil(p.start + bucket * p.count)
    if p.tier == "raw":
        got = samples(database, s, p.start, end)
        if s.spec.compressed:
            got = compress.expand(got, resolution_ms, s.spec.compressed)
        return query.bucketize(Rows.from_samples(got), p.start, bucket, p.count)
    live = s.live
    edge = int(live.t[0] - live.t[0] % CHUNK_MS) if len(live) else end
    table = "m1" if p.tier == "1m" else "h1"
    database.execute("BEGIN")
    try:
        stored = query.rollup_rows(database, table, s.spec.series_id, p.start, min(end, edge))
    finally:
        database.execute("COMMIT")
    parts = [stored]
    if len(live):
        parts.append(Rows.from_samples(query.clip(live, max(p.start, edge), end)))
    return query.bucketize(Rows.concat(parts), p.start, bucket, p.count)


def answer(database: sqlite3.Connection, job: Job) -> dict[str, Any]:
    """The /api/history document (numpy columns; `query.plain` gives what a client reads)."""
    p = job.plan
    out = []
    for s in job.series:
        spec = s.spec
        entry: dict[str, Any] = {
            "tag": spec.path,
            "unit": spec.unit,
            "setpoint": spec.setpoint,
            "limits": spec.limits,
        }
        if p.bucket_ms is None:
            got = samples(database, s, job.from_ms, job.to_ms)
            entry.update(query.samples_entry(got, job.resolution_ms, spec.compressed))
        else:
            entry.update(query.buckets_entry(buckets(database, s, p, job.resolution_ms)))
        out.append(entry)
    return {
        "from": iso_ms(job.from_ms / 1000),
        "to": iso_ms(job.to_ms / 1000),
        "tier": p.tier,
        "bucket_ms": p.bucket_ms,
        "series": out,
    }


def run(job: Job) -> dict[str, Any]:
    """`answer` on a read-only connection of its own (for a worker process), closed after."""
    database = db.open_reader(job.path)
    try:
        return answer(database, job)
    finally:
        database.close()
