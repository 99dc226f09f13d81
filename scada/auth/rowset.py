"""Every user, token and session row as one value, and taking over another node's: the
store's side of the cluster's auth replication (scada.auth.replica.publisher).

A token's and a session's `command_key` (scada.auth.commandsig) is in its row like a user's
`password`: the publisher seals both, never publishes either readable."""

from __future__ import annotations

import sqlite3
from typing import Any

from scada.auth.authdb import AuthDb

# Every user, token and session row, for replication: kind → key (name or digest) → row.
AuthRows = dict[str, dict[str, dict[str, Any]]]
ROW_KINDS = ("users", "tokens", "sessions")


class RowSet:
    def __init__(self, db: AuthDb) -> None:
        self.db = db

    def rows(self) -> AuthRows:
        """Every user, token and session row, read in one transaction."""
        with self.db.snapshot() as db:
            users = db.execute("SELECT name, role, password, disabled, created FROM users")
            rows: AuthRows = {
                "users": {
                    n: {"role": r, "password": p, "disabled": bool(d), "created": c}
                    for n, r, p, d, c in users
                }
            }
            tokens = db.execute(
                "SELECT digest, id, name, role, created, created_by, revoked, command_key "
                "FROM tokens"
            )
            rows["tokens"] = {
                dg: {"id": i, "name": n, "role": r, "created": c, "created_by": b, "revoked": v,
                     "command_key": k}
                for dg, i, n, r, c, b, v, k in tokens
            }  # fmt: skip
            sessions = db.execute(
                "SELECT digest, user, created, expires, command_key FROM sessions"
            )
            rows["sessions"] = {
                dg: {"user": u, "created": c, "expires": e, "command_key": k}
                for dg, u, c, e, k in sessions
            }
        return rows

    def merge(self, rows: AuthRows) -> dict[str, int]:
        """Take over the rows another node published (a takeover: they are the cluster's
        newest state). Their rows win; local users and tokens they lack are kept (made here
        by the CLI meanwhile); local sessions they lack are deleted (a session is only made
        by a login on the active node, so one it no longer has was ended there). Returns
        how many rows of each kind changed."""
        counts = {kind: 0 for kind in ROW_KINDS}
        with self.db.transaction() as db:
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
                counts["tokens"] += _merge_token(db, digest, t)
            theirs = rows.get("sessions", {})
            mine = {r[0] for r in db.execute("SELECT digest FROM sessions")}
            for digest in mine - theirs.keys():
                db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
                counts["sessions"] += 1
            for digest, s in theirs.items():
                key = s.get("command_key")
                if digest not in mine:
                    db.execute(
                        "INSERT INTO sessions(digest, user, created, expires, command_key) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (digest, s["user"], s["created"], s["expires"], key),
                    )
                    counts["sessions"] += 1
                elif key is not None:  # one this node had without its key (never replaced)
                    cur = db.execute(
                        "UPDATE sessions SET command_key = ? "
                        "WHERE digest = ? AND command_key IS NULL",
                        (key, digest),
                    )
                    counts["sessions"] += cur.rowcount
        return counts


def _merge_token(db: sqlite3.Connection, digest: str, t: dict[str, Any]) -> int:
    key = t.get("command_key")  # None: not published (no sealer); this node's own stays
    row = db.execute(
        "SELECT revoked, role, command_key FROM tokens WHERE digest = ?", (digest,)
    ).fetchone()
    if row is not None:
        if row[:2] == (t["revoked"], t["role"]) and (key is None or row[2] is not None):
            return 0
        db.execute(
            "UPDATE tokens SET revoked = ?, role = ?, command_key = COALESCE(command_key, ?) "
            "WHERE digest = ?",
            (t["revoked"], t["role"], key, digest),
        )
        return 1
    taken = db.execute("SELECT 1 FROM tokens WHERE id = ?", (t["id"],)).fetchone()
    db.execute(
        "INSERT INTO tokens(id, name, role, digest, created, created_by, revoked, command_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        # Its id where free (what the admin knows it by), else a new one.
        (None if taken else t["id"], t["name"], t["role"], digest, t["created"],
         t["created_by"], t["revoked"], key),
    )  # fmt: skip
    return 1
