"""Every database of a data directory carries a schema version and migrates in order."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from scada.alarms import journal as journal_mod
from scada.alarms.journal import Journal
from scada.auth import authdb
from scada.auth.store import AuthStore
from scada.core.schema import Migration, SchemaTooNew, open_schema, statements, version_of
from scada.historian import db as historian_db
from scada.notify import outbox as outbox_mod
from scada.notify.outbox import Outbox


def _journal(path: Path) -> object:
    return Journal(path, retention_days=1, retention_events=10)


OPENERS: dict[str, tuple[Callable[[Path], object], Sequence[Migration]]] = {
    "journal": (_journal, journal_mod.MIGRATIONS),
    "auth": (AuthStore, authdb.MIGRATIONS),
    "historian": (historian_db.open_writer, historian_db.MIGRATIONS),
    "notify": (Outbox, outbox_mod.MIGRATIONS),
}


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return version_of(db)


def _close(opened: object) -> None:
    close = getattr(opened, "close", None)
    if close is not None:
        close()


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_a_new_file_is_at_the_newest_version(kind: str, tmp_path: Path) -> None:
    opener, migrations = OPENERS[kind]
    path = tmp_path / f"{kind}.sqlite"
    _close(opener(path))
    assert _version(path) == len(migrations) >= 1


@pytest.mark.parametrize("kind", sorted(OPENERS))
def test_a_file_from_a_newer_release_is_refused_untouched(kind: str, tmp_path: Path) -> None:
    opener, migrations = OPENERS[kind]
    path = tmp_path / f"{kind}.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(migrations) + 1}")
        db.execute("CREATE TABLE from_the_future (x)")
    with pytest.raises(SchemaTooNew, match="written by a newer release"):
        opener(path)
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"from_the_future"} and version_of(db) == len(migrations) + 1


def test_migrations_run_in_order_each_with_its_version_and_a_failure_rolls_back(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    base = "CREATE TABLE IF NOT EXISTS t (a INTEGER);"
    v1 = statements("INSERT INTO t VALUES (1)")
    v2 = statements("ALTER TABLE t ADD COLUMN b INTEGER", "UPDATE t SET b = a * 10")
    assert open_schema(db, "x", base, [v1]) == 1
    assert open_schema(db, "x", base, [v1]) == 1  # nothing runs twice
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1

    def broken(con: sqlite3.Connection) -> None:
        con.execute("INSERT INTO t VALUES (2, 20)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError):
        open_schema(db, "x", base, [v1, v2, broken])
    # v2 committed with its version; the broken step left neither its row nor a version
    assert version_of(db) == 2
    assert db.execute("SELECT a, b FROM t").fetchall() == [(1, 10)]


def test_a_journal_from_before_the_kpi_columns_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(journal_mod._SCHEMA)
        db.execute(
            "INSERT INTO events(at, alarm, line, occurrence_id, event, body)"
            " VALUES (1.0, 'a', '1', 1, 'raised', ?)",
            (b'{"state": "active", "severity": "high", "raised_at": 1.0}',),
        )
    _close(_journal(path))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state, severity, raised_at FROM events").fetchall() == [
            ("active", "high", 1.0)
        ]
        assert version_of(db) == len(journal_mod.MIGRATIONS)
