"""Which commands were applied, by request id, in the same SQLite transaction as their effect.

A command can reach the active ingest node twice: a gateway retries after a timeout, or the
node died after its journal commit but before it acknowledged the stream entry, so the entry
is delivered again (to the node that takes over). The request id and the command's result are
written in the transaction that journals the command's effect; before applying a command the
node looks its id up and, if found, answers the stored result instead of applying it again.
The table lives in the journal's database (the journal is the source of truth; a standby's
journal learns the ids with the events it mirrors).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS applied_commands (
    request_id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    result BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS applied_commands_at ON applied_commands(at);
"""


def create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def record(cur: sqlite3.Cursor, request_id: str, result: dict[str, Any], at: float) -> None:
    """Remember a command as applied; call inside the transaction that applies it.

    A second record of the same id raises sqlite3.IntegrityError, which rolls the whole
    transaction (the second application) back.
    """
    cur.execute(
        "INSERT INTO applied_commands(request_id, at, result) VALUES (?, ?, ?)",
        (request_id, at, orjson.dumps(result)),
    )


def record_many(db: sqlite3.Connection, rows: list[tuple[str, dict[str, Any], float]]) -> int:
    """Remember commands another node applied (mirrored); ids already known are kept."""
    cur = db.executemany(
        "INSERT OR IGNORE INTO applied_commands(request_id, at, result) VALUES (?, ?, ?)",
        [(request_id, at, orjson.dumps(result)) for request_id, result, at in rows],
    )
    return int(cur.rowcount)


def result(db: sqlite3.Connection, request_id: str) -> dict[str, Any] | None:
    """The stored result of an applied command, None if it was never applied."""
    row = db.execute(
        "SELECT result FROM applied_commands WHERE request_id = ?", (request_id,)
    ).fetchone()
    return None if row is None else dict(orjson.loads(row[0]))


def prune(db: sqlite3.Connection, before: float) -> int:
    """Forget request ids older than `before` (a retry comes within seconds, not days)."""
    return db.execute("DELETE FROM applied_commands WHERE at < ?", (before,)).rowcount
