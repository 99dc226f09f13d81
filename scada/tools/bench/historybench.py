"""`scada bench --history`: build a synthetic history, then time the queries a trend screen makes.

1. Record real simulator output (every tag of the plant, 10 Hz) for a few minutes.
2. Build the history as fast as the historian can write it: those minutes, encoded once by the
   historian's own encoder (chunk bytes do not depend on the absolute time), repeated over
   the whole span (30 days of the default plant; 1 day of a 500-line plant).
3. Query through the server's own code path (`Historian.history_sync`, JSON-ready lists):
   1 tag x {1 h, 24 h, 7 d, 30 d} and 8 tags x 24 h at 1,000 points, p50/p95.
4. The naive baseline in the same run: one row per value `(tag, ts, v)` with an index, the
   same 24 h buckets by `GROUP BY`, over the tags the queries use.
5. Writer CPU: the live writer thread fed 5,000 tags at 10 Hz in real time, across minute
   closes, CPU seconds per second (the tick's hand-off counted apart).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scada.core.config import HistorianSettings, PlantConfig, load_config
from scada.core.datadir import private_file
from scada.core.errors import ConfigError
from scada.core.tags import TagSchema
from scada.historian.db import CHUNK_MS, HOUR_MS, disk_bytes
from scada.historian.service import Historian
from scada.historian.writer import Closed, Writer
from scada.tools.bench.ingestbench import plant_config
from simulators.simulation import SimulatedPlant

RES_MS = 100
DAY_MS = 86_400_000
Progress = Callable[[str], None] | None


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--history (sizes; the defaults are the issue's)")
    g.add_argument("--history-days", type=float, default=30.0, help="default plant span")
    g.add_argument("--history-lines", type=int, default=8, help="lines of the default plant")
    g.add_argument("--big-lines", type=int, default=500, help="lines of the large plant")
    g.add_argument("--big-hours", type=float, default=24.0, help="span of the large plant")
    g.add_argument("--naive-hours", type=float, default=24.0, help="naive baseline span")
    g.add_argument("--cpu-tags", type=int, default=5000, help="tags fed to the live writer")
    g.add_argument("--cpu-seconds", type=float, default=75.0, help="live writer window")
    g.add_argument("--reps", type=int, default=20, help="repetitions of each query")
    g.add_argument("--sim-minutes", type=int, default=10, help="simulator minutes recorded")
    g.add_argument("--dir", help="where to build the files (default: a temporary directory)")
    g.add_argument(
        "--history-out",
        metavar="DATA_DIR",
        help="only build --history-days of the plant (--config's, or --history-lines of the "
        "default) as DATA_DIR/history.sqlite, ending now, for a server to open",
    )


def simulate(
    lines: int, minutes: int, seed: int = 42, config: PlantConfig | None = None
) -> tuple[TagSchema, np.ndarray]:
    """[minutes * 600, tags] float32 simulator output at 10 Hz (of `config`, or of the
    default plant with `lines` lines)."""
    config = config or plant_config(lines)
    schema = TagSchema(config.lines)
    plant = SimulatedPlant(config.lines, seed=seed)
    rows = minutes * CHUNK_MS // RES_MS
    out = np.empty((rows, schema.size), dtype=np.float32)
    plant.advance(60.0)  # past the start-up transient
    for i in range(rows):
        plant.advance(RES_MS / 1000)
        values, _valid = plant.sample()
        out[i] = values.reshape(-1)
    return schema, out


def build(
    path: Path, schema: TagSchema, data: np.ndarray, end_ms: int, span_ms: int, progress: Progress
) -> dict[str, Any]:
    """Write `span_ms` of history ending at `end_ms`, cycling the recorded minutes."""
    paths = [r.path for r in schema.refs]
    writer = Writer(path, paths, [r.config.unit for r in schema.refs], resolution_ms=RES_MS)
    writer.open(bulk=True)  # a bulk load, not the live path: queries need no journal or fsync
    per_minute = CHUNK_MS // RES_MS
    t_rel = RES_MS * np.arange(per_minute, dtype=np.int64)
    quality = np.zeros((per_minute, schema.size), dtype=np.uint8)
    cached = [
        writer.encode(0, t_rel, data[k * per_minute : (k + 1) * per_minute], quality, writer.series)
        for k in range(len(data) // per_minute)
    ]
    start = end_ms - span_ms
    start -= start % CHUNK_MS
    minutes = (end_ms - start) // CHUNK_MS
    began = time.perf_counter()
    batch: list[Closed] = []
    for k in range(minutes):
        minute = start + k * CHUNK_MS
        c = cached[k % len(cached)]
        last_of_hour = (minute + CHUNK_MS) % HOUR_MS == 0 or k == minutes - 1
        batch.append(
            Closed(
                minute,
                [(s, minute, b) for s, _, b in c.raw],
                [(r[0], minute, *r[2:]) for r in c.m1],
                c.samples,
                c.series,
                rollup=last_of_hour,
            )
        )
        if len(batch) * schema.size >= 20_000 or k == minutes - 1:
            writer.commit(batch)
            batch = []
            if progress is not None:
                progress(f"building {path.name}: {100 * (k + 1) / minutes:.0f}%")
    seconds = time.perf_counter() - began
    writer.stop()
    values = minutes * per_minute * schema.size
    size = disk_bytes(path)
    return {
        "file": path.name,
        "tags": schema.size,
        "days": round(minutes / 1440, 3),
        "values": values,
        "bytes": size,
        "bytes_per_value": round(size / values, 3),
        "build_seconds": round(seconds, 1),
        "values_per_second": round(values / seconds),
    }


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def timed(fn: Callable[[int], Any], reps: int) -> dict[str, Any]:
    first = fn(0)  # warm the page cache and the reader connection once
    ms = []
    for i in range(reps):
        began = time.perf_counter()
        fn(i)
        ms.append((time.perf_counter() - began) * 1000)
    out: dict[str, Any] = {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(_pct(ms, 0.95), 2),
    }
    if isinstance(first, dict) and "tier" in first:
        out["tier"] = first["tier"]
        out["buckets"] = len(first["series"][0]["t"])
    return out


def historian_queries(
    path: Path, schema: TagSchema, end_ms: int, span_ms: int, reps: int
) -> dict[str, dict[str, float]]:
    h = Historian(path, schema, HistorianSettings(), resolution_ms=RES_MS)
    h.clock = lambda: end_ms / 1000
    specs = [h.spec(r.path) for r in schema.refs]
    out: dict[str, dict[str, float]] = {}
    ranges = [("1 h", 3_600_000), ("24 h", DAY_MS), ("7 d", 7 * DAY_MS), ("30 d", 30 * DAY_MS)]
    for label, span in ranges:
        if span > span_ms:
            continue

        def one(i: int, span: int = span) -> Any:
            spec = specs[(7 * i) % len(specs)]
            assert spec is not None
            return h.history_sync([spec], end_ms - span, end_ms, 1000)

        out[f"1 tag x {label}"] = timed(one, reps)
    if span_ms >= 30 * DAY_MS:
        # The same 30 days from the 1-minute tier (what a chart gets with 2,000 points).
        def minutes(i: int) -> Any:
            spec = specs[(7 * i) % len(specs)]
            assert spec is not None
            return h.history_sync([spec], end_ms - 30 * DAY_MS, end_ms, 2000)

        out["1 tag x 30 d, 2,000 points"] = timed(minutes, reps)
    if span_ms >= DAY_MS:

        def eight(i: int) -> Any:
            chosen = [specs[(i * 8 + j * 11) % len(specs)] for j in range(8)]
            return h.history_sync(
                [s for s in chosen if s is not None], end_ms - DAY_MS, end_ms, 1000
            )

        out["8 tags x 24 h"] = timed(eight, reps)
    return out


NAIVE_QUERY = (
    "SELECT (ts - ?) / ? AS b, min(v), max(v), avg(v), count(*) FROM naive"
    " WHERE tag = ? AND ts >= ? AND ts < ? GROUP BY b"
)


def naive(
    path: Path,
    data: np.ndarray,
    tags: int,
    end_ms: int,
    span_ms: int,
    reps: int,
    progress: Progress,
) -> dict[str, Any]:
    """One row per value with an index on (tag, ts), 24 h buckets by GROUP BY."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE naive (tag INTEGER, ts INTEGER, v REAL)")
    db.execute("CREATE INDEX naive_tag_ts ON naive(tag, ts)")
    rows = span_ms // RES_MS
    start = end_ms - rows * RES_MS
    began = time.perf_counter()
    step = 100_000
    for tag in range(tags):
        column = data[:, tag].astype(np.float64)
        for lo in range(0, rows, step):
            hi = min(lo + step, rows)
            ts = start + RES_MS * np.arange(lo, hi, dtype=np.int64)
            vals = column[np.arange(lo, hi) % len(column)]
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO naive VALUES (?, ?, ?)",
                zip([tag] * (hi - lo), ts.tolist(), vals.tolist(), strict=True),
            )
            db.execute("COMMIT")
        if progress is not None:
            progress(f"naive baseline: tag {tag + 1}/{tags}")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - began
    values = rows * tags
    out: dict[str, Any] = {
        "tags": tags,
        "values": values,
        "bytes_per_value": round(disk_bytes(path) / values, 3),
        "build_seconds": round(seconds, 1),
    }
    span = min(DAY_MS, span_ms)
    bucket = math.ceil(span / 1000)

    def one(i: int) -> Any:
        return db.execute(
            NAIVE_QUERY, (end_ms - span, bucket, i % tags, end_ms - span, end_ms)
        ).fetchall()

    out["1 tag x 24 h"] = timed(one, max(3, reps // 4))
    if tags >= 8:

        def eight(i: int) -> Any:
            return [
                db.execute(
                    NAIVE_QUERY, (end_ms - span, bucket, j, end_ms - span, end_ms)
                ).fetchall()
                for j in range(8)
            ]

        out["8 tags x 24 h"] = timed(eight, max(3, reps // 8))
    db.close()
    return out


def writer_cpu(path: Path, data: np.ndarray, tags: int, seconds: float) -> dict[str, Any]:
    """The live writer thread at 10 Hz in real time: CPU seconds per second of its thread."""
    paths = [f"bench{i // 10}.tag{i % 10}" for i in range(tags)]
    writer = Writer(path, paths, [""] * tags, resolution_ms=RES_MS)
    writer.start()
    cpu_box: dict[str, float] = {}
    ident = writer.thread_ident
    assert ident is not None
    wide = np.resize(data, (len(data), tags)) if data.shape[1] != tags else data
    quality = np.zeros(tags, dtype=np.uint8)
    clock_id = time.pthread_getcpuclockid(ident)
    cpu_box["start"] = time.clock_gettime(clock_id)
    handoff = 0.0
    began = time.monotonic()
    ticks = int(seconds * 10)
    for i in range(ticks):
        deadline = began + (i + 1) * RES_MS / 1000
        t0 = time.thread_time()
        writer.record(time.time(), wide[i % len(wide)], quality)
        handoff += time.thread_time() - t0
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    elapsed = time.monotonic() - began
    used = time.clock_gettime(clock_id) - cpu_box["start"]
    chunks = writer.status.chunks
    writer.stop()
    return {
        "tags": tags,
        "seconds": round(elapsed, 1),
        "minutes_closed": chunks // tags,
        "writer_core_fraction": round(used / elapsed, 4),
        "handoff_us_per_tick": round(handoff / ticks * 1e6, 1),
    }


def build_data_dir(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """`--history-out DATA_DIR`: the historian file a server of that plant opens as its own
    (same tag paths, 100 ms ticks, ending now: the server goes on from there)."""
    config = load_config(args.config) if args.config else None
    if config is not None and config.server.batch_interval_ms != RES_MS:
        raise ConfigError(
            args.config,
            [("server.batch_interval_ms", f"--history-out builds {RES_MS} ms ticks only")],
        )
    path = Path(args.history_out) / "history.sqlite"
    if path.exists():
        raise ConfigError(str(path), [("<file>", "exists: --history-out never overwrites")])
    private_file(path)
    end_ms = round(time.time() * 1000)
    end_ms -= end_ms % CHUNK_MS
    if progress:
        progress("simulating the plant")
    schema, data = simulate(args.history_lines, args.sim_minutes, config=config)
    doc = build(path, schema, data, end_ms, round(args.history_days * DAY_MS), progress)
    doc["file"] = str(path)
    return doc


def render_data_dir(doc: dict[str, Any]) -> str:
    return (
        f"{doc['file']}: {doc['tags']} tags x {doc['days']} days = {doc['values']:,} values, "
        f"{doc['bytes']:,} bytes ({doc['bytes_per_value']} B/value); serve it with "
        "[server] data_dir (or [historian] path) pointing there"
    )


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scada-bench-history-"))
    base.mkdir(parents=True, exist_ok=True)
    end_ms = round(time.time() * 1000)
    end_ms -= end_ms % CHUNK_MS
    doc: dict[str, Any] = {"dir": str(base)}
    try:
        if progress:
            progress("simulating the default plant")
        schema, data = simulate(args.history_lines, args.sim_minutes)
        span = round(args.history_days * DAY_MS)
        plant = build(base / "plant.sqlite", schema, data, end_ms, span, progress)
        plant["queries"] = historian_queries(base / "plant.sqlite", schema, end_ms, span, args.reps)
        doc["plant"] = plant
        naive_tags = min(8, schema.size)
        doc["naive"] = naive(
            base / "naive.sqlite",
            data,
            naive_tags,
            end_ms,
            round(args.naive_hours * HOUR_MS),
            args.reps,
            progress,
        )
        (base / "naive.sqlite").unlink(missing_ok=True)
        if progress:
            progress(f"simulating a {args.big_lines}-line plant")
        big_schema, big_data = simulate(args.big_lines, min(args.sim_minutes, 2), seed=7)
        big_span = round(args.big_hours * HOUR_MS)
        big = build(base / "big.sqlite", big_schema, big_data, end_ms, big_span, progress)
        big["queries"] = historian_queries(
            base / "big.sqlite", big_schema, end_ms, big_span, args.reps
        )
        doc["big"] = big
        if progress:
            progress(f"live writer: {args.cpu_tags} tags at 10 Hz for {args.cpu_seconds:g} s")
        doc["writer"] = writer_cpu(base / "cpu.sqlite", big_data, args.cpu_tags, args.cpu_seconds)
        doc["speedup_24h"] = _speedup(doc)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    return doc


def _speedup(doc: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key in ("1 tag x 24 h", "8 tags x 24 h"):
        ours = doc["plant"]["queries"].get(key)
        theirs = doc["naive"].get(key)
        if ours and theirs:
            out[key] = round(theirs["p50_ms"] / max(ours["p50_ms"], 1e-3), 1)
    return out


TARGETS = {
    "1 tag x 24 h": 30.0,
    "1 tag x 30 d": 100.0,
    "8 tags x 24 h": 150.0,
}


def render(doc: dict[str, Any]) -> str:
    plant, naive_, big, writer = doc["plant"], doc["naive"], doc["big"], doc["writer"]
    lines = [
        f"scada bench --history  (files in {doc['dir']})",
        "",
        "| | historian | naive (tag, ts, v) + index | target |",
        "|---|---|---|---|",
    ]
    for key, q in plant["queries"].items():
        n = naive_.get(key)
        naive_cell = f"{n['p50_ms']} / {n['p95_ms']} ms" if n else ""
        target = f"p95 < {TARGETS[key]:g} ms" if key in TARGETS else ""
        shape = f" ({q['buckets']} x {q['tier']})" if "tier" in q else ""
        lines.append(
            f"| {key}{shape}, p50 / p95 | {q['p50_ms']} / {q['p95_ms']} ms "
            f"| {naive_cell} | {target} |"
        )
    lines.append(
        f"| bytes per raw value (rollups included) | {plant['bytes_per_value']} "
        f"| {naive_['bytes_per_value']} | ≤ 4 |"
    )
    for key, x in doc["speedup_24h"].items():
        lines.append(f"| naive / historian, {key} (p50) | {x}x | | ≥ 20x |")
    lines.append(
        f"| writer thread, {writer['tags']} tags at 10 Hz | "
        f"{100 * writer['writer_core_fraction']:.1f}% of a core "
        f"(+ {writer['handoff_us_per_tick']} µs per tick hand-off) | | ≤ 10% |"
    )
    lines += [
        "",
        f"default plant: {plant['tags']} tags x {plant['days']} days = {plant['values']:,} values, "
        f"{plant['bytes'] / 1e9:.2f} GB, built at {plant['values_per_second']:,} values/s",
        f"{big['tags']}-tag plant: {big['days']} days = {big['values']:,} values, "
        f"{big['bytes'] / 1e9:.2f} GB ({big['bytes_per_value']} B/value), built at "
        f"{big['values_per_second']:,} values/s",
    ]
    for key, q in big["queries"].items():
        lines.append(f"  {big['tags']} tags, {key}: p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms")
    lines.append(
        f"naive baseline: {naive_['tags']} tags x {naive_['values'] // max(naive_['tags'], 1):,} "
        f"values, built in {naive_['build_seconds']} s"
    )
    return "\n".join(lines)
