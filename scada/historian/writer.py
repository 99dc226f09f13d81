"""The one writer: a thread that owns the write connection; the tick only queues a row.

Every tick the runtime hands `record` the tag values and qualities (a copy, no I/O). The
thread appends them to the open minute in memory, and at least every `flush_interval`
seconds appends the new rows to `pending` (so a killed process loses at most that long).
When a minute is over it is encoded into one `raw` chunk and one `m1` row per tag, the
hour's `h1` rows are recomputed, and its `pending` rows are deleted, in one transaction.

Failures never reach the tick: a full disk, an unwritable or vanished file logs once,
marks the historian degraded and keeps closed minutes in memory (bounded) until a write
succeeds again; a corrupt file is moved aside and a fresh one started.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from scada.historian import codec, db
from scada.historian.compress import METHODS
from scada.historian.db import CHUNK_MS, HOUR_MS

log = logging.getLogger(__name__)

RETRY_BYTES = 64 * 1024 * 1024  # closed minutes kept in memory while the disk refuses them
RETRY_EVERY_S = 2.0
MAX_QUEUED = 3000  # ticks waiting for a writer thread that stopped taking them
STUCK_AFTER_S = 10.0
PRUNE_EVERY_S = 3600.0  # the first pass an hour after start, then hourly (docs/historian.md)
CHECKPOINT_WAIT_MS = 1000  # how long a WAL checkpoint waits for readers before trying later
PRUNE_BATCH = 64  # series per prune transaction: writers never wait long


@dataclass(frozen=True)
class Retention:
    raw_days: float = 30.0
    m1_days: float = 365.0
    h1_days: float = 3650.0


class WriterState(StrEnum):
    """The writer as /ready and /metrics show it (the values are the wire's)."""

    STARTING = "starting"  # the file not open yet
    OK = "ok"  # the last flush committed
    DEGRADED = "degraded"  # the file cannot be written; retrying, rows kept in memory
    STOPPED = "stopped"


# The moves the writer makes; any other is a bug (InvalidTransition), as in websockets' State.
TRANSITIONS: dict[WriterState, frozenset[WriterState]] = {
    WriterState.STARTING: frozenset({WriterState.OK, WriterState.DEGRADED, WriterState.STOPPED}),
    WriterState.OK: frozenset({WriterState.OK, WriterState.DEGRADED, WriterState.STOPPED}),
    WriterState.DEGRADED: frozenset({WriterState.OK, WriterState.DEGRADED, WriterState.STOPPED}),
    WriterState.STOPPED: frozenset({WriterState.STOPPED}),
}


class InvalidTransition(RuntimeError):
    """A historian writer state change the writer never makes."""


@dataclass
class WriterStatus:
    state: WriterState = WriterState.STARTING
    reason: str | None = None
    degraded_since: float | None = None
    rows: int = 0  # ticks recorded
    chunks: int = 0  # tag-minutes written to raw
    dropped_rows: int = 0  # ticks lost (queue overflow or memory bound while degraded)
    failures: int = 0
    pruned: int = 0
    last_flush: float | None = None  # epoch seconds of the last successful commit

    def move(self, to: WriterState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"historian writer: {self.state} -> {to}")
        self.state = to


@dataclass
class Closed:
    """One closed minute, encoded, waiting to be committed."""

    minute: int
    raw: list[tuple[int, int, bytes]]
    m1: list[tuple[object, ...]]
    samples: tuple[np.ndarray, np.ndarray, np.ndarray]  # t, values, quality (for merging)
    series: list[int]
    rollup: bool = True  # recompute the hour's h1 rows (bulk loads do it once per hour)

    @property
    def nbytes(self) -> int:
        return sum(len(r[2]) for r in self.raw) + sum(a.nbytes for a in self.samples)


# A tick's row, an empty tuple (timer), a sync request, or None (stop).
_Item = tuple[int, np.ndarray, np.ndarray] | tuple[()] | threading.Event | None

_M1_INSERT = "INSERT OR REPLACE INTO m1 VALUES (?,?,?,?,?,?,?,?,?,?)"
_H1_RECOMPUTE = """
INSERT OR REPLACE INTO h1
SELECT series, :h, sum(n), sum(ngood), min(vmin), max(vmax), sum(vsum),
  (SELECT vfirst FROM m1 WHERE series = :s AND t >= :h AND t < :e AND ngood > 0
   ORDER BY t LIMIT 1),
  (SELECT vlast FROM m1 WHERE series = :s AND t >= :h AND t < :e AND ngood > 0
   ORDER BY t DESC LIMIT 1),
  max(q)
FROM m1 WHERE series = :s AND t >= :h AND t < :e
"""


def _nan_none(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]


def m1_rows(minute: int, series: list[int], agg: codec.Aggregates) -> list[tuple[object, ...]]:
    cols = [
        agg.n.tolist(),
        agg.ngood.tolist(),
        _nan_none(agg.vmin.tolist()),
        _nan_none(agg.vmax.tolist()),
        agg.vsum.tolist(),
        _nan_none(agg.vfirst.tolist()),
        _nan_none(agg.vlast.tolist()),
        agg.q.tolist(),
    ]
    return [(s, minute, *row) for s, row in zip(series, zip(*cols, strict=True), strict=True)]


class Writer:
    def __init__(
        self,
        path: Path,
        paths: list[str],
        units: list[str],
        *,
        resolution_ms: int,
        flush_interval: float = 1.0,
        retention: Retention | None = None,
        compression: dict[int, tuple[str, float]] | None = None,
        clock: Callable[[], float] = time.time,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        self.path = path
        self.paths = list(paths)
        self.units = list(units)
        self.resolution = int(resolution_ms)
        self.flush_interval = min(flush_interval, 1.0)
        self.retention = retention or Retention()
        self.compression = compression or {}
        self.clock = clock
        self.status = WriterStatus()
        self.width = len(paths)
        self.series: list[int] = []
        self.layout = 0
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # guards the open minute against readers' snapshots
        cap = max(CHUNK_MS // self.resolution, 1) * 2 + 8
        self._t = np.zeros(cap, dtype=np.int64)
        self._v = np.full((cap, self.width), np.nan, dtype=np.float32)
        self._q = np.zeros((cap, self.width), dtype=np.uint8)
        self._n = 0
        self._flushed = 0  # rows of the open minute already in `pending`
        self._minute: int | None = None
        self._last_t: int | None = None
        self._closed: deque[Closed] = deque()
        self._merge_minutes: set[int] = set()
        self._run_started = 0
        self._thread: threading.Thread | None = None
        self._prune_job: Iterator[int] | None = None
        self.prune_every_s = prune_every_s
        self._next_prune = time.monotonic() + prune_every_s
        self._next_retry = 0.0
        self.generation = 0  # bumped when the file is replaced; readers reopen
        self._alive = time.monotonic()  # when the thread last took a row

    # -- the event loop's side ----------------------------------------------------------------

    def record(self, t: float, values: np.ndarray, quality: np.ndarray) -> None:
        """Queue one tick's row (copies; never blocks on disk)."""
        stuck = time.monotonic() - self._alive > STUCK_AFTER_S
        if stuck and self._queue.qsize() > MAX_QUEUED:  # drop rather than hoard memory
            self.status.dropped_rows += 1
            return
        self._queue.put((round(t * 1000), values.astype(np.float32), quality.astype(np.uint8)))

    def start(self) -> None:
        try:
            self._open()
        except (sqlite3.Error, OSError) as err:
            self._failed(err)
        self._thread = threading.Thread(target=self._run, name="historian-writer", daemon=True)
        self._thread.start()

    @property
    def thread_ident(self) -> int | None:
        """The writer thread's ident while it runs, else None (for its CPU clock:
        time.pthread_getcpuclockid)."""
        thread = self._thread
        return thread.ident if thread is not None else None

    def sync(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far went through a flush (tests, tools)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None
        if self._db is not None:
            # Readers' idle connections keep SQLite from removing the WAL at close: truncate
            # it here, so a stopped server leaves no large -wal file behind.
            with contextlib.suppress(sqlite3.Error):
                checkpoint(self._db)
            self._db.close()
            self._db = None
        self.status.move(WriterState.STOPPED)

    # -- readers' view of the open minute -------------------------------------------------------

    def snapshot(self, positions: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples not yet in `raw` (open and unwritten closed minutes) for these columns."""
        with self._lock:
            parts = [c.samples for c in self._closed]
            t = [p[0] for p in parts] + [self._t[: self._n].copy()]
            v = [p[1][:, positions] for p in parts] + [self._v[: self._n, positions]]
            q = [p[2][:, positions] for p in parts] + [self._q[: self._n, positions]]
        return np.concatenate(t), np.concatenate(v), np.concatenate(q)

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        failing = False
        while True:
            try:
                stop, next_flush = self._step(next_flush)
                failing = False
            except Exception:
                # A bug must not kill the thread (the queue would grow without end).
                self.status.failures += 1
                if not failing:
                    log.exception("historian writer step failed; going on")
                failing, stop = True, False
            if stop:
                return

    def _step(self, next_flush: float) -> tuple[bool, float]:
        timeout = max(next_flush - time.monotonic(), 0.0)
        try:
            item: _Item | None = self._queue.get(timeout=timeout)
        except queue.Empty:
            item = ()
        if item is None:
            self._drain()
            self._flush()
            return True, next_flush
        if isinstance(item, threading.Event):
            self._drain()
            self._flush()
            item.set()
        elif item:
            self._append(*item)
            self._drain()
        if time.monotonic() >= next_flush:
            next_flush = time.monotonic() + self.flush_interval
            self._flush()
            self._prune_step()
        return False, next_flush

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None or isinstance(item, threading.Event):
                self._queue.put(item)  # handled by the loop, after this batch
                return
            if item:
                self._append(*item)

    def _append(self, t_ms: int, values: np.ndarray, quality: np.ndarray) -> None:
        self._alive = time.monotonic()
        res = self.resolution
        t = (t_ms + res // 2) // res * res
        gap = self._last_t is None or t - self._last_t > 3 * res
        if self._last_t is not None and t <= self._last_t:
            t = self._last_t + res
        minute = t - t % CHUNK_MS
        if self._minute is not None and minute != self._minute:
            self._close_minute()
        if self._minute is None:
            self._minute = minute
        q = quality | codec.GAP_FLAG if gap else quality
        with self._lock:
            if self._n == len(self._t):
                self._grow()
            self._t[self._n] = t
            self._v[self._n] = values
            self._q[self._n] = q
            self._n += 1
        self._last_t = t
        self.status.rows += 1

    def _grow(self) -> None:
        self._t = np.concatenate([self._t, np.zeros_like(self._t)])
        self._v = np.concatenate([self._v, np.full_like(self._v, np.nan)])
        self._q = np.concatenate([self._q, np.zeros_like(self._q)])

    def _close_minute(self) -> None:
        assert self._minute is not None
        n = self._n
        t, v, q = self._t[:n].copy(), self._v[:n].copy(), self._q[:n].copy()
        if self.series:
            closed = self.encode(self._minute, t, v, q, self.series)
        else:  # the file was never opened: no series ids yet, encode once it is
            closed = Closed(self._minute, [], [], (t, v, q), [])
        with self._lock:
            self._closed.append(closed)
            self._n = 0
        self._flushed = 0
        self._minute = None
        self._bound_memory()

    def open(self, *, bulk: bool = False) -> None:
        """Open the file without the thread (bulk loads: `encode` then `commit`). `bulk` also
        turns off the rollback journal and fsync: for a file built to be queried (benchmarks,
        fixtures), never for one a crash must leave whole."""
        self._open()
        if bulk:
            database = self._db
            assert database is not None
            database.execute("PRAGMA journal_mode=OFF")
            database.execute("PRAGMA synchronous=OFF")

    def commit(self, closed: list[Closed]) -> None:
        """Write closed minutes in one transaction, from the caller's thread (bulk loads)."""
        database = self._db
        assert database is not None and self._thread is None
        database.execute("BEGIN IMMEDIATE")
        for c in closed:
            self._write_closed(database, c)
        database.execute("COMMIT")

    def encode(
        self, minute: int, t: np.ndarray, v: np.ndarray, q: np.ndarray, series: list[int]
    ) -> Closed:
        blobs = codec.encode_block(minute, self.resolution, t, v, q)
        for pos, (method, deviation) in self.compression.items():
            if pos < len(blobs):
                s = codec.Samples(t, v[:, pos], q[:, pos])
                keep = METHODS[method](s, deviation)
                kept = codec.Samples(t[keep], s.v[keep], s.q[keep])
                blobs[pos] = codec.encode(minute, self.resolution, kept)
        agg = codec.aggregate(v, q)
        raw = [(s, minute, b) for s, b in zip(series, blobs, strict=True)]
        self.status.chunks += len(raw)
        return Closed(minute, raw, m1_rows(minute, series, agg), (t, v, q), list(series))

    def _bound_memory(self) -> None:
        while len(self._closed) > 1 and sum(c.nbytes for c in self._closed) > RETRY_BYTES:
            with self._lock:
                dropped = self._closed.popleft()
            self.status.dropped_rows += len(dropped.samples[0])

    # -- committing -------------------------------------------------------------------------------

    def _flush(self) -> None:
        now = time.monotonic()
        if self._db is None or self.status.state is WriterState.DEGRADED:
            if now < self._next_retry:
                return
            self._next_retry = now + RETRY_EVERY_S
        try:
            if self._db is None:
                self._open()
            self._commit()
        except (sqlite3.Error, OSError) as err:
            self._failed(err)
            return
        if self.status.state is WriterState.DEGRADED:
            log.warning(
                "historian recovered: writing again after %.0f s (%d tick(s) lost)",
                self.clock() - (self.status.degraded_since or self.clock()),
                self.status.dropped_rows,
            )
        self.status.move(WriterState.OK)
        self.status.reason, self.status.degraded_since = None, None
        self.status.last_flush = self.clock()

    def _commit(self) -> None:
        database = self._db
        assert database is not None
        n = self._n
        pending = None
        if n > self._flushed:
            sl = slice(self._flushed, n)
            blob = _pending_blob(self._t[sl], self._v[sl], self._q[sl])
            pending = (int(self._t[self._flushed]), self.layout, blob)
        closed = list(self._closed)
        if not closed and pending is None:
            return
        database.execute("BEGIN IMMEDIATE")
        try:
            for c in closed:
                self._write_closed(database, c)
            if pending is not None:
                database.execute("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", pending)
            last = self._last_t or 0
            database.execute(
                "UPDATE runs SET last_ms = ? WHERE started_ms = ?", (last, self._run_started)
            )
            database.execute("COMMIT")
        except BaseException:
            if database.in_transaction:
                database.execute("ROLLBACK")
            raise
        with self._lock:
            for _ in closed:
                self._closed.popleft()
        self._flushed = n

    def _write_closed(self, database: sqlite3.Connection, c: Closed) -> None:
        if not c.series:
            c = self.encode(c.minute, *c.samples, self.series)
        if c.minute in self._merge_minutes:
            c = self._merged(database, c)
        database.executemany(
            "INSERT OR REPLACE INTO raw VALUES (?, ?)",
            [(db.raw_id(s, m), blob) for s, m, blob in c.raw],
        )
        database.executemany(_M1_INSERT, c.m1)
        if c.rollup:
            hour = c.minute - c.minute % HOUR_MS
            database.executemany(
                _H1_RECOMPUTE, [{"h": hour, "e": hour + HOUR_MS, "s": s} for s in c.series]
            )
        database.execute("DELETE FROM pending WHERE t < ?", (c.minute + CHUNK_MS,))

    def _merged(self, database: sqlite3.Connection, c: Closed) -> Closed:
        """This minute already has chunks (a restart within it): combine old and new samples."""
        t, v, q = c.samples
        raw, m1 = [], []
        for j, s in enumerate(c.series):
            row = database.execute(
                "SELECT blob FROM raw WHERE id = ?", (db.raw_id(s, c.minute),)
            ).fetchone()
            new = codec.Samples(t, v[:, j], q[:, j])
            if row is not None:
                old = codec.decode(c.minute, row[0])
                both = codec.concat([old, new])
                order = np.argsort(both.t, kind="stable")
                new = codec.Samples(both.t[order], both.v[order], both.q[order])
            raw.append((s, c.minute, codec.encode(c.minute, self.resolution, new)))
            agg = codec.aggregate(new.v[:, None], new.q[:, None])
            m1.extend(m1_rows(c.minute, [s], agg))
        return Closed(c.minute, raw, m1, c.samples, c.series)

    def _failed(self, err: Exception) -> None:
        self.status.failures += 1
        if db.is_corruption(err):
            self._replace_corrupt(err)
            return
        if self.status.state is not WriterState.DEGRADED:
            log.error(
                "historian cannot write %s (%s): history is degraded, the live stream and "
                "alarms go on; retrying every %.0f s",
                self.path,
                err,
                RETRY_EVERY_S,
            )
            self.status.degraded_since = self.clock()
        self.status.move(WriterState.DEGRADED)
        self.status.reason = str(err)
        self._next_retry = time.monotonic() + RETRY_EVERY_S

    def _replace_corrupt(self, err: Exception) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = db.move_aside(self.path, str(err))
        log.error(
            "historian database %s is corrupt (%s); moved to %s, starting a fresh one",
            self.path,
            err,
            aside,
        )
        self._merge_minutes.clear()
        self._flushed = 0  # the open minute goes into the new file's `pending` from its start
        try:
            self._open()
        except (sqlite3.Error, OSError) as again:
            self.status.move(WriterState.DEGRADED)
            self.status.reason = str(again)

    # -- opening and recovery ------------------------------------------------------------------

    def _open(self) -> None:
        database = db.open_writer(self.path)
        now_ms = round(self.clock() * 1000)
        self.series = db.series_ids(database, self.paths, self.units, now_ms)
        self.layout = _layout_id(database, self.series)
        self._merge_minutes |= self._recover(database)
        self._run_started = now_ms
        database.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", (now_ms, None, self.resolution)
        )
        self._db = database
        self.generation += 1
        if self.status.state is WriterState.STARTING:
            self.status.move(WriterState.OK)

    def _recover(self, database: sqlite3.Connection) -> set[int]:
        """Turn `pending` rows left by a killed run into chunks; returns the minutes written."""
        rows = database.execute("SELECT t, layout, blob FROM pending ORDER BY t").fetchall()
        if not rows:
            return set()
        layouts = {
            i: np.frombuffer(b, np.int64).tolist()
            for i, b in database.execute("SELECT id, series FROM layouts")
        }
        by_minute: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        for _t, layout, blob in rows:
            if layout not in layouts:
                continue
            t, v, q = _pending_decode(blob, len(layouts[layout]))
            minutes = t - t % CHUNK_MS
            for m in np.unique(minutes).tolist():
                sel = minutes == m
                by_minute.setdefault((m, layout), []).append((t[sel], v[sel], q[sel]))
        written: set[int] = set()
        database.execute("BEGIN IMMEDIATE")
        for (minute, layout), parts in sorted(by_minute.items()):
            t = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            q = np.concatenate([p[2] for p in parts])
            closed = self.encode(minute, t, v, q, layouts[layout])
            self._merge_minutes.add(minute)  # an earlier run may have written part of it
            self._write_closed(database, closed)
            written.add(minute)
        database.execute("DELETE FROM pending")
        database.execute("COMMIT")
        log.info(
            "historian recovered %d unflushed minute(s) of samples from the last run",
            len(written),
        )
        return written

    # -- retention ------------------------------------------------------------------------------

    def _prune_step(self) -> None:
        if self._db is None or self.status.state is not WriterState.OK:
            return
        if self._prune_job is None:
            if time.monotonic() < self._next_prune:
                return
            self._next_prune = time.monotonic() + self.prune_every_s
            self._prune_job = self.prune_batches()
        try:
            next(self._prune_job)
        except StopIteration:
            self._prune_job = None
        except sqlite3.Error as err:
            self._prune_job = None
            self._failed(err)

    def prune_batches(self) -> Iterator[int]:
        """Delete what retention no longer keeps, a few series per transaction."""
        database = self._db
        assert database is not None
        now_ms = round(self.clock() * 1000)
        cutoffs = {
            "raw": now_ms - round(self.retention.raw_days * 86_400_000),
            "m1": now_ms - round(self.retention.m1_days * 86_400_000),
            "h1": now_ms - round(self.retention.h1_days * 86_400_000),
        }
        ids = [r[0] for r in database.execute("SELECT id FROM series ORDER BY id")]
        removed = 0
        for i in range(0, len(ids), PRUNE_BATCH):
            batch = ids[i : i + PRUNE_BATCH]
            database.execute("BEGIN IMMEDIATE")
            cur = database.executemany(
                "DELETE FROM raw WHERE id >= ? AND id < ?",
                [(db.raw_id(s, 0), db.raw_id(s, max(cutoffs["raw"], 0))) for s in batch],
            )
            removed += max(cur.rowcount, 0)
            for table in ("m1", "h1"):
                cur = database.executemany(
                    f"DELETE FROM {table} WHERE series = ? AND t < ?",
                    [(s, cutoffs[table]) for s in batch],
                )
                removed += max(cur.rowcount, 0)
            database.execute("COMMIT")
            yield removed
        database.execute("DELETE FROM runs WHERE last_ms < ?", (cutoffs["h1"],))
        self.status.pruned += removed
        if removed:
            # The deletions went through the WAL: write them back and give its space back.
            wal = checkpoint(database)
            log.info(
                "historian retention removed %d old row(s); WAL %s",
                removed,
                "truncated" if wal == 0 else f"{wal} bytes (readers busy; truncated later)",
            )

    def prune_now(self) -> int:
        """Run a whole retention pass at once (tests, tools); the thread must not be running."""
        before = self.status.pruned
        for _ in self.prune_batches():
            pass
        return self.status.pruned - before


def checkpoint(database: sqlite3.Connection) -> int:
    """Checkpoint the WAL into the file and truncate it; the WAL's bytes left (0: done).
    Waits at most CHECKPOINT_WAIT_MS for readers (the writer thread, never the tick)."""
    database.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
    try:
        busy, _log, _done = database.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        database.execute(f"PRAGMA busy_timeout={db.BUSY_TIMEOUT_MS}")
    if not busy:
        return 0
    wal = Path(str(database_path(database)) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def database_path(database: sqlite3.Connection) -> str:
    return str(database.execute("PRAGMA database_list").fetchone()[2])


def _layout_id(database: sqlite3.Connection, series: list[int]) -> int:
    blob = np.asarray(series, dtype=np.int64).tobytes()
    database.execute("INSERT OR IGNORE INTO layouts(series) VALUES (?)", (blob,))
    row = database.execute("SELECT id FROM layouts WHERE series = ?", (blob,)).fetchone()
    return int(row[0])


def _pending_blob(t: np.ndarray, v: np.ndarray, q: np.ndarray) -> bytes:
    n = np.array([len(t)], dtype=np.int64)
    return n.tobytes() + t.astype(np.int64).tobytes() + v.tobytes() + q.tobytes()


def _pending_decode(blob: bytes, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(np.frombuffer(blob, np.int64, 1)[0])
    t = np.frombuffer(blob, np.int64, n, offset=8)
    v = np.frombuffer(blob, np.float32, n * width, offset=8 + 8 * n).reshape(n, width)
    q = np.frombuffer(blob, np.uint8, n * width, offset=8 + 8 * n + 4 * n * width)
    return t.copy(), v.copy(), q.reshape(n, width).copy()
