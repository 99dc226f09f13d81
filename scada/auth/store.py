"""Users, sessions, API tokens and the append-only audit log in one SQLite file.

Synchronous on purpose: the CLI uses it directly and the server calls it through
`asyncio.to_thread` where a call may block (password hashing, writes). Secrets (session ids,
tokens) are stored only as SHA-256 digests; passwords only as scrypt hashes.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scada.auth.passwords import hash_password, new_secret, token_digest, verify_password
from scada.core.errors import ScadaError

ROLES = ("viewer", "operator", "engineer", "admin")

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
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a real password")


class AuthError(ScadaError):
    """A user or token operation that cannot be done (unknown user, bad role, ...)."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    kind: str  # "session", "token" or "anonymous"
    expires: float | None = None  # epoch seconds; sessions only
    session: str | None = None  # digest of the session id, to find its sockets at logout


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    user: str
    role: str
    address: str
    action: str
    target: str
    result: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        from scada.core.timefmt import iso_ms

        return {**self.__dict__, "at": iso_ms(self.at)}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return role


class AuthStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, *args: Any) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # -- users ---------------------------------------------------------------------------

    def count_users(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM users")[0])

    def add_user(self, name: str, role: str, password: str) -> None:
        check_role(role)
        if (
            not name
            or len(name) > 64
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

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise AuthError("a password needs at least 8 characters")
        cur = self._write(
            "UPDATE users SET password = ? WHERE name = ?", hash_password(password), name
        )
        if cur.rowcount == 0:
            raise AuthError(f"no user {name!r}")
        self._write("DELETE FROM sessions WHERE user = ?", name)  # log in again everywhere

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        cur = self._write("UPDATE users SET disabled = ? WHERE name = ?", int(disabled), name)
        if cur.rowcount == 0:
            raise AuthError(f"no user {name!r}")
        if disabled:
            self._write("DELETE FROM sessions WHERE user = ?", name)

    def list_users(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT name, role, disabled, created FROM users ORDER BY name")
        return [{"name": n, "role": r, "disabled": bool(d), "created": c} for n, r, d, c in rows]

    def verify_login(self, name: str, password: str) -> Identity | None:
        row = self._one("SELECT role, password, disabled FROM users WHERE name = ?", name)
        if row is None:
            # Spend the same time as a real check, so timing does not reveal user names.
            verify_password(password, _dummy_hash())
            return None
        role, stored, disabled = row
        if not verify_password(password, stored) or disabled:
            return None
        return Identity(name, role, "session")

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, name: str, hours: float) -> tuple[str, float]:
        secret = new_secret()
        expires = time.time() + hours * 3600
        self._write("DELETE FROM sessions WHERE expires < ?", time.time())
        self._write(
            "INSERT INTO sessions(digest, user, created, expires) VALUES (?, ?, ?, ?)",
            token_digest(secret),
            name,
            time.time(),
            expires,
        )
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
        self._write("DELETE FROM sessions WHERE digest = ?", digest)
        return digest

    # -- tokens --------------------------------------------------------------------------

    def create_token(self, name: str, role: str, created_by: str) -> tuple[int, str]:
        check_role(role)
        secret = "scada_" + new_secret()
        cur = self._write(
            "INSERT INTO tokens(name, role, digest, created, created_by) VALUES (?, ?, ?, ?, ?)",
            name,
            role,
            token_digest(secret),
            time.time(),
            created_by,
        )
        return int(cur.lastrowid or 0), secret

    def revoke_token(self, token_id: int) -> str:
        """Revoke a token; returns its digest (the key its open connections carry)."""
        row = self._one("SELECT digest FROM tokens WHERE id = ? AND revoked IS NULL", token_id)
        if row is None:
            raise AuthError(f"no active token with id {token_id}")
        self._write("UPDATE tokens SET revoked = ? WHERE id = ?", time.time(), token_id)
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
        sessions = self._all(
            f"SELECT s.digest FROM sessions s JOIN users u ON u.name = s.user "
            f"WHERE s.digest IN ({marks}) AND u.disabled = 0 AND s.expires > ?",
            *digests,
            time.time(),
        )
        tokens = self._all(
            f"SELECT digest FROM tokens WHERE digest IN ({marks}) AND revoked IS NULL", *digests
        )
        return {row[0] for row in sessions} | {row[0] for row in tokens}

    def audit(
        self,
        *,
        user: str,
        role: str,
        address: str,
        action: str,
        target: str,
        result: str,
        detail: str = "",
        at: float | None = None,
    ) -> None:
        self._write(
            "INSERT INTO audit(at, user, role, address, action, target, result, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            time.time() if at is None else at,
            user,
            role,
            address,
            action,
            target,
            result,
            detail,
        )

    def audit_query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        user: str | None = None,
        action: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[AuditRecord]:
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
        sql = "SELECT id, at, user, role, address, action, target, result, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [AuditRecord(*row) for row in self._all(sql, *args, limit)]
