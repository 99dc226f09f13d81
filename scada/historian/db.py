"""The historian's SQLite file: schema, opening (a corrupt file is moved aside), series ids.

Tables (times are epoch milliseconds):
    series   one row per tag path ever recorded; a renamed tag is a new series
    raw      id = series << 32 | minute number -> the minute's samples as one codec blob
             (a rowid table: its ~1 KB rows share pages; WITHOUT ROWID would give each
             one an overflow page)
    m1       (series, t = minute start) -> n, ngood, min, max, sum, first, last, worst quality
    h1       (series, t = hour start)   -> the same, rolled up from m1
    pending  the open minute's samples of all tags, appended every flush (at most 1 s old);
             replayed into `raw`/`m1` after a crash and deleted once the minute is closed
    layouts  the series order of a pending row
    runs     one row per server run: when it started and the newest sample it wrote
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from scada.core.schema import baseline, open_schema

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, unit TEXT NOT NULL, created_ms INTEGER
);
CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS m1 (
    series INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER, ngood INTEGER, vmin REAL,
    vmax REAL, vsum REAL, vfirst REAL, vlast REAL, q INTEGER, PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS h1 (
    series INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER, ngood INTEGER, vmin REAL,
    vmax REAL, vsum REAL, vfirst REAL, vlast REAL, q INTEGER, PRIMARY KEY (series, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    t INTEGER PRIMARY KEY, layout INTEGER NOT NULL, blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS layouts (id INTEGER PRIMARY KEY, series BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS runs (
    started_ms INTEGER PRIMARY KEY, last_ms INTEGER, resolution_ms INTEGER
);
"""
# The historian's schema versions (scada.core.schema): append, never edit a released one.
MIGRATIONS = [baseline]

CHUNK_MS = 60_000
HOUR_MS = 3_600_000
BUSY_TIMEOUT_MS = 5000
# After a checkpoint the WAL file is cut back to this size (SQLite keeps it at its largest
# otherwise): a burst of writes, a prune or a long reader cannot leave it large for good.
WAL_SIZE_LIMIT = 32 * 1024 * 1024


def is_corruption(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def raw_id(series: int, t_ms: int) -> int:
    return (series << 32) | (t_ms // CHUNK_MS)


def raw_time(raw: int) -> int:
    return (raw & 0xFFFFFFFF) * CHUNK_MS


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA page_size=16384")  # a new file only: fewer, fuller pages for chunks
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a commit is in the WAL (OS cache) when it returns, so a killed process loses
    # nothing committed; only a power cut may lose the last commits (docs/historian.md).
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    open_schema(db, f"historian {path}", SCHEMA, MIGRATIONS)
    return db


def open_writer(path: Path) -> sqlite3.Connection:
    """Open (or create) the database; a corrupt file is moved aside and a fresh one made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = connect(path)
        db.execute("SELECT count(*) FROM series").fetchone()
        db.execute("SELECT t FROM pending ORDER BY t DESC LIMIT 1").fetchone()
        return db
    except sqlite3.DatabaseError as err:
        if not is_corruption(err):
            raise
        aside = move_aside(path, str(err))
        log.error(
            "historian database %s is corrupt (%s); moved to %s, starting a fresh one",
            path,
            err,
            aside,
        )
        return connect(path)


def move_aside(path: Path, reason: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(aside) + suffix))
    return aside


def open_reader(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    return db


def series_ids(
    db: sqlite3.Connection, paths: list[str], units: list[str], now_ms: int
) -> list[int]:
    """Ids of these tag paths, registering new ones (their history starts now)."""
    known = dict(db.execute("SELECT path, id FROM series").fetchall())
    fresh = [(p, u, now_ms) for p, u in zip(paths, units, strict=True) if p not in known]
    if fresh:
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO series(path, unit, created_ms) VALUES (?, ?, ?)", fresh)
        db.execute("COMMIT")
        known = dict(db.execute("SELECT path, id FROM series").fetchall())
    for p, u in zip(paths, units, strict=True):
        db.execute("UPDATE series SET unit = ? WHERE path = ? AND unit != ?", (u, p, u))
    return [int(known[p]) for p in paths]


def disk_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total
