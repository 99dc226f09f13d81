"""The alarm journal: every AlarmEvent, durably, in SQLite (WAL, synchronous=FULL).

An event is committed (fsynced) before `append` returns, so a client is never told about an
event a crash could lose. Ids come from SQLite's AUTOINCREMENT: strictly increasing, never
reused, also after pruning.

Restore needs only the newest event of each alarm (every event is a full snapshot), so the
table `alarm_last` remembers that event per alarm and pruning never deletes it while the alarm
is not normal. `meta.pruned_through` is the highest id ever pruned: a resume cursor below it
may have missed deleted events, so `since()` answers None.

Occurrence ids come from one durable counter, `meta.occurrence_high` (the highest id ever
journaled), advanced in the same transaction as the events that use an id: whatever later
happens to `alarm_last` or to pruned events, a restart never hands an id out twice.

The journal's epoch (`meta.epoch`, a random 64-bit id minted when the file is created) names
this lineage of ids: a client's resume cursor means something only to a journal of the same
epoch (`snapshot.epoch` on the wire). A cluster standby that mirrors another node's journal
adopts that journal's epoch (`adopt_epoch`), since it holds the same events under the same ids.

In a cluster (docs/cluster.md, "One id, one event") the journal writes under a cluster id only
what the bus accepted: `gate(batch)` runs inside `append`, with the batch numbered newest + 1..
and before anything is written, and publishes it under exactly those ids (the fenced script
refuses ids the stream already has). A batch the gate did not accept is not in `events`; a
tick's batch (events the plant produced; an operator request is simply refused) is kept in
`pending_events` instead, with the id it was offered under, until the cluster's record has it
(forwarded late, scada.roles.ingest.late). Events moved out of the numbered record (a journal
that ran ahead of a stream that lost its data) go there too. A late event (`late: true`, an
event that reached the record after others that happened later) is history only: it never
becomes an alarm's state (`alarm_last`, restore).

Writes go through one connection (the service calls them from its dedicated journal thread).
Reads (history, replay, KPIs, exports) each open their own connection: with WAL they never
wait for the writer's lock nor it for them, and a slow read cannot delay a commit.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson

from scada.alarms import ledger
from scada.alarms.model import AlarmEvent
from scada.core.errors import WriteFenced
from scada.core.schema import open_schema

# The result a command's ledger row stores, made from the committed events (with their ids).
CommandResult = Callable[[list[AlarmEvent]], dict[str, Any]]
LEDGER_KEEP_S = 86400.0  # request ids are remembered this long (a retry comes within seconds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    alarm TEXT NOT NULL,
    line TEXT,
    occurrence_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
CREATE INDEX IF NOT EXISTS events_alarm ON events(alarm, id);
CREATE INDEX IF NOT EXISTS events_line ON events(line, id);
CREATE TABLE IF NOT EXISTS alarm_last (
    alarm TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL,
    occurrence_id INTEGER NOT NULL,
    live INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# Columns the KPIs aggregate in SQL (added to journals written before they existed).
_COLUMNS = {"state": "TEXT", "severity": "TEXT", "raised_at": "REAL"}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS events_raised ON events(at, alarm, state, severity)"
    " WHERE event = 'raised'",
    "DROP INDEX IF EXISTS events_acked",
    "CREATE INDEX IF NOT EXISTS events_ack_delay ON events(at, raised_at)"
    " WHERE event = 'acknowledged'",
)


def _v1_kpi_columns(db: sqlite3.Connection) -> None:
    """Version 1 (release 0.1): the columns the KPIs aggregate in SQL, filled from the
    bodies of journals written before they existed, and their indexes."""
    have = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    missing = [name for name in _COLUMNS if name not in have]
    for name in missing:
        db.execute(f"ALTER TABLE events ADD COLUMN {name} {_COLUMNS[name]}")
    if missing:
        db.execute(
            "UPDATE events SET state = json_extract(CAST(body AS TEXT), '$.state'),"
            " severity = json_extract(CAST(body AS TEXT), '$.severity'),"
            " raised_at = json_extract(CAST(body AS TEXT), '$.raised_at')"
        )
    for statement in _INDEXES:
        db.execute(statement)


def _v2_pending_events(db: sqlite3.Connection) -> None:
    """Version 2 (issue 19): `pending_events`, what a cluster node recorded and the cluster's
    record does not hold yet (forwarded late). The old set-aside table (`diverged_events`,
    read by no one) is emptied into it, so those events reach the record too."""
    db.execute(
        "CREATE TABLE pending_events (pid INTEGER PRIMARY KEY AUTOINCREMENT,"
        " offered_id INTEGER, kept_at REAL NOT NULL, body BLOB NOT NULL)"
    )
    old = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'diverged_events'"
    ).fetchone()
    if old:
        db.execute(
            "INSERT INTO pending_events(offered_id, kept_at, body)"
            " SELECT id, set_aside_at, body FROM diverged_events ORDER BY rowid"
        )
        db.execute("DROP TABLE diverged_events")


# The journal's schema versions (scada.core.schema): append, never edit a released one.
MIGRATIONS = [_v1_kpi_columns, _v2_pending_events]
_OCC_HIGH = "occurrence_high"
_EPOCH = "epoch"
_TOKEN_HIGH = "token_high"


class NotAccepted(WriteFenced):
    """The cluster did not accept a batch: nothing was written under a cluster id.

    `keep`: the batch may be real (the bus refused it or never answered): keep a tick's
    batch in `pending_events` so it reaches the record late."""

    def __init__(self, why: str, *, keep: bool = True) -> None:
        super().__init__(why)
        self.keep = keep


# Publishes a numbered batch before the journal commits it; raises NotAccepted if it did not.
Gate = Callable[[list[AlarmEvent]], None]


class Journal:
    def __init__(self, path: Path | str, *, retention_days: float, retention_events: int) -> None:
        self.path = Path(path)
        self.retention_days = retention_days
        self.retention_events = retention_events
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.gate: Gate | None = None  # a cluster node's: publish first (see the module doc)
        # One connection shared by the service's worker threads, serialised by a lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so a commit survives power loss.
            self._db.execute("PRAGMA synchronous=FULL")
            open_schema(self._db, f"alarm journal {self.path}", _SCHEMA, MIGRATIONS)
            ledger.create(self._db)
            self._init_meta()

    def _init_meta(self) -> None:
        """The durable counters a journal needs, made once (idempotent, once per open)."""
        if self._meta(_OCC_HIGH) is None:
            # Journals from before the counter: the highest id anywhere is the floor.
            high = self._db.execute(
                "SELECT max(m) FROM (SELECT max(occurrence_id) AS m FROM events"
                " UNION ALL SELECT max(occurrence_id) FROM alarm_last)"
            ).fetchone()[0]
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)", (_OCC_HIGH, int(high or 0))
            )
        if self._meta(_EPOCH) is None:
            # 63 bits: SQLite integers are signed.
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)", (_EPOCH, secrets.randbits(63))
            )
        self.epoch = _epoch_text(self._meta(_EPOCH) or 0)

    def adopt_epoch(self, epoch: str) -> None:
        """Take another journal's epoch (a standby mirroring it under the same ids)."""
        value = int(epoch, 16)
        if not 0 <= value < 2**63 or _epoch_text(value) != epoch:
            raise ValueError(f"not a journal epoch: {epoch!r}")
        with self._lock:
            self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, _EPOCH))
        self.epoch = epoch

    def _meta(self, key: str) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ writing

    def append(
        self,
        events: Iterable[AlarmEvent],
        *,
        request_id: str | None = None,
        result: CommandResult | None = None,
        at: float = 0.0,
    ) -> list[AlarmEvent]:
        """Store events in one transaction; sets and returns them with their event_id.

        With `request_id`, the command that planned them is remembered in the same
        transaction with `result(events)` (scada.alarms.ledger): a second command with that
        id raises sqlite3.IntegrityError and stores nothing. With a `gate`, the batch is
        numbered and accepted by it first (NotAccepted: nothing numbered is written; a batch
        without request id is kept pending when the gate says so).
        """
        batch = list(events)
        if not batch:
            return batch
        with self._lock:
            if self.gate is not None:
                first = self._newest_id() + 1
                for i, ev in enumerate(batch):
                    ev.event_id = first + i
                try:
                    self.gate(batch)
                except NotAccepted as err:
                    if err.keep and request_id is None:
                        self._keep_pending(batch)
                    for ev in batch:
                        ev.event_id = None
                    raise
                except BaseException:
                    for ev in batch:
                        ev.event_id = None
                    raise
            self._insert(batch, request_id, result, at, numbered=self.gate is not None)
        return batch

    def append_numbered(self, events: Iterable[AlarmEvent]) -> list[AlarmEvent]:
        """Store events under the ids they carry (a standby mirroring the cluster's record):
        they must continue this journal's ids exactly (ValueError otherwise, nothing stored)."""
        batch = list(events)
        if not batch:
            return batch
        with self._lock:
            first = self._newest_id() + 1
            ids = [ev.event_id for ev in batch]
            if ids != list(range(first, first + len(batch))):
                raise ValueError(f"ids {ids[0]}.. do not continue the journal at {first - 1}")
            self._insert(batch, None, None, 0.0, numbered=True)
        return batch

    def _insert(
        self,
        batch: list[AlarmEvent],
        request_id: str | None,
        result: CommandResult | None,
        at: float,
        *,
        numbered: bool,
    ) -> None:
        """One transaction, under the lock: the events (their own ids if `numbered`)."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for ev in batch:
                cur.execute(
                    "INSERT INTO events(id, at, alarm, line, occurrence_id, event, body,"
                    " state, severity, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ev.event_id if numbered else None,
                        ev.at,
                        ev.alarm,
                        ev.production_line_id,
                        ev.occurrence_id,
                        ev.event,
                        _body(ev),
                        ev.state,
                        ev.severity,
                        ev.raised_at,
                    ),
                )
                ev.event_id = cur.lastrowid
                if not ev.late:  # a late event is history, never an alarm's state
                    cur.execute(
                        "INSERT OR REPLACE INTO alarm_last(alarm, event_id, occurrence_id, live)"
                        " VALUES (?, ?, ?, ?)",
                        (ev.alarm, ev.event_id, ev.occurrence_id, int(ev.state != "normal")),
                    )
            cur.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = ?",
                (max(ev.occurrence_id for ev in batch), _OCC_HIGH),
            )
            if request_id is not None:
                done = result(batch) if result is not None else {}
                ledger.record(cur, request_id, done, at)
            cur.execute("COMMIT")
        except BaseException:
            # SQLite already rolled back on some errors (SQLITE_FULL): a second ROLLBACK
            # would raise and hide the real cause ("database or disk is full").
            if self._db.in_transaction:
                cur.execute("ROLLBACK")
            for ev in batch:
                ev.event_id = None
            raise

    def _keep_pending(self, batch: list[AlarmEvent]) -> None:
        """Under the lock: a batch the cluster did not accept, kept with its offered ids."""
        with self._db:
            self._db.executemany(
                "INSERT INTO pending_events(offered_id, kept_at, body) VALUES (?, ?, ?)",
                [(ev.event_id, ev.at, _body(ev)) for ev in batch],
            )
            self._db.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = ?",
                (max(ev.occurrence_id for ev in batch), _OCC_HIGH),
            )

    # ------------------------------------------------------------------ cluster: pending, floors

    def pending(self, limit: int = 500) -> list[tuple[int, AlarmEvent]]:
        """Events kept out of the numbered record, oldest first: (pending id, event)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT pid, body FROM pending_events ORDER BY pid LIMIT ?", (limit,)
            ).fetchall()
        return [(int(pid), _event((None, body))) for pid, body in rows]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM pending_events").fetchone()[0])

    def drop_pending(self, pids: Iterable[int]) -> int:
        """Forget pending events the cluster's record now holds."""
        with self._lock, self._db:
            return self._db.executemany(
                "DELETE FROM pending_events WHERE pid = ?", [(p,) for p in pids]
            ).rowcount

    def contains(self, ev: AlarmEvent) -> bool:
        """Whether the numbered record holds this event (same alarm, kind, time, occurrence),
        under whatever id and late or not."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM events WHERE alarm = ? AND at = ? AND event = ?"
                " AND occurrence_id = ? LIMIT 1",
                (ev.alarm, ev.at, ev.event, ev.occurrence_id),
            ).fetchone()
        return row is not None

    def raise_occurrence_floor(self, floor: int) -> None:
        """New occurrence ids from here on are above `floor` (a cluster node's token range:
        occurrence ids stay unique across nodes, also for events one of them kept pending)."""
        with self._lock:
            self._db.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = ?", (floor, _OCC_HIGH)
            )

    def token_high(self) -> int:
        """The highest fencing token this node has seen (its floor after Redis lost data)."""
        with self._lock:
            return self._meta(_TOKEN_HIGH) or 0

    def raise_token_high(self, token: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                (_TOKEN_HIGH, token),
            )

    def move_to_pending_after(self, event_id: int, now: float) -> int:
        """Move the events after `event_id` to `pending_events` (with the id they had) and
        continue the ids from `event_id` + 1: a cluster node whose journal ran ahead of the
        cluster's record (Redis lost what it had accepted, and another node went on under
        those ids) follows the record again, and its events reach the record late.
        Returns how many events were moved."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                alarms = [
                    r[0]
                    for r in cur.execute(
                        "SELECT DISTINCT alarm FROM events WHERE id > ?", (event_id,)
                    ).fetchall()
                ]
                first_at = cur.execute(
                    "SELECT min(at) FROM events WHERE id > ?", (event_id,)
                ).fetchone()[0]
                cur.execute(
                    "INSERT INTO pending_events(offered_id, kept_at, body)"
                    " SELECT id, ?, body FROM events WHERE id > ? ORDER BY id",
                    (now, event_id),
                )
                moved = cur.execute("DELETE FROM events WHERE id > ?", (event_id,)).rowcount
                cur.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (event_id,))
                for alarm in alarms:
                    row = cur.execute(
                        "SELECT id, occurrence_id, state FROM events WHERE alarm = ?"
                        " AND json_extract(CAST(body AS TEXT), '$.late') IS NOT 1"
                        " ORDER BY id DESC LIMIT 1",
                        (alarm,),
                    ).fetchone()
                    if row is None:
                        cur.execute("DELETE FROM alarm_last WHERE alarm = ?", (alarm,))
                    else:
                        cur.execute(
                            "INSERT OR REPLACE INTO alarm_last(alarm, event_id, occurrence_id,"
                            " live) VALUES (?, ?, ?, ?)",
                            (alarm, row[0], row[1], int(row[2] != "normal")),
                        )
                if first_at is not None:
                    # Commands applied with the moved events: a retry applies them again.
                    cur.execute("DELETE FROM applied_commands WHERE at >= ?", (first_at,))
                cur.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        return int(moved)

    def remember_commands(self, rows: list[tuple[str, dict[str, Any], float]]) -> int:
        """Remember (request id, result, at) of commands the active node applied."""
        with self._lock:
            return ledger.record_many(self._db, rows)

    def command_result(self, request_id: str) -> dict[str, Any] | None:
        """The stored result of the command with this request id, None if never applied."""
        with self._lock:
            return ledger.result(self._db, request_id)

    def prune(self, now: float) -> int:
        """Delete events older than retention_days or beyond the newest retention_events.

        The newest event of every alarm that is not normal is kept whatever its age: it is
        that alarm's state after a restart. Returns the number of events deleted.
        """
        cutoff_at = now - self.retention_days * 86400.0
        with self._lock:
            newest = self._newest_id()
            cutoff_id = newest - self.retention_events
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                # Prune a prefix of ids (never by `at` alone): if an alarm's newest event is
                # gone, so are all its older ones, even if the clock once stepped back.
                by_age = cur.execute(
                    "SELECT max(id) FROM events WHERE at < ?", (cutoff_at,)
                ).fetchone()[0]
                cutoff_id = max(cutoff_id, by_age or 0)
                keep = "SELECT event_id FROM alarm_last WHERE live = 1"
                top = cur.execute(
                    f"SELECT max(id) FROM events WHERE id <= ? AND id NOT IN ({keep})",
                    (cutoff_id,),
                ).fetchone()[0]
                cur.execute(
                    f"DELETE FROM events WHERE id <= ? AND id NOT IN ({keep})", (cutoff_id,)
                )
                deleted = cur.rowcount
                ledger.prune(self._db, now - LEDGER_KEEP_S)
                if top is not None:
                    cur.execute(
                        "INSERT INTO meta(key, value) VALUES ('pruned_through', ?)"
                        " ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                        (top,),
                    )
                cur.execute("COMMIT")
            except BaseException:
                # SQLite already rolled back on some errors (SQLITE_FULL): a second ROLLBACK
                # would raise and hide the real cause ("database or disk is full").
                if self._db.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        return int(deleted)

    # ------------------------------------------------------------------ reading

    def newest_id(self) -> int:
        with self._lock:
            return self._newest_id()

    def _newest_id(self) -> int:
        return _highest_id(self._db)

    def committed_id(self) -> int:
        """The newest id committed, read on a connection of its own: never waits for a write
        in progress, as `newest_id` does (a cluster node's append holds the lock while the bus
        takes its batch, and the bus's publisher may be what asks)."""
        with self.reader() as db:
            return _highest_id(db)

    def max_occurrence_id(self) -> int:
        """Highest occurrence id ever journaled: the durable counter, never lowered."""
        with self._lock:
            return self._meta(_OCC_HIGH) or 0

    def since(self, cursor: int, limit: int = 10_000) -> list[AlarmEvent] | None:
        """Events after `cursor`, oldest first, at most `limit`.

        None when the journal cannot prove it still holds every event after the cursor:
        some were pruned, or the cursor is from the future (another journal).
        """
        with self.reader() as db:
            pruned = db.execute("SELECT value FROM meta WHERE key = 'pruned_through'").fetchone()
            if cursor < 0 or cursor > _highest_id(db):
                return None
            if pruned is not None and cursor < pruned[0]:
                return None
            rows = db.execute(
                "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)
            ).fetchall()
        return [_event(r) for r in rows]

    def history(
        self,
        since: float | None = None,
        until: float | None = None,
        line: str | None = None,
        alarm: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AlarmEvent]:
        """Events matching the filters, newest first; page with before_id = last id seen."""
        with self.reader() as db:
            return query_history(db, since, until, line, alarm, limit, before_id)

    def reader(self) -> AbstractContextManager[sqlite3.Connection]:
        """A connection of its own for one read (call it in a worker thread), closed after.

        WAL gives it a consistent snapshot without taking the writer's lock.
        """
        return read_connection(self.path)

    def restore_events(self, recent: int = 10_000) -> list[AlarmEvent]:
        """What a restart needs, oldest first, without reading the whole journal.

        The newest event of every alarm (each is a full snapshot: the alarm's state), plus
        the `recent` newest events so a late second ack of a just-closed occurrence is still
        recognised as already acknowledged. Restoring from this equals restoring from
        all_events().
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM events WHERE id IN (SELECT event_id FROM alarm_last)"
                " OR id > ? ORDER BY id",
                (self._newest_id() - recent,),
            ).fetchall()
        return [ev for ev in map(_event, rows) if not ev.late]  # late events: history only

    def all_events(self) -> Iterator[AlarmEvent]:
        """Every stored event, oldest first: what AlarmEngine.restore() needs."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT 5000", (last,)
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _event(row)
            last = rows[-1][0]

    def pragma(self, name: str) -> Any:
        with self._lock:
            return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _epoch_text(value: int) -> str:
    return f"{value:016x}"


def _filters(
    since: float | None, until: float | None, line: str | None, alarm: str | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for clause, value in (
        ("at >= ?", since),
        ("at <= ?", until),
        ("line = ?", line),
        ("alarm = ?", alarm),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    return where, args


def _body(ev: AlarmEvent) -> bytes:
    record = ev.to_record()
    del record["event_id"]  # the row id is the truth
    return orjson.dumps(record)


def _event(row: tuple[int | None, bytes]) -> AlarmEvent:
    record = orjson.loads(row[1])
    record["event_id"] = row[0]
    return AlarmEvent.from_record(record)


@contextmanager
def read_connection(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection on one snapshot, closed after: what every read uses, in a
    thread of the server or in a heavy-read worker process (scada.core.offload)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA query_only = ON")
        db.execute("BEGIN")  # one snapshot for every statement of this read
        yield db
    finally:
        db.close()


def query_history(
    db: sqlite3.Connection,
    since: float | None,
    until: float | None,
    line: str | None,
    alarm: str | None,
    limit: int,
    before_id: int | None,
) -> list[AlarmEvent]:
    where, args = _filters(since, until, line, alarm)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    sql = "SELECT id, body FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    return [_event(r) for r in db.execute(sql, args).fetchall()]


def query_range(
    db: sqlite3.Connection, since: float, until: float, after_id: int, limit: int
) -> list[AlarmEvent]:
    rows = db.execute(
        "SELECT id, body FROM events WHERE id > ? AND at >= ? AND at <= ? ORDER BY id LIMIT ?",
        (after_id, since, until, limit),
    ).fetchall()
    return [_event(r) for r in rows]


def _highest_id(db: sqlite3.Connection) -> int:
    """The highest event id ever handed out: sqlite_sequence keeps it after that row is pruned."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0
