"""The historian as the server uses it: one writer thread; reads prepared here, run elsewhere.

`record` is what the tick calls. A read is prepared in the historian's reader threads (tag
lookup, the plan, a copy of the samples the writer still holds: `job`) and run as a
`reading.Job` in the heavy-read worker process (scada.web.history), off the GIL the tick
needs; `history_sync`, `samples` and `buckets` run the same reads in the calling thread on
a read-only connection per thread (WAL: readers never block the writer nor each other).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scada.core.config import HistorianSettings, PlantConfig, resolve_data_path
from scada.core.tags import TagSchema
from scada.core.timefmt import iso_ms
from scada.historian import codec, db, query, reading
from scada.historian.query import Buckets, Plan, SeriesSpec
from scada.historian.writer import Retention, Writer, WriterState

log = logging.getLogger(__name__)

READERS = 2  # concurrent history reads; more queue (2 cores: more would only contend)
T = TypeVar("T")


class Historian:
    def __init__(
        self,
        path: Path,
        schema: TagSchema,
        settings: HistorianSettings,
        *,
        resolution_ms: int,
    ) -> None:
        self.path = path
        self.settings = settings
        self.schema = schema
        self.resolution = resolution_ms
        paths = [ref.path for ref in schema.refs]
        self.compression = _compression(paths, settings)
        self.writer = Writer(
            path,
            paths,
            [ref.config.unit for ref in schema.refs],
            resolution_ms=resolution_ms,
            flush_interval=settings.flush_interval,
            retention=Retention(
                settings.raw_days, settings.rollup_1m_days, settings.rollup_1h_days
            ),
            compression=self.compression,
        )
        self.clock = time.time  # wall clock: decides which tiers still hold a range
        self._local = threading.local()
        self._readers: set[sqlite3.Connection] = set()  # every thread's, closed at stop
        self._readers_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="historian-read")
        self._series_cache: dict[str, tuple[int, str]] = {}
        self._series_gen = -1
        self.last_recorded: float | None = None  # epoch seconds of the newest row taken

    @classmethod
    def from_config(cls, config: PlantConfig, schema: TagSchema) -> Historian:
        settings = config.historian
        path = resolve_data_path(config, settings.path, "history.sqlite")
        return cls(path, schema, settings, resolution_ms=config.server.batch_interval_ms)

    def start(self) -> None:
        self.writer.start()
        log.info(
            "historian: %s, %d tags every %d ms (raw %g d, 1 min %g d, 1 h %g d)",
            self.path,
            len(self.writer.paths),
            self.resolution,
            self.settings.raw_days,
            self.settings.rollup_1m_days,
            self.settings.rollup_1h_days,
        )

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Closed before the writer: the last connection to close removes the -wal and -shm.
        with self._readers_lock:
            readers, self._readers = self._readers, set()
        for reader in readers:
            reader.close()
        self.writer.stop()

    def record(self, t: float, values: np.ndarray, quality: np.ndarray) -> None:
        self.last_recorded = t
        self.writer.record(t, values, quality)

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        st = self.writer.status
        return {
            "state": st.state.value,
            "degraded": st.state is WriterState.DEGRADED,
            "reason": st.reason,
            "path": str(self.path),
            "disk_bytes": db.disk_bytes(self.path),
            "rows": st.rows,
            "chunks": st.chunks,
            "dropped_rows": st.dropped_rows,
            "failures": st.failures,
            "pruned_rows": st.pruned,
            "last_flush": iso_ms(st.last_flush) if st.last_flush else None,
        }

    def metrics(self) -> Iterator[Metric]:
        st = self.writer.status
        yield GaugeMetricFamily(
            "scada_historian_degraded",
            "1 while the historian cannot write (disk full, unwritable or missing file).",
            1.0 if st.state is WriterState.DEGRADED else 0.0,
        )
        yield GaugeMetricFamily(
            "scada_historian_disk_bytes",
            "Bytes of the historian's SQLite files.",
            db.disk_bytes(self.path),
        )
        yield CounterMetricFamily("scada_historian_rows", "Ticks recorded.", value=st.rows)
        yield CounterMetricFamily(
            "scada_historian_dropped_rows", "Ticks lost while writes failed.", value=st.dropped_rows
        )
        yield CounterMetricFamily(
            "scada_historian_write_failures", "Failed historian commits.", value=st.failures
        )

    # -- reading ------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        local = self._local
        gen = self.writer.generation
        if getattr(local, "gen", None) != gen or getattr(local, "db", None) is None:
            if getattr(local, "db", None) is not None:
                local.db.close()
                with self._readers_lock:
                    self._readers.discard(local.db)
            local.db = db.open_reader(self.path)
            local.gen = gen
            with self._readers_lock:
                self._readers.add(local.db)
        conn: sqlite3.Connection = local.db
        return conn

    def known_series(self) -> dict[str, tuple[int, str]]:
        """path -> (series id, unit) of every tag ever recorded (cached per file)."""
        gen = self.writer.generation
        if self._series_gen != gen or len(self._series_cache) < len(self.writer.paths):
            rows = self._reader().execute("SELECT path, id, unit FROM series").fetchall()
            self._series_cache = {p: (int(i), u) for p, i, u in rows}
            self._series_gen = gen
        return self._series_cache

    def spec(self, path: str) -> SeriesSpec | None:
        """What is known of a tag path: configured now, or only recorded in the past."""
        known = self.known_series().get(path)
        position = self._position(path)
        if position is None and known is None:
            return None
        if position is not None:
            ref = self.schema.refs[position]
            tag = ref.config
            limits = {n: lim.value for n, lim in tag.limits.items()} if tag.limits else {}
            return SeriesSpec(
                path,
                known[0] if known else None,
                position,
                tag.unit,
                tag.setpoint,
                limits,
                self.compression[position][0] if position in self.compression else None,
            )
        assert known is not None
        return SeriesSpec(path, known[0], None, known[1])

    def _position(self, path: str) -> int | None:
        line, _, name = path.partition(".")
        if not line.startswith("line") or not self.schema.has(line[4:], name):
            return None
        return self.schema.index(line[4:], name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read in the historian's own reader threads (never on the event loop, and
        never queued behind or in front of other work on the default executor)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def job(self, specs: list[SeriesSpec], from_ms: int, to_ms: int, points: int) -> reading.Job:
        """A /api/history read for a worker: the plan and what the writer still holds."""
        p = query.plan(
            from_ms,
            to_ms,
            points,
            self.resolution,
            round(self.clock() * 1000),
            self.settings.raw_days,
            self.settings.rollup_1m_days,
        )
        return reading.Job(self.path, self.resolution, p, from_ms, to_ms, self.series(specs))

    def prepare(self, tags: list[str], from_ms: int, to_ms: int, points: int) -> reading.Job:
        """`job` for tag paths; raises UnknownTag for a tag neither configured nor recorded."""
        specs = []
        for tag in tags:
            spec = self.spec(tag)
            if spec is None:
                raise UnknownTag(tag)
            specs.append(spec)
        return self.job(specs, from_ms, to_ms, points)

    def series(self, specs: list[SeriesSpec]) -> list[reading.Series]:
        """Each tag with the samples not yet written (one copy under the writer's lock)."""
        positions = [s.position for s in specs if s.position is not None]
        if positions:
            t, v, q = self.writer.snapshot(positions)
        out = []
        column = 0
        for spec in specs:
            if spec.position is None:
                live = codec.concat([])
            else:
                live = codec.Samples(t, v[:, column].copy(), q[:, column].copy())
                column += 1
            out.append(reading.Series(spec, live))
        return out

    def history_sync(
        self, specs: list[SeriesSpec], from_ms: int, to_ms: int, points: int
    ) -> dict[str, Any]:
        """The /api/history document, read in the calling thread (the server runs the same
        `reading.answer` in its worker process)."""
        return reading.answer(self._reader(), self.job(specs, from_ms, to_ms, points))

    def samples(self, spec: SeriesSpec, from_ms: int, to_ms: int) -> codec.Samples:
        """Raw samples in [from, to): committed chunks plus what the writer still holds."""
        return reading.samples(self._reader(), self.series([spec])[0], from_ms, to_ms)

    def buckets(self, spec: SeriesSpec, p: Plan, width: float | None = None) -> Buckets:
        s = self.series([spec])[0]
        return reading.buckets(self._reader(), s, p, self.resolution, width)


class UnknownTag(LookupError):
    def __init__(self, tag: str) -> None:
        super().__init__(f"unknown tag {tag!r} (tags are named like line1.diameter)")
        self.tag = tag


def _compression(paths: list[str], settings: HistorianSettings) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for pattern, rule in settings.compression.items():
        for i, path in enumerate(paths):
            if fnmatch.fnmatchcase(path, pattern):
                out[i] = (rule.method, rule.deviation)
    return out
