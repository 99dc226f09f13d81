"""The historian on real SQLite files: exact read-back, rollups, retention, recovery, compression."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scada.core.config import HistorianSettings, load_config
from scada.core.tags import TagSchema
from scada.historian import codec, compress, query
from scada.historian.db import CHUNK_MS, HOUR_MS
from scada.historian.service import Historian
from scada.historian.writer import InvalidTransition, Retention, Writer, WriterState, WriterStatus
from tests.conftest import eventually

LINES = load_config().lines[:2]  # 20 tags
SCHEMA = TagSchema(LINES)
RES = 100
DAY_MS = 86_400_000
# Recent times: retention (30 days raw) prunes anything older while the writer runs.
NOW_MS = round(time.time() * 1000)
BASE = NOW_MS - NOW_MS % HOUR_MS - 3 * HOUR_MS


def signals(rows: int, width: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = (100 + np.cumsum(rng.normal(0, 0.05, (rows, width)), axis=0)).astype(np.float32)
    quality = np.zeros((rows, width), dtype=np.uint8)
    quality[rng.random((rows, width)) < 0.02] = 3  # bad now and then
    quality[rng.random((rows, width)) < 0.01] = 1  # uncertain now and then
    return values, quality


def open_historian(path: Path, schema: TagSchema = SCHEMA, **settings: object) -> Historian:
    h = Historian(path, schema, HistorianSettings.model_validate(settings), resolution_ms=RES)
    h.start()
    return h


def feed(h: Historian, start_ms: int, values: np.ndarray, quality: np.ndarray) -> np.ndarray:
    times = start_ms + RES * np.arange(len(values))
    for t, v, q in zip(times.tolist(), values, quality, strict=True):
        h.record(t / 1000, v, q)
    assert h.writer.sync()
    return times


@pytest.fixture
def historian(tmp_path: Path) -> Iterator[Historian]:
    h = open_historian(tmp_path / "history.sqlite")
    yield h
    h.stop()


def test_values_read_back_exactly_from_chunks_pending_and_memory(
    historian: Historian, tmp_path: Path
) -> None:
    start = BASE + 12_300
    values, quality = signals(3 * 600 + 250, SCHEMA.size)
    values[5, 3] = np.nan  # a value the device could not give
    times = feed(historian, start, values, quality)
    end = int(times[-1]) + 1
    for pos in (0, 3, SCHEMA.size - 1):
        spec = historian.spec(SCHEMA.refs[pos].path)
        assert spec is not None
        got = historian.samples(spec, start, end)
        assert got.t.tolist() == times.tolist()
        np.testing.assert_array_equal(got.v, values[:, pos])  # bit-exact float32
        assert ((got.q & codec.QUALITY_MASK) == quality[:, pos]).all()
    historian.stop()
    # After a restart the open minute comes back from `pending`, the rest from `raw`.
    again = open_historian(tmp_path / "history.sqlite")
    try:
        spec = again.spec(SCHEMA.refs[3].path)
        assert spec is not None
        got = again.samples(spec, start, end)
        np.testing.assert_array_equal(got.v, values[:, 3])
        assert got.t.tolist() == times.tolist()
    finally:
        again.stop()


def test_rollups_equal_aggregates_of_the_raw_samples(historian: Historian) -> None:
    start = BASE - 5 * CHUNK_MS
    values, quality = signals(75 * 600, SCHEMA.size, seed=3)  # 75 minutes over an hour edge
    feed(historian, start, values, quality)
    db = historian._reader()
    good = (quality == 0) & np.isfinite(values)
    v64 = values.astype(np.float64)
    for pos in (1, 7):
        sid = historian.spec(SCHEMA.refs[pos].path).series_id  # type: ignore[union-attr]
        m1 = db.execute(
            "SELECT t, n, ngood, vmin, vmax, vsum, vfirst, vlast, q FROM m1"
            " WHERE series = ? ORDER BY t",
            (sid,),
        ).fetchall()
        assert len(m1) == 74  # the 75th minute is still open
        for k, (t, n, ngood, vmin, vmax, vsum, vfirst, vlast, q) in enumerate(m1):
            rows = slice(k * 600, (k + 1) * 600)
            g, v = good[rows, pos], v64[rows, pos]
            assert t == start + k * CHUNK_MS and n == 600 and ngood == g.sum()
            assert (vmin, vmax) == (v[g].min(), v[g].max())
            assert vsum == pytest.approx(v[g].sum(), rel=1e-12)
            assert (vfirst, vlast) == (v[g][0], v[g][-1])
            assert q == quality[rows, pos].max()
        hour = start + 5 * CHUNK_MS
        h1 = db.execute(
            "SELECT n, ngood, vmin, vmax, vsum, vfirst, vlast, q FROM h1 WHERE series = ? AND t = ?",
            (sid, hour),
        ).fetchone()
        rows = slice(5 * 600, 65 * 600)
        g, v = good[rows, pos], v64[rows, pos]
        assert h1[:4] == (36_000, g.sum(), v[g].min(), v[g].max())
        assert h1[4] == pytest.approx(v[g].sum(), rel=1e-12)
        assert h1[5:] == (v[g][0], v[g][-1], quality[rows, pos].max())


def test_buckets_from_every_tier_agree_with_the_raw_samples(historian: Historian) -> None:
    start = BASE
    values, quality = signals(130 * 600, 2, seed=5)
    wide = np.repeat(values, SCHEMA.size // 2, axis=1)
    feed(historian, start, wide, np.repeat(quality, SCHEMA.size // 2, axis=1))
    spec = historian.spec(SCHEMA.refs[0].path)
    assert spec is not None
    end = start + 120 * CHUNK_MS
    raw = query.Rows.from_samples(historian.samples(spec, start, end))
    for tier, bucket in (("raw", 30_000), ("1m", 600_000), ("1h", HOUR_MS)):
        plan = query.Plan(tier, bucket, start, (end - start) // bucket)
        got = historian.buckets(spec, plan)
        want = query.bucketize(raw, start, bucket, plan.count)
        for field in ("vmin", "vmax", "vfirst", "vlast", "q"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), field)
        np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)


def test_plan_picks_the_tier_from_the_range() -> None:
    now = 1_700_000_000_000

    def tier(span_ms: int, points: int = 1000) -> tuple[str, int | None]:
        p = query.plan(now - span_ms, now, points, RES, now, 30, 365)
        assert p.bucket_ms is None or p.count <= points
        return p.tier, p.bucket_ms

    assert tier(60_000) == ("raw", None)  # 600 samples fit: raw samples
    assert tier(3_600_000) == ("raw", 3_700)  # 3.6 s buckets need 1,001 once aligned
    assert tier(DAY_MS) == ("1m", 120_000)
    assert tier(12 * 3_600_000) == ("1m", 60_000)  # 43.2 s wanted: whole minutes
    assert tier(30 * DAY_MS) == ("1h", 3_600_000)  # 43 min wanted: the hourly tier
    assert tier(365 * DAY_MS)[0] == "1h"
    old = query.plan(now - 40 * DAY_MS, now - 40 * DAY_MS + 60_000, 1000, RES, now, 30, 365)
    assert old.tier == "1m"  # raw samples of 40 days ago are gone: the minute rollup answers


def test_a_gap_is_a_null_entry_and_missing_buckets(historian: Historian) -> None:
    start = BASE
    values, quality = signals(100, SCHEMA.size)
    feed(historian, start, values[:50], quality[:50])
    feed(historian, start + 60_000, values[50:], quality[50:])  # 55 s without samples
    historian.clock = lambda: start / 1000 + 3600
    spec = historian.spec(SCHEMA.refs[0].path)
    assert spec is not None
    doc = query.plain(historian.history_sync([spec], start, start + 65_000, 5000))
    s = doc["series"][0]
    i = s["quality"].index("missing")
    assert s["t"][i - 1] == start + 4_900 and s["t"][i + 1] == start + 60_000
    assert s["min"][i] is None and s["quality"].count("missing") == 1
    doc = query.plain(historian.history_sync([spec], start, start + 65_000, 65))  # 1 s buckets
    assert doc["bucket_ms"] == 1000
    assert doc["series"][0]["quality"][5:60] == ["missing"] * 55


def test_a_job_read_in_another_process_is_the_answer_read_here(historian: Historian) -> None:
    """/api/history reads a pickled `reading.Job` on the worker's own connection: the same
    CSV and JSON bytes as the read in this thread, for raw samples with a gap and buckets
    with missing ones, the samples the writer has not written yet included."""
    import pickle

    from scada.historian import reading
    from scada.web.history import encode_history, history_body

    start = BASE
    values, quality = signals(100, SCHEMA.size)
    quality[10:20] = 1  # not good: another label than "good" and "missing"
    feed(historian, start, values[:50], quality[:50])
    feed(historian, start + 60_000, values[50:], quality[50:])  # the open minute: in memory
    historian.clock = lambda: start / 1000 + 3600
    specs = [historian.spec(r.path) for r in SCHEMA.refs[:3]]
    assert all(specs)
    for points in (5000, 65):
        job = historian.job(specs, start, start + 65_000, points)  # type: ignore[arg-type]
        assert all(len(s.live) == 50 for s in job.series)  # only in the writer's memory
        shipped = pickle.loads(pickle.dumps(job))
        here = historian.history_sync(specs, start, start + 65_000, points)  # type: ignore[arg-type]
        assert query.plain(reading.run(shipped)) == query.plain(here)
        for fmt in ("csv", "json"):
            assert history_body(shipped, fmt) == encode_history(here, fmt)
        labels = query.plain(here)["series"][0]["quality"]
        assert {"good", "missing"} <= set(labels) and len(set(labels)) >= 3
        if job.plan.bucket_ms is None:  # raw: up to the newest sample, still in memory
            assert query.plain(here)["series"][0]["t"][-1] == start + 60_000 + 49 * RES


def test_retention_deletes_what_it_should_and_nothing_else(tmp_path: Path) -> None:
    now = 1_800_000_000_000
    writer = Writer(
        tmp_path / "h.sqlite",
        ["a", "b"],
        ["", ""],
        resolution_ms=RES,
        retention=Retention(raw_days=30, m1_days=365, h1_days=3650),
        clock=lambda: now / 1000,
    )
    writer.start()
    ages = (4000, 400, 40, 10)  # days ago, oldest first
    for age in ages:
        t0 = now - age * DAY_MS
        for k in range(700):  # one whole minute, and a part of the next
            writer.record((t0 + k * RES) / 1000, np.ones(2), np.zeros(2, np.uint8))
    assert writer.sync()
    writer.stop()
    writer._db = sqlite3.connect(tmp_path / "h.sqlite", isolation_level=None)
    removed = writer.prune_now()

    def kept(table: str) -> set[int]:
        column = "(id & 4294967295) * 60000" if table == "raw" else "t"
        rows = writer._db.execute(f"SELECT DISTINCT {column} FROM {table}").fetchall()  # type: ignore[union-attr]
        return {round((now - t) / DAY_MS) for (t,) in rows}

    assert kept("raw") == {10}
    assert kept("m1") == {40, 10}
    assert kept("h1") == {400, 40, 10}
    # per series: raw 3 ages x 2 minutes, m1 2 ages x 2, h1 1 age (one hour row each)
    assert removed == 2 * (3 * 2 + 2 * 2 + 1)


def test_tags_added_or_removed_between_runs_keep_their_history(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    h = open_historian(path)
    start = BASE
    values, quality = signals(30, SCHEMA.size)
    feed(h, start, values, quality)
    h.stop()
    config = load_config()
    second = TagSchema(config.lines[1:3])  # line 1 removed, line 3 added
    h = open_historian(path, second)
    try:
        feed(h, start + 10_000, *signals(30, second.size))
        kept = h.spec(SCHEMA.refs[0].path)  # line 1: no longer configured
        assert kept is not None and kept.position is None and kept.unit == "°C"
        np.testing.assert_array_equal(h.samples(kept, start, start + 5_000).v, values[:30, 0])
        both = h.spec(SCHEMA.refs[10].path)  # line 2: in both runs, one series
        assert both is not None and both.position == 0
        assert len(h.samples(both, start, start + 20_000)) == 60
        assert h.spec("line3.diameter") is not None and h.spec("line9.diameter") is None
    finally:
        h.stop()


def test_a_corrupt_database_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    h = open_historian(path)
    try:
        feed(h, BASE, *signals(20, SCHEMA.size))
        assert h.status()["state"] == "ok"
        aside = list(tmp_path.glob("history.sqlite.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
        assert "is corrupt" in caplog.text and str(aside[0]) in caplog.text
    finally:
        h.stop()


@pytest.mark.parametrize("method", ["deadband", "swinging_door"])
def test_compression_keeps_its_error_bound(method: str, tmp_path: Path) -> None:
    deviation = 0.05
    rng = np.random.default_rng(11)
    n = 6000
    t = BASE + RES * np.arange(n, dtype=np.int64)
    v = (20 + np.cumsum(rng.normal(0, 0.02, n))).astype(np.float32)
    q = np.zeros(n, dtype=np.uint8)
    q[3000:3010] = 3
    s = codec.Samples(t, v, q)
    keep = compress.METHODS[method](s, deviation)
    kept = codec.Samples(t[keep], v[keep], q[keep])
    assert keep.sum() < n / 3  # it does compress
    assert keep[3000:3010].all() and keep[2999] and keep[3010]  # bad samples stay as they were
    good = q == 0
    back = compress.reconstruct(kept, t, method)
    err = np.abs(back - v.astype(np.float64))[good]
    assert err.max() <= deviation * (1 + 1e-6)
    # Through the writer: stored compressed, rollups still exact.
    h = open_historian(
        tmp_path / "h.sqlite",
        compression={SCHEMA.refs[0].path: {"method": method, "deviation": deviation}},
    )
    try:
        wide = np.repeat(v[:, None], SCHEMA.size, axis=1)
        feed(h, int(t[0]), wide, np.repeat(q[:, None], SCHEMA.size, axis=1))
        spec = h.spec(SCHEMA.refs[0].path)
        assert spec is not None and spec.compressed
        got = h.samples(spec, int(t[0]), int(t[-1]) + 1)
        assert len(got) < n / 3
        back = compress.reconstruct(got, t, method)
        assert np.abs(back - v.astype(np.float64))[good].max() <= deviation * (1 + 1e-6)
        # 1 s buckets from the kept samples: none empty, each within the deviation.
        plan = query.Plan("raw", 1000, int(t[0]), n * RES // 1000)
        b = h.buckets(spec, plan)
        exact = query.bucketize(query.Rows.from_samples(s), plan.start, 1000, plan.count)
        assert (b.q != query.MISSING).all() and (b.q == exact.q).all()
        for field in ("vmin", "vmax", "mean"):
            diff = np.abs(getattr(b, field) - getattr(exact, field))
            assert np.nanmax(diff) <= deviation * (1 + 1e-6), field
        m1 = h._reader().execute("SELECT t, vmax FROM m1 WHERE series = ?", (spec.series_id,))
        for t0, vmax in m1.fetchall():
            in_minute = good & (t >= t0) & (t < t0 + CHUNK_MS)
            assert vmax == v[in_minute].max()  # from every sample, not the kept ones
    finally:
        h.stop()


def test_a_file_that_cannot_be_opened_degrades_then_recovers_with_every_sample(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "history"  # a file where the directory should be
    blocker.write_text("in the way")
    h = open_historian(blocker / "history.sqlite")
    try:
        assert h.status()["state"] == "degraded"
        values, quality = signals(700, SCHEMA.size)  # a minute closes while it cannot write
        times = feed(h, BASE, values, quality)
        assert h.status()["state"] == "degraded"
        blocker.unlink()
        eventually(lambda: h.writer.sync() and h.status()["state"] == "ok", timeout=10)
        spec = h.spec(SCHEMA.refs[4].path)
        assert spec is not None
        got = h.samples(spec, BASE, int(times[-1]) + 1)
        np.testing.assert_array_equal(got.v, values[:, 4])
        assert caplog.text.count("historian cannot write") == 1
        assert "historian recovered" in caplog.text
    finally:
        h.stop()


def _old_history(path: Path, now: int, minutes: int = 30) -> Writer:
    """A file with `minutes` of two tags 40 days ago (past the raw tier's 30 days)."""
    writer = Writer(path, ["a", "b"], ["", ""], resolution_ms=RES, clock=lambda: now / 1000)
    writer.start()
    t0 = now - 40 * DAY_MS
    for k in range(minutes * 600 + 1):
        writer.record((t0 + k * RES) / 1000, np.full(2, k % 97, np.float32), np.zeros(2, np.uint8))
    assert writer.sync()
    return writer


def _raw_rows(path: Path) -> int:
    with sqlite3.connect(path) as database:
        return int(database.execute("SELECT count(*) FROM raw").fetchone()[0])


def test_retention_runs_an_hour_after_start_not_at_the_first_flush(tmp_path: Path) -> None:
    now = round(time.time() * 1000)
    _old_history(tmp_path / "h.sqlite", now).stop()
    writer = Writer(tmp_path / "h.sqlite", ["a", "b"], ["", ""], resolution_ms=RES)
    writer.start()
    try:
        assert writer.sync()  # the last run's open minute is a chunk now
        before = _raw_rows(tmp_path / "h.sqlite")
        assert before > 0
        flushes: list[float] = []

        def timed_flushes() -> bool:  # the timed flush is where the prune step runs
            last = writer.status.last_flush
            if last is not None and (not flushes or flushes[-1] != last):
                flushes.append(last)
            return len(flushes) >= 3

        eventually(timed_flushes)
        assert writer.status.pruned == 0 and _raw_rows(tmp_path / "h.sqlite") == before
    finally:
        writer.stop()


def test_pruning_checkpoints_and_truncates_the_wal(tmp_path: Path) -> None:
    now = round(time.time() * 1000)
    path = tmp_path / "h.sqlite"
    writer = _old_history(path, now, minutes=120)
    writer.stop()
    writer = Writer(path, ["a", "b"], ["", ""], resolution_ms=RES, prune_every_s=0.0)
    reader = sqlite3.connect(path)  # an idle reader, as the server's query threads hold
    reader.execute("SELECT count(*) FROM raw").fetchone()
    writer.start()
    try:
        eventually(lambda: writer.status.pruned > 0)
        assert _raw_rows(path) == 0
        wal = Path(f"{path}-wal")
        # The prune deleted 240 chunks and their m1 rows through the WAL; it is empty again.
        eventually(lambda: not wal.exists() or wal.stat().st_size == 0)
    finally:
        writer.stop()
        reader.close()


def test_a_clean_stop_leaves_no_wal_behind_even_with_readers_open(tmp_path: Path) -> None:
    h = open_historian(tmp_path / "history.sqlite")
    values, quality = signals(1300, SCHEMA.size)
    feed(h, BASE, values, quality)
    spec = h.spec(SCHEMA.refs[0].path)
    assert spec is not None
    assert h.history_sync([spec], BASE, BASE + 130_000, 100)  # a reader connection stays open
    wal = tmp_path / "history.sqlite-wal"
    assert wal.exists() and wal.stat().st_size > 0
    h.stop()
    assert not wal.exists() or wal.stat().st_size == 0


def test_writer_state_moves_only_as_the_writer_does() -> None:
    status = WriterStatus()
    assert status.state is WriterState.STARTING
    status.move(WriterState.DEGRADED)  # the file could not be opened
    status.move(WriterState.OK)  # a retry opened it
    status.move(WriterState.STOPPED)
    with pytest.raises(InvalidTransition, match="stopped -> ok"):
        status.move(WriterState.OK)  # a stopped writer never commits again
    with pytest.raises(InvalidTransition):
        WriterStatus().move(WriterState.STARTING)
    assert [s.value for s in WriterState] == ["starting", "ok", "degraded", "stopped"]


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as database:
        return str(database.execute("PRAGMA journal_mode").fetchone()[0])


@pytest.mark.parametrize("bulk", [False, True])
def test_a_bulk_open_drops_the_journal_and_a_plain_one_keeps_the_wal(
    tmp_path: Path, bulk: bool
) -> None:
    path = tmp_path / "h.sqlite"
    writer = Writer(path, ["a", "b"], ["", ""], resolution_ms=RES)
    writer.open(bulk=bulk)
    try:
        assert _journal_mode(path) == ("delete" if bulk else "wal")
    finally:
        writer.stop()


def test_thread_ident_is_the_running_writer_threads_and_none_otherwise(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "h.sqlite", ["a"], [""], resolution_ms=RES)
    assert writer.thread_ident is None
    writer.start()
    try:
        names = {t.ident: t.name for t in threading.enumerate()}
        assert writer.thread_ident is not None
        assert names[writer.thread_ident] == "historian-writer"
    finally:
        writer.stop()
    assert writer.thread_ident is None
