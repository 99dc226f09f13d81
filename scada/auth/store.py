"""Users, sessions, API tokens and the append-only audit log in one SQLite file.

Synchronous on purpose: the CLI uses it directly and the server calls it from worker threads
(password hashing in its own executor, writes and audit reads in threads). Three kinds of
connection so no reader waits behind a writer's fsync (WAL lets readers run beside it):
writes share one connection; identity look-ups (every request) share another; each audit
query opens its own. Secrets (session ids, tokens) are stored only as SHA-256 digests;
passwords only as argon2id hashes (old scrypt ones are upgraded at the next login). The file
is created 0600 in a 0700 directory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from scada.auth.passwords import (
    hash_password,
    needs_rehash,
    new_secret,
    token_digest,
    verify_password,
)
from scada.core.datadir import private_file
from scada.core.errors import Refused
from scada.core.roles import ROLES
from scada.core.schema import baseline, open_schema
from scada.core.timefmt import iso_ms

log = logging.getLogger(__name__)

MAX_NAME = 64  # user and token names

ChangeKind = Literal["user", "token", "session", "audit"]
# Called after each committed change: ("user", name), ("token", digest), ("session", digest),
# ("audit", id) for a record written here.
ChangeHook = Callable[[ChangeKind, str], None]
# Every user, token and session row, for replication: kind → key (name or digest) → row.
AuthRows = dict[str, dict[str, dict[str, Any]]]
ROW_KINDS = ("users", "tokens", "sessions")

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
MIGRATIONS = [baseline]


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a real password")


class AuthError(Refused):
    """A user or token operation that cannot be done (unknown user, bad role, ...)."""

    def __init__(self, message: str, code: str = "invalid", status: int = 400) -> None:
        super().__init__(code, message, status)


class IdentityUnavailable(Exception):
    """An identity source cannot tell now (a cluster gateway whose replica of the auth rows
    is stale does not know this secret): refused as "try again", a session cookie is kept."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    kind: str  # "session", "token" or "anonymous"
    expires: float | None = None  # epoch seconds; sessions only
    session: str | None = None  # digest of the session id, to find its sockets at logout
    # The name written on alarm actions (acked_by, shelved_by); anonymous clients act under
    # `alarms.default_user` where their role lets them act, but are never that user.
    acts_as: str | None = None

    @property
    def actor(self) -> str:
        return self.acts_as or self.name

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


@dataclass(frozen=True)
class AuditRecord:
    """One audit record: written without `id` and `at` (the store sets them), read with."""

    user: str
    role: str
    address: str
    action: str
    target: str
    result: str
    detail: str = ""
    at: float | None = None
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": iso_ms(self.at) if self.at is not None else None}


AUDIT_COLUMNS = "id, at, user, role, address, action, target, result, detail"


def _audit_row(row: tuple[Any, ...]) -> AuditRecord:
    id_, at, user, role, address, action, target, result, detail = row
    return AuditRecord(user, role, address, action, target, result, detail, at=at, id=id_)


def check_name(name: str, what: str) -> str:
    """Names end up in terminals, logs and the audit table: printable, bounded."""
    if not name or len(name) > MAX_NAME:
        raise AuthError(f"a {what} name is 1-{MAX_NAME} characters")
    if any(unicodedata.category(ch)[0] in "CZ" and ch != " " for ch in name):
        raise AuthError(f"a {what} name may not contain control or separator characters")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return role


class AuthStore:
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
        self.store_id = str(self._one("SELECT value FROM auth_meta WHERE key = 'store_id'")[0])

    def on_change(self, hook: ChangeHook) -> None:
        """Call `hook(kind, key)` after each committed change of a user, token or session
        (from the thread that made it; keep it short and thread-safe)."""
        self._hooks.append(hook)

    def _changed(self, kind: ChangeKind, keys: list[str]) -> None:
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

    def _one(self, sql: str, *args: Any) -> Any:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def _write(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Several writes committed together (or none)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _end_sessions(self, db: sqlite3.Connection, where: str, *args: Any) -> list[str]:
        """Delete the sessions matching `where`; returns their digests (inside a transaction)."""
        digests = [r[0] for r in db.execute(f"SELECT digest FROM sessions WHERE {where}", args)]
        db.execute(f"DELETE FROM sessions WHERE {where}", args)
        return digests

    # -- users ---------------------------------------------------------------------------

    def count_users(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM users")[0])

    def add_user(self, name: str, role: str, password: str) -> None:
        check_role(role)
        if (
            not name
            or len(name) > MAX_NAME
            or not name.isascii()
            or not name.replace("_", "").replace("-", "").replace(".", "").isalnum()
        ):
            raise AuthError("a user name is 1-64 letters, digits, '.', '-' or '_'")
        if len(password) < 8:
            raise AuthError("a password needs at least 8 characters")
        try:
            self._write(
                "INSERT INTO users(name, role, password, created) VALUES (?, ?, ?, ?)",
                name,
                role,
                hash_password(password),
                time.time(),
            )
        except sqlite3.IntegrityError:
            raise AuthError(f"user {name!r} already exists") from None
        self._changed("user", [name])

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise AuthError("a password needs at least 8 characters")
        hashed = hash_password(password)
        with self._transaction() as db:
            cur = db.execute("UPDATE users SET password = ? WHERE name = ?", (hashed, name))
            if cur.rowcount == 0:
                raise AuthError(f"no user {name!r}")
            ended = self._end_sessions(db, "user = ?", name)  # log in again everywhere
        self._changed("user", [name])
        self._changed("session", ended)

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        with self._transaction() as db:
            cur = db.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            if cur.rowcount == 0:
                raise AuthError(f"no user {name!r}")
            ended = self._end_sessions(db, "user = ?", name) if disabled else []
        self._changed("user", [name])
        self._changed("session", ended)

    def list_users(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT name, role, disabled, created FROM users ORDER BY name")
        return [{"name": n, "role": r, "disabled": bool(d), "created": c} for n, r, d, c in rows]

    def verify_login(self, name: str, password: str) -> Identity | None:
        """Check a password (slow: run it in the password executor). A correct password with
        an old hash (scrypt, weaker argon2 parameters) is re-hashed and stored now."""
        row = self._one("SELECT role, password, disabled FROM users WHERE name = ?", name)
        if row is None:
            # Spend the same time as a real check, so timing does not reveal user names.
            verify_password(password, _dummy_hash())
            return None
        role, stored, disabled = row
        if not verify_password(password, stored) or disabled:
            return None
        if needs_rehash(stored):
            self._write(
                "UPDATE users SET password = ? WHERE name = ? AND password = ?",
                hash_password(password),
                name,
                stored,
            )
            self._changed("user", [name])
        return Identity(name, role, "session")

    def password_hash(self, name: str) -> str | None:
        row = self._one("SELECT password FROM users WHERE name = ?", name)
        return None if row is None else str(row[0])

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, name: str, hours: float) -> tuple[str, float]:
        secret = new_secret()
        now = time.time()
        expires = now + hours * 3600
        digest = token_digest(secret)
        with self._transaction() as db:
            expired = self._end_sessions(db, "expires < ?", now)
            db.execute(
                "INSERT INTO sessions(digest, user, created, expires) VALUES (?, ?, ?, ?)",
                (digest, name, now, expires),
            )
        self._changed("session", [*expired, digest])
        return secret, expires

    def session_identity(self, secret: str) -> Identity | None:
        digest = token_digest(secret)
        row = self._one(
            "SELECT u.name, u.role, s.expires FROM sessions s JOIN users u ON u.name = s.user "
            "WHERE s.digest = ? AND u.disabled = 0 AND s.expires > ?",
            digest,
            time.time(),
        )
        if row is None:
            return None
        return Identity(row[0], row[1], "session", expires=row[2], session=digest)

    def delete_session(self, secret: str) -> str:
        digest = token_digest(secret)
        if self._write("DELETE FROM sessions WHERE digest = ?", digest).rowcount:
            self._changed("session", [digest])
        return digest

    # -- tokens --------------------------------------------------------------------------

    def create_token(self, name: str, role: str, created_by: str) -> tuple[int, str]:
        check_role(role)
        check_name(name, "token")
        secret = "scada_" + new_secret()
        digest = token_digest(secret)
        cur = self._write(
            "INSERT INTO tokens(name, role, digest, created, created_by) VALUES (?, ?, ?, ?, ?)",
            name,
            role,
            digest,
            time.time(),
            created_by,
        )
        self._changed("token", [digest])
        return int(cur.lastrowid or 0), secret

    def revoke_token(self, token_id: int) -> str:
        """Revoke a token; returns its digest (the key its open connections carry)."""
        row = self._one("SELECT digest FROM tokens WHERE id = ? AND revoked IS NULL", token_id)
        if row is None:
            raise AuthError(f"no active token with id {token_id}")
        self._write("UPDATE tokens SET revoked = ? WHERE id = ?", time.time(), token_id)
        self._changed("token", [str(row[0])])
        return str(row[0])

    def list_tokens(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT id, name, role, created, created_by, revoked FROM tokens ORDER BY id"
        )
        keys = ("id", "name", "role", "created", "created_by", "revoked")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def token_identity(self, secret: str) -> Identity | None:
        digest = token_digest(secret)
        row = self._one(
            "SELECT name, role FROM tokens WHERE digest = ? AND revoked IS NULL", digest
        )
        return None if row is None else Identity(row[0], row[1], "token", session=digest)

    def still_valid(self, digests: list[str]) -> set[str]:
        """Which of these session/token digests still grant access (one query per kind);
        catches revocations and disabled users, also those made by the CLI."""
        if not digests:
            return set()
        marks = ",".join("?" * len(digests))
        # No expiry test here: open sockets expire on their own monotonic deadline, so a
        # step of the wall clock neither ends nor extends them.
        sessions = self._all(
            f"SELECT s.digest FROM sessions s JOIN users u ON u.name = s.user "
            f"WHERE s.digest IN ({marks}) AND u.disabled = 0",
            *digests,
        )
        tokens = self._all(
            f"SELECT digest FROM tokens WHERE digest IN ({marks}) AND revoked IS NULL", *digests
        )
        return {row[0] for row in sessions} | {row[0] for row in tokens}

    def audit(self, record: AuditRecord, request_id: str | None = None) -> bool:
        """Append one record; raises if it cannot be written (the caller refuses the action).
        With a `request_id` (a record sent over the bus) it is written once: a second delivery
        of the same request writes nothing and returns False."""
        with self._transaction() as db:
            if (
                request_id is not None
                and db.execute(
                    "SELECT 1 FROM audit_requests WHERE request_id = ?", (request_id,)
                ).fetchone()
            ):
                return False
            cur = db.execute(
                "INSERT INTO audit(at, user, role, address, action, target, result, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time() if record.at is None else record.at,
                    record.user,
                    record.role,
                    record.address,
                    record.action,
                    record.target,
                    record.result,
                    record.detail,
                ),
            )
            if request_id is not None:
                db.execute(
                    "INSERT INTO audit_requests(request_id, audit_id) VALUES (?, ?)",
                    (request_id, cur.lastrowid),
                )
        self._changed("audit", [str(cur.lastrowid)])
        return True

    def own_audit_after(self, after: int, limit: int = 500) -> list[AuditRecord]:
        """This file's own audit records (not copies) with id > `after`, oldest first."""
        rows = self._all(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id > ? "
            "AND id NOT IN (SELECT audit_id FROM audit_origin) ORDER BY id LIMIT ?",
            after,
            limit,
        )
        return [_audit_row(row) for row in rows]

    def copy_audit(self, records: list[tuple[str, AuditRecord]]) -> int:
        """Append records written by another node's file, each once (by its origin
        "<store_id>:<id>"); this file's own come back too and are skipped. Returns how many
        were new."""
        added = 0
        with self._transaction() as db:
            for origin, r in records:
                if (
                    origin.startswith(f"{self.store_id}:")
                    or db.execute(
                        "SELECT 1 FROM audit_origin WHERE origin = ?", (origin,)
                    ).fetchone()
                ):
                    continue
                cur = db.execute(
                    "INSERT INTO audit(at, user, role, address, action, target, result, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.at, r.user, r.role, r.address, r.action, r.target, r.result, r.detail),
                )
                db.execute(
                    "INSERT INTO audit_origin(audit_id, origin) VALUES (?, ?)",
                    (cur.lastrowid, origin),
                )
                added += 1
        return added

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM auth_meta WHERE key = ?", key)
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO auth_meta(key, value) VALUES (?, ?)", key, value)

    # -- replication (cluster: scada.auth.replica.publisher) -------------------------------------

    def rows(self) -> AuthRows:
        """Every user, token and session row, read in one transaction."""
        with self._read_lock:
            db = self._reader
            db.execute("BEGIN")
            try:
                users = db.execute("SELECT name, role, password, disabled, created FROM users")
                rows: AuthRows = {
                    "users": {
                        n: {"role": r, "password": p, "disabled": bool(d), "created": c}
                        for n, r, p, d, c in users
                    }
                }
                tokens = db.execute(
                    "SELECT digest, id, name, role, created, created_by, revoked FROM tokens"
                )
                rows["tokens"] = {
                    dg: {"id": i, "name": n, "role": r, "created": c, "created_by": b, "revoked": v}
                    for dg, i, n, r, c, b, v in tokens
                }
                sessions = db.execute("SELECT digest, user, created, expires FROM sessions")
                rows["sessions"] = {
                    dg: {"user": u, "created": c, "expires": e} for dg, u, c, e in sessions
                }
            finally:
                db.execute("COMMIT")
        return rows

    def merge_rows(self, rows: AuthRows) -> dict[str, int]:
        """Take over the rows another node published (a takeover: they are the cluster's
        newest state). Their rows win; local users and tokens they lack are kept (made here
        by the CLI meanwhile); local sessions they lack are deleted (a session is only made
        by a login on the active node, so one it no longer has was ended there). Returns
        how many rows of each kind changed."""
        counts = {kind: 0 for kind in ROW_KINDS}
        with self._transaction() as db:
            for name, u in rows.get("users", {}).items():
                cur = db.execute(
                    "INSERT INTO users(name, role, password, disabled, created) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET role = excluded.role, "
                    "password = excluded.password, disabled = excluded.disabled "
                    "WHERE (role, password, disabled) IS NOT "
                    "(excluded.role, excluded.password, excluded.disabled)",
                    (name, u["role"], u["password"], int(u["disabled"]), u["created"]),
                )
                counts["users"] += cur.rowcount
            for digest, t in rows.get("tokens", {}).items():
                counts["tokens"] += self._merge_token(db, digest, t)
            theirs = rows.get("sessions", {})
            mine = {r[0] for r in db.execute("SELECT digest FROM sessions")}
            for digest in mine - theirs.keys():
                db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
                counts["sessions"] += 1
            for digest, s in theirs.items():
                if digest not in mine:
                    db.execute(
                        "INSERT INTO sessions(digest, user, created, expires) VALUES (?, ?, ?, ?)",
                        (digest, s["user"], s["created"], s["expires"]),
                    )
                    counts["sessions"] += 1
        return counts

    @staticmethod
    def _merge_token(db: sqlite3.Connection, digest: str, t: dict[str, Any]) -> int:
        row = db.execute("SELECT revoked, role FROM tokens WHERE digest = ?", (digest,)).fetchone()
        if row is not None:
            if row == (t["revoked"], t["role"]):
                return 0
            db.execute(
                "UPDATE tokens SET revoked = ?, role = ? WHERE digest = ?",
                (t["revoked"], t["role"], digest),
            )
            return 1
        taken = db.execute("SELECT 1 FROM tokens WHERE id = ?", (t["id"],)).fetchone()
        db.execute(
            "INSERT INTO tokens(id, name, role, digest, created, created_by, revoked) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            # Its id where free (what the admin knows it by), else a new one.
            (None if taken else t["id"], t["name"], t["role"], digest, t["created"],
             t["created_by"], t["revoked"]),
        )  # fmt: skip
        return 1


def audit_query(
    path: str | Path,
    *,
    since: float | None = None,
    until: float | None = None,
    user: str | None = None,
    action: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[AuditRecord]:
    """Audit records, newest first, on a connection of its own (a heavy-read worker process
    or thread may call it: it needs only the path)."""
    where, args = [], []
    for clause, value in (
        ("at >= ?", since),
        ("at < ?", until),
        ("user = ?", user),
        ("action = ?", action),
        ("id < ?", before),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = f"SELECT {AUDIT_COLUMNS} FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    # Its own connection: a long scan never holds up identity look-ups or audit writes.
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [_audit_row(row) for row in db.execute(sql, (*args, limit))]
    finally:
        db.close()


def audit_page(path: str | Path, params: dict[str, Any]) -> bytes:
    """Query and encode in a heavy-read worker process (scada.core.offload): nothing of an audit
    page runs in the server's Python, only the finished JSON comes back."""
    records = audit_query(path, **params)
    full = len(records) == params["limit"]
    return orjson.dumps(
        {
            "records": [r.as_dict() for r in records],
            "next_before": records[-1].id if full else None,
        }
    )
