"""The notification outbox: its own SQLite file (0600), separate from the alarm journal.

One row per (target, event) waiting for delivery, in id order; a row is deleted once its
receiver confirmed it. The journal cursor the feeder last routed is stored in the same
transaction as the rows it produced, so after a crash the feeder neither skips nor
re-routes an event. The table `targets` keeps delivery counters across restarts, and
`rate_buckets` each e-mail target's rate limit (tokens left, wall time), so a restart does not
hand out a fresh bucket.

Not thread-safe by itself: the Notifier calls it from one dedicated thread.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scada.core.datadir import private_file
from scada.core.schema import baseline, open_schema
from scada.notify.rules import Timer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    UNIQUE (target, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_target ON outbox(target, id);
CREATE TABLE IF NOT EXISTS timers (
    rule TEXT NOT NULL,
    occurrence_id INTEGER NOT NULL,
    due_at REAL NOT NULL,
    minutes REAL NOT NULL,
    targets TEXT NOT NULL,
    alarm BLOB NOT NULL,
    PRIMARY KEY (rule, occurrence_id)
);
CREATE INDEX IF NOT EXISTS timers_due ON timers(due_at);
CREATE TABLE IF NOT EXISTS targets (
    name TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_at REAL,
    last_success REAL,
    outage_since REAL
);
CREATE TABLE IF NOT EXISTS rate_buckets (
    target TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at REAL NOT NULL
);
"""
# The outbox's schema versions (scada.core.schema): append, never edit a released one.
MIGRATIONS = [baseline]

# Timer operations, applied in the order the journal events asked for them:
# ("start" | "refresh", Timer), ("cancel", occurrence_id), ("fired", (rule, occurrence_id)).
TimerOp = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    event_id: str
    created_at: float
    attempts: int
    body: bytes


@dataclass(slots=True)
class TargetStats:
    """Delivery counters of one target, kept in memory (a /metrics scrape reads them on the
    event loop) and in the table `targets` (they survive restarts)."""

    queued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_success: float | None = None
    outage_since: float | None = None


class Outbox:
    def __init__(self, path: Path | str, *, max_queued: int = 100_000) -> None:
        self.path = Path(path)
        self.max_queued = max_queued
        private_file(self.path)  # alarm texts and recipients: the service user's only
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        open_schema(self._db, f"notification outbox {self.path}", _SCHEMA, MIGRATIONS)
        self.instance = self._meta("instance") or self._new_instance()
        self.stats: dict[str, TargetStats] = {}
        self._load_stats()

    def _load_stats(self) -> None:
        for row in self._db.execute(
            "SELECT name, delivered, failed_attempts, dropped, last_error, last_error_at,"
            " last_success, outage_since FROM targets"
        ):
            self.stats[row[0]] = TargetStats(0, *row[1:])
        for target, count in self._db.execute(
            "SELECT target, count(*) FROM outbox GROUP BY target"
        ):
            self.target(target).queued = int(count)

    def target(self, name: str) -> TargetStats:
        return self.stats.setdefault(name, TargetStats())

    # ------------------------------------------------------------------ meta

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _new_instance(self) -> str:
        """A random id per outbox and journal, part of every event id: ids stay unique for
        receivers even if the journal is replaced and its ids start again at 1."""
        value = secrets.token_hex(4)
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES ('instance', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (value,),
        )
        return value

    def adopt_instance(self, value: str) -> None:
        """Use `value` (a cluster's journal epoch, the same on both ingest nodes) as this
        outbox's instance: the ids of an event's notifications are then the same whichever
        node sends them, so a receiver de-duplicates across a takeover."""
        if value != self.instance:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'instance'", (value,))
            self.instance = value

    def new_journal(self, cursor: int) -> None:
        """The journal was replaced (its ids restart): new event ids from here on, and the
        reminders of its occurrences are void. What is queued is still delivered."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            self.instance = self._new_instance()
            cur.execute("DELETE FROM timers")
            cur.execute("UPDATE meta SET value = ? WHERE key = 'cursor'", (str(cursor),))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def cursor(self) -> int | None:
        """The journal id of the newest event already routed; None on a new outbox."""
        value = self._meta("cursor")
        return None if value is None else int(value)

    # ------------------------------------------------------------------ writing

    def commit(
        self,
        rows: Sequence[tuple[str, str, bytes]],
        *,
        now: float,
        cursor: int | None = None,
        timer_ops: Iterable[TimerOp] = (),
    ) -> dict[str, int]:
        """In one transaction: add (target, event_id, body) rows, apply the timer operations
        in order and advance the cursor. Returns the rows dropped per target (max_queued)."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            added: dict[str, int] = {}
            for target, event_id, body in rows:
                cur.execute(
                    "INSERT OR IGNORE INTO outbox(target, event_id, created_at, body)"
                    " VALUES (?, ?, ?, ?)",
                    (target, event_id, now, body),
                )
                added[target] = added.get(target, 0) + cur.rowcount
            for op in timer_ops:
                _apply_timer_op(cur, op)
            if cursor is not None:
                cur.execute(
                    "INSERT INTO meta(key, value) VALUES ('cursor', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(cursor),),
                )
            dropped = {t: self._trim(cur, t) for t in added}
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        for target, count in added.items():
            stats = self.target(target)
            stats.queued += count - dropped[target]
            stats.dropped += dropped[target]
        return {t: n for t, n in dropped.items() if n}

    def _trim(self, cur: sqlite3.Cursor, target: str) -> int:
        (count,) = cur.execute("SELECT count(*) FROM outbox WHERE target = ?", (target,)).fetchone()
        excess = int(count) - self.max_queued
        if excess <= 0:
            return 0
        cur.execute(
            "DELETE FROM outbox WHERE id IN"
            " (SELECT id FROM outbox WHERE target = ? ORDER BY id LIMIT ?)",
            (target, excess),
        )
        self._ensure_target(cur, target)
        cur.execute("UPDATE targets SET dropped = dropped + ? WHERE name = ?", (excess, target))
        return excess

    @staticmethod
    def _ensure_target(cur: sqlite3.Cursor, target: str) -> None:
        cur.execute("INSERT OR IGNORE INTO targets(name) VALUES (?)", (target,))

    def delivered(self, target: str, ids: Sequence[int], now: float) -> None:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            deleted = cur.rowcount  # fewer if max_queued dropped some meanwhile
            self._ensure_target(cur, target)
            cur.execute(
                "UPDATE targets SET delivered = delivered + ?, last_success = ?,"
                " outage_since = NULL WHERE name = ?",
                (len(ids), now, target),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        stats = self.target(target)
        stats.queued -= deleted
        stats.delivered += len(ids)
        stats.last_success, stats.outage_since = now, None

    def failed(self, target: str, ids: Sequence[int], error: str, now: float) -> None:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids]
            )
            self._ensure_target(cur, target)
            cur.execute(
                "UPDATE targets SET failed_attempts = failed_attempts + 1, last_error = ?,"
                " last_error_at = ?, outage_since = coalesce(outage_since, ?) WHERE name = ?",
                (error, now, now, target),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        stats = self.target(target)
        stats.failed_attempts += 1
        stats.last_error, stats.last_error_at = error, now
        if stats.outage_since is None:
            stats.outage_since = now

    def save_bucket(self, target: str, tokens: float, at: float) -> None:
        """A target's rate-limit tokens left at wall time `at` (committed before the send)."""
        self._db.execute(
            "INSERT INTO rate_buckets(target, tokens, at) VALUES (?, ?, ?)"
            " ON CONFLICT(target) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
            (target, tokens, at),
        )

    def bucket(self, target: str) -> tuple[float, float] | None:
        """(tokens, at) last saved for a target, or None."""
        row = self._db.execute(
            "SELECT tokens, at FROM rate_buckets WHERE target = ?", (target,)
        ).fetchone()
        return None if row is None else (float(row[0]), float(row[1]))

    # ------------------------------------------------------------------ reading

    def head(self, target: str, limit: int = 1) -> list[Row]:
        rows = self._db.execute(
            "SELECT id, event_id, created_at, attempts, body FROM outbox"
            " WHERE target = ? ORDER BY id LIMIT ?",
            (target, limit),
        ).fetchall()
        return [Row(int(r[0]), str(r[1]), float(r[2]), int(r[3]), bytes(r[4])) for r in rows]

    def oldest_pending(self) -> int | None:
        """The journal id of the oldest event with a notification still queued (any target;
        reminders aside), or None when every routed event is delivered or dropped."""
        # Rows are added in journal order: the first one by rowid is the oldest event (a
        # look at the head, not a scan of an outbox that an outage filled).
        row = self._db.execute(
            "SELECT CAST(substr(event_id, instr(event_id, ':') + 1) AS INTEGER) FROM outbox"
            " WHERE event_id NOT GLOB '*:unack:*' ORDER BY id LIMIT 1"
        ).fetchone()
        return None if row is None else int(row[0])

    def forget_through(self, instance: str, journal_id: int) -> int:
        """Drop the queued notifications of `instance`'s events up to `journal_id` (another
        node of the cluster delivered them after this one stood by); returns how many."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            gone = cur.execute(
                "DELETE FROM outbox WHERE event_id GLOB ? || ':[0-9]*'"
                " AND CAST(substr(event_id, length(?) + 2) AS INTEGER) <= ? RETURNING target",
                (instance, instance, journal_id),
            ).fetchall()
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        for (target,) in gone:
            self.target(str(target)).queued -= 1
        return len(gone)

    def due_timers(self, now: float) -> list[Timer]:
        rows = self._db.execute(
            "SELECT rule, occurrence_id, due_at, minutes, targets, alarm FROM timers"
            " WHERE due_at <= ? ORDER BY due_at, occurrence_id",
            (now,),
        ).fetchall()
        return [
            Timer(
                rule=r[0],
                occurrence_id=int(r[1]),
                due_at=float(r[2]),
                minutes=float(r[3]),
                targets=tuple(orjson.loads(r[4])),
                alarm=orjson.loads(r[5]),
                start=False,
            )
            for r in rows
        ]

    def next_due(self) -> float | None:
        row = self._db.execute("SELECT min(due_at) FROM timers").fetchone()
        return None if row[0] is None else float(row[0])

    def oldest_queued(self) -> dict[str, float]:
        """created_at of each target's oldest waiting row."""
        rows = self._db.execute("SELECT target, min(created_at) FROM outbox GROUP BY target")
        return {str(r[0]): float(r[1]) for r in rows}

    def close(self) -> None:
        self._db.close()


def _apply_timer_op(cur: sqlite3.Cursor, op: TimerOp) -> None:
    kind, arg = op
    if kind == "cancel":  # every timer of occurrence `arg`
        cur.execute("DELETE FROM timers WHERE occurrence_id = ?", (int(arg),))
    elif kind == "fired":  # one timer: (rule, occurrence_id)
        cur.execute("DELETE FROM timers WHERE rule = ? AND occurrence_id = ?", tuple(arg))
    elif kind == "start":
        t: Timer = arg
        cur.execute(
            "INSERT OR REPLACE INTO timers(rule, occurrence_id, due_at, minutes, targets, alarm)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (t.rule, t.occurrence_id, t.due_at, t.minutes, orjson.dumps(t.targets), _dump(t)),
        )
    elif kind == "refresh":
        t = arg
        cur.execute(
            "UPDATE timers SET alarm = ? WHERE rule = ? AND occurrence_id = ?",
            (_dump(t), t.rule, t.occurrence_id),
        )
    else:
        raise ValueError(f"unknown timer operation {kind!r}")


def _dump(timer: Timer) -> bytes:
    return orjson.dumps(timer.alarm)
