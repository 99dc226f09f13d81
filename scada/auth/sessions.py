"""Login sessions: the browser holds the secret, the file only its SHA-256 digest and its
command key (scada.auth.commandsig: what a cluster gateway signs the session's commands with)."""

from __future__ import annotations

import time

from scada.auth.authdb import AuthDb, end_sessions
from scada.auth.commandsig import command_key
from scada.auth.identity import Identity
from scada.auth.passwords import new_secret, token_digest


class Sessions:
    def __init__(self, db: AuthDb) -> None:
        self.db = db

    def create(self, name: str, hours: float) -> tuple[str, float]:
        """A new session for `name` (expired ones are dropped now): (secret, expires)."""
        secret = new_secret()
        now = time.time()
        expires = now + hours * 3600
        digest = token_digest(secret)
        with self.db.transaction() as db:
            expired = end_sessions(db, "expires < ?", now)
            db.execute(
                "INSERT INTO sessions(digest, user, created, expires, command_key) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, name, now, expires, command_key(secret)),
            )
        self.db.changed("session", [*expired, digest])
        return secret, expires

    def identity(self, secret: str) -> Identity | None:
        digest = token_digest(secret)
        row = self.db.one(
            "SELECT u.name, u.role, s.expires FROM sessions s JOIN users u ON u.name = s.user "
            "WHERE s.digest = ? AND u.disabled = 0 AND s.expires > ?",
            digest,
            time.time(),
        )
        if row is None:
            return None
        return Identity(row[0], row[1], "session", expires=row[2], session=digest)

    def delete(self, secret: str) -> str:
        digest = token_digest(secret)
        if self.db.write("DELETE FROM sessions WHERE digest = ?", digest).rowcount:
            self.db.changed("session", [digest])
        return digest

    def live(self, digests: list[str]) -> set[str]:
        """Which of these digests are sessions of an enabled user. No expiry test: open
        sockets expire on their own monotonic deadline, so a step of the wall clock neither
        ends nor extends them."""
        if not digests:
            return set()
        marks = ",".join("?" * len(digests))
        rows = self.db.all(
            f"SELECT s.digest FROM sessions s JOIN users u ON u.name = s.user "
            f"WHERE s.digest IN ({marks}) AND u.disabled = 0",
            *digests,
        )
        return {row[0] for row in rows}
