"""The auth SQLite file: its schema, its connections and locks, and who hears of a change.

Synchronous on purpose: the CLI uses it directly and the server calls it from worker threads
(password hashing in its own executor, writes and audit reads in threads). Three kinds of
connection so no reader waits behind a writer's fsync (WAL lets readers run beside it):
writes share one connection; identity look-ups (every request) share another; each audit
query opens its own (scada.auth.auditlog.audit_query). Secrets (session ids, tokens) are
stored only as SHA-256 digests (and their command keys, scada.auth.commandsig); passwords only
as argon2id hashes. The file is created 0600
in a 0700 directory.

The tables are read and written by one class per concern over this one file: users
(scada.auth.users), sessions, tokens, the audit log (scada.auth.auditlog) and the rows a
cluster replicates (scada.auth.rowset); scada.auth.store.AuthStore puts them together.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from scada.core.datadir import private_file
from scada.core.errors import Refused
from scada.core.schema import baseline, open_schema, statements

log = logging.getLogger(__name__)

ChangeKind = Literal["user", "token", "session", "audit"]
# Called after each committed change: ("user", name), ("token", digest), ("session", digest),
# ("audit", id) for a record written here.
ChangeHook = Callable[[ChangeKind, str], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    created_by TEXT NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
-- Audit records that came with a request id (from a gateway, over the bus): written once.
CREATE TABLE IF NOT EXISTS audit_requests (
    request_id TEXT PRIMARY KEY,
    audit_id INTEGER NOT NULL
);
-- Records copied from another ingest node's file (cluster): where each came from.
CREATE TABLE IF NOT EXISTS audit_origin (
    audit_id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS auth_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# The auth store's schema versions (scada.core.schema): append, never edit a released one.
MIGRATIONS = [
    baseline,
    # 2: each session and token keeps its command key (scada.auth.commandsig), the value a
    # gateway must prove it knows to act for it. Rows from before have none (NULL): they
    # cannot issue commands through a gateway (log in again, make a new token).
    statements(
        "ALTER TABLE sessions ADD COLUMN command_key TEXT",
        "ALTER TABLE tokens ADD COLUMN command_key TEXT",
    ),
]


class AuthError(Refused):
    """A user or token operation that cannot be done (unknown user, bad role, ...)."""

    def __init__(self, message: str, code: str = "invalid", status: int = 400) -> None:
        super().__init__(code, message, status)


class AuthDb:
    """The open file: one writer connection, one reader connection, the change hooks."""

    def __init__(self, path: str | Path) -> None:
        self.path = private_file(Path(path))
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        open_schema(self._db, f"auth store {self.path}", SCHEMA, MIGRATIONS)
        self._lock = threading.Lock()
        self._reader = self._connect()
        self._read_lock = threading.Lock()
        self._hooks: list[ChangeHook] = []
        self._db.execute(
            "INSERT OR IGNORE INTO auth_meta(key, value) VALUES ('store_id', ?)",
            (secrets.token_hex(8),),
        )
        # Names this file's own audit records in other files: "<store_id>:<audit id>".
        self.store_id = str(self.one("SELECT value FROM auth_meta WHERE key = 'store_id'")[0])

    def on_change(self, hook: ChangeHook) -> None:
        """Call `hook(kind, key)` after each committed change of a user, token or session
        (from the thread that made it; keep it short and thread-safe)."""
        self._hooks.append(hook)

    def changed(self, kind: ChangeKind, keys: list[str]) -> None:
        for key in keys:
            for hook in self._hooks:
                try:
                    hook(kind, key)
                except Exception:
                    log.exception("auth change hook failed")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

    def one(self, sql: str, *args: Any) -> Any:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchone()

    def all(self, sql: str, *args: Any) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def write(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Several writes committed together (or none)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """The reader connection inside one read transaction (a consistent view)."""
        with self._read_lock:
            self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                self._reader.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM auth_meta WHERE key = ?", key)
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.write("INSERT OR REPLACE INTO auth_meta(key, value) VALUES (?, ?)", key, value)


def end_sessions(db: sqlite3.Connection, where: str, *args: Any) -> list[str]:
    """Delete the sessions matching `where`; returns their digests (inside a transaction)."""
    digests = [r[0] for r in db.execute(f"SELECT digest FROM sessions WHERE {where}", args)]
    db.execute(f"DELETE FROM sessions WHERE {where}", args)
    return digests
