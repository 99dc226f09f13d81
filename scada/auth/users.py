"""Users: name, role, password hash (argon2id; old scrypt ones upgraded at the next login)
and a disabled flag. Changing a password or disabling a user ends the user's sessions."""

from __future__ import annotations

import functools
import sqlite3
import time
import unicodedata
from typing import Any

from scada.auth.authdb import AuthDb, AuthError, end_sessions
from scada.auth.identity import Identity
from scada.auth.passwords import hash_password, needs_rehash, verify_password
from scada.core.roles import RESERVED_NAMES, ROLES

MAX_NAME = 64  # user and token names


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a real password")


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


class Users:
    def __init__(self, db: AuthDb) -> None:
        self.db = db

    def count(self) -> int:
        return int(self.db.one("SELECT COUNT(*) FROM users")[0])

    def add(self, name: str, role: str, password: str) -> None:
        check_role(role)
        if (
            not name
            or len(name) > MAX_NAME
            or not name.isascii()
            or not name.replace("_", "").replace("-", "").replace(".", "").isalnum()
        ):
            raise AuthError("a user name is 1-64 letters, digits, '.', '-' or '_'")
        if name.lower() in RESERVED_NAMES:
            raise AuthError(f"{name!r} is reserved (it names clients without credentials)")
        if len(password) < 8:
            raise AuthError("a password needs at least 8 characters")
        try:
            self.db.write(
                "INSERT INTO users(name, role, password, created) VALUES (?, ?, ?, ?)",
                name,
                role,
                hash_password(password),
                time.time(),
            )
        except sqlite3.IntegrityError:
            raise AuthError(f"user {name!r} already exists") from None
        self.db.changed("user", [name])

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 8:
            raise AuthError("a password needs at least 8 characters")
        hashed = hash_password(password)
        with self.db.transaction() as db:
            cur = db.execute("UPDATE users SET password = ? WHERE name = ?", (hashed, name))
            if cur.rowcount == 0:
                raise AuthError(f"no user {name!r}")
            ended = end_sessions(db, "user = ?", name)  # log in again everywhere
        self.db.changed("user", [name])
        self.db.changed("session", ended)

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        with self.db.transaction() as db:
            cur = db.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            if cur.rowcount == 0:
                raise AuthError(f"no user {name!r}")
            ended = end_sessions(db, "user = ?", name) if disabled else []
        self.db.changed("user", [name])
        self.db.changed("session", ended)

    def list_all(self) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT name, role, disabled, created FROM users ORDER BY name")
        return [{"name": n, "role": r, "disabled": bool(d), "created": c} for n, r, d, c in rows]

    def verify_login(self, name: str, password: str) -> Identity | None:
        """Check a password (slow: run it in the password executor). A correct password with
        an old hash (scrypt, weaker argon2 parameters) is re-hashed and stored now."""
        row = self.db.one("SELECT role, password, disabled FROM users WHERE name = ?", name)
        if row is None:
            # Spend the same time as a real check, so timing does not reveal user names.
            verify_password(password, _dummy_hash())
            return None
        role, stored, disabled = row
        if not verify_password(password, stored) or disabled:
            return None
        if needs_rehash(stored):
            self.db.write(
                "UPDATE users SET password = ? WHERE name = ? AND password = ?",
                hash_password(password),
                name,
                stored,
            )
            self.db.changed("user", [name])
        return Identity(name, role, "session")

    def password_hash(self, name: str) -> str | None:
        row = self.db.one("SELECT password FROM users WHERE name = ?", name)
        return None if row is None else str(row[0])
