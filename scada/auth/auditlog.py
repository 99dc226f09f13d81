"""The append-only audit log (triggers refuse UPDATE and DELETE): records written here,
records copied from another ingest node's file (each once, by origin), and the paged query."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from scada.auth.authdb import AuthDb
from scada.core.timefmt import iso_ms


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
_INSERT = (
    "INSERT INTO audit(at, user, role, address, action, target, result, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _audit_row(row: tuple[Any, ...]) -> AuditRecord:
    id_, at, user, role, address, action, target, result, detail = row
    return AuditRecord(user, role, address, action, target, result, detail, at=at, id=id_)


class AuditLog:
    def __init__(self, db: AuthDb) -> None:
        self.db = db

    def append(self, record: AuditRecord, request_id: str | None = None) -> bool:
        """Append one record; raises if it cannot be written (the caller refuses the action).
        With a `request_id` (a record sent over the bus) it is written once: a second delivery
        of the same request writes nothing and returns False."""
        with self.db.transaction() as db:
            if (
                request_id is not None
                and db.execute(
                    "SELECT 1 FROM audit_requests WHERE request_id = ?", (request_id,)
                ).fetchone()
            ):
                return False
            cur = db.execute(
                _INSERT,
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
        self.db.changed("audit", [str(cur.lastrowid)])
        return True

    def own_after(self, after: int, limit: int = 500) -> list[AuditRecord]:
        """This file's own audit records (not copies) with id > `after`, oldest first."""
        rows = self.db.all(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id > ? "
            "AND id NOT IN (SELECT audit_id FROM audit_origin) ORDER BY id LIMIT ?",
            after,
            limit,
        )
        return [_audit_row(row) for row in rows]

    def copy(self, records: list[tuple[str, AuditRecord]]) -> int:
        """Append records written by another node's file, each once (by its origin
        "<store_id>:<id>"); this file's own come back too and are skipped. Returns how many
        were new."""
        added = 0
        with self.db.transaction() as db:
            for origin, r in records:
                if (
                    origin.startswith(f"{self.db.store_id}:")
                    or db.execute(
                        "SELECT 1 FROM audit_origin WHERE origin = ?", (origin,)
                    ).fetchone()
                ):
                    continue
                cur = db.execute(
                    _INSERT,
                    (r.at, r.user, r.role, r.address, r.action, r.target, r.result, r.detail),
                )
                db.execute(
                    "INSERT INTO audit_origin(audit_id, origin) VALUES (?, ?)",
                    (cur.lastrowid, origin),
                )
                added += 1
        return added


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
