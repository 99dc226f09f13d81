"""The auth file as one object for its callers (the server, the CLI, the cluster's replica):
a thin facade over the classes that each own one concern of the same SQLite file.

    db        scada.auth.authdb.AuthDb   the file, its connections, change hooks, meta
    users     scada.auth.users.Users     users and passwords
    sessions  scada.auth.sessions.Sessions
    tokens    scada.auth.tokens.Tokens
    audit_log scada.auth.auditlog.AuditLog
    rowset    scada.auth.rowset.RowSet   the rows a cluster replicates

The methods below only forward (they keep the names callers have always used); nothing here
reads or writes SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scada.auth.auditlog import AuditLog, AuditRecord
from scada.auth.authdb import AuthDb, ChangeHook
from scada.auth.identity import Identity
from scada.auth.rowset import AuthRows, RowSet
from scada.auth.sessions import Sessions
from scada.auth.tokens import Tokens
from scada.auth.users import Users


class AuthStore:
    def __init__(self, path: str | Path) -> None:
        self.db = AuthDb(path)
        self.path = self.db.path
        self.store_id = self.db.store_id
        self.users = Users(self.db)
        self.sessions = Sessions(self.db)
        self.tokens = Tokens(self.db)
        self.audit_log = AuditLog(self.db)
        self.rowset = RowSet(self.db)

    def on_change(self, hook: ChangeHook) -> None:
        self.db.on_change(hook)

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> str | None:
        return self.db.meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.db.set_meta(key, value)

    # -- users ---------------------------------------------------------------------------

    def count_users(self) -> int:
        return self.users.count()

    def add_user(self, name: str, role: str, password: str) -> None:
        self.users.add(name, role, password)

    def set_password(self, name: str, password: str) -> None:
        self.users.set_password(name, password)

    def set_disabled(self, name: str, disabled: bool = True) -> None:
        self.users.set_disabled(name, disabled)

    def list_users(self) -> list[dict[str, Any]]:
        return self.users.list_all()

    def verify_login(self, name: str, password: str) -> Identity | None:
        return self.users.verify_login(name, password)

    def password_hash(self, name: str) -> str | None:
        return self.users.password_hash(name)

    # -- sessions and tokens -------------------------------------------------------------

    def create_session(self, name: str, hours: float) -> tuple[str, float]:
        return self.sessions.create(name, hours)

    def session_identity(self, secret: str) -> Identity | None:
        return self.sessions.identity(secret)

    def delete_session(self, secret: str) -> str:
        return self.sessions.delete(secret)

    def create_token(self, name: str, role: str, created_by: str) -> tuple[int, str]:
        return self.tokens.create(name, role, created_by)

    def revoke_token(self, token_id: int) -> str:
        return self.tokens.revoke(token_id)

    def list_tokens(self) -> list[dict[str, Any]]:
        return self.tokens.list_all()

    def token_identity(self, secret: str) -> Identity | None:
        return self.tokens.identity(secret)

    def still_valid(self, digests: list[str]) -> set[str]:
        """Which of these session/token digests still grant access (one query per kind);
        catches revocations and disabled users, also those made by the CLI."""
        return self.sessions.live(digests) | self.tokens.live(digests)

    # -- audit ---------------------------------------------------------------------------

    def audit(self, record: AuditRecord, request_id: str | None = None) -> bool:
        return self.audit_log.append(record, request_id)

    def own_audit_after(self, after: int, limit: int = 500) -> list[AuditRecord]:
        return self.audit_log.own_after(after, limit)

    def copy_audit(self, records: list[tuple[str, AuditRecord]]) -> int:
        return self.audit_log.copy(records)

    # -- replication (cluster: scada.auth.replica.publisher) -------------------------------

    def rows(self) -> AuthRows:
        return self.rowset.rows()

    def merge_rows(self, rows: AuthRows) -> dict[str, int]:
        return self.rowset.merge(rows)
