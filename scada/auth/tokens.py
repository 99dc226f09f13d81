"""API tokens: "scada_" + a random secret, stored as its SHA-256 digest and its command key
(scada.auth.commandsig); revoked, never deleted (the audit log names them by id)."""

from __future__ import annotations

import time
from typing import Any

from scada.auth.authdb import AuthDb, AuthError
from scada.auth.commandsig import command_key
from scada.auth.identity import Identity
from scada.auth.passwords import new_secret, token_digest
from scada.auth.users import check_name, check_role


class Tokens:
    def __init__(self, db: AuthDb) -> None:
        self.db = db

    def create(self, name: str, role: str, created_by: str) -> tuple[int, str]:
        check_role(role)
        check_name(name, "token")
        secret = "scada_" + new_secret()
        digest = token_digest(secret)
        cur = self.db.write(
            "INSERT INTO tokens(name, role, digest, created, created_by, command_key) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            name,
            role,
            digest,
            time.time(),
            created_by,
            command_key(secret),
        )
        self.db.changed("token", [digest])
        return int(cur.lastrowid or 0), secret

    def revoke(self, token_id: int) -> str:
        """Revoke a token; returns its digest (the key its open connections carry)."""
        row = self.db.one("SELECT digest FROM tokens WHERE id = ? AND revoked IS NULL", token_id)
        if row is None:
            raise AuthError(f"no active token with id {token_id}")
        self.db.write("UPDATE tokens SET revoked = ? WHERE id = ?", time.time(), token_id)
        self.db.changed("token", [str(row[0])])
        return str(row[0])

    def list_all(self) -> list[dict[str, Any]]:
        rows = self.db.all(
            "SELECT id, name, role, created, created_by, revoked FROM tokens ORDER BY id"
        )
        keys = ("id", "name", "role", "created", "created_by", "revoked")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def identity(self, secret: str) -> Identity | None:
        digest = token_digest(secret)
        row = self.db.one(
            "SELECT name, role FROM tokens WHERE digest = ? AND revoked IS NULL", digest
        )
        return None if row is None else Identity(row[0], row[1], "token", session=digest)

    def live(self, digests: list[str]) -> set[str]:
        """Which of these digests are tokens not revoked."""
        if not digests:
            return set()
        marks = ",".join("?" * len(digests))
        rows = self.db.all(
            f"SELECT digest FROM tokens WHERE digest IN ({marks}) AND revoked IS NULL", *digests
        )
        return {row[0] for row in rows}
