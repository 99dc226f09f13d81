"""Versioned SQLite schemas: `PRAGMA user_version` and an ordered list of migrations.

Every database of a data directory (alarm journal, auth store, historian, notification
outbox) is opened through `open_schema`:

1. a file whose version is higher than this release knows was written by a newer release:
   refused with a clear error (`SchemaTooNew`), the file untouched;
2. the base script (the `CREATE ... IF NOT EXISTS` of release 0.1) makes a new file;
3. each migration from the file's version on runs in its own transaction together with the
   version bump, so a crash or an error leaves the file at the last complete version.

Version 0 is a file from before versions were kept (or a new one); `migrations[0]` brings it
to version 1. A schema change is a new function appended to its list, never an edit of one
already released: a data directory of any earlier release opens, in order, with no data lost
(tests/fixtures/datadir-0.1 is a data directory written by release 0.1, opened by the suite).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

from scada.core.errors import ScadaError

log = logging.getLogger(__name__)

# One step: runs inside a transaction the caller opened (no executescript: it commits).
Migration = Callable[[sqlite3.Connection], None]


class SchemaTooNew(ScadaError):
    """A database written by a newer release than this one."""


def version_of(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_version(db: sqlite3.Connection, name: str, migrations: Sequence[Migration]) -> int:
    """The file's schema version; SchemaTooNew if this release does not know it."""
    version = version_of(db)
    if version > len(migrations):
        raise SchemaTooNew(
            f"{name} has schema version {version}, this release of scada knows versions up "
            f"to {len(migrations)}: it was written by a newer release. Run that release, or "
            "restore a backup taken with this one (docs/operations.md)"
        )
    return version


def open_schema(
    db: sqlite3.Connection, name: str, base: str, migrations: Sequence[Migration]
) -> int:
    """Create (base script) and migrate `db` to the newest version; returns that version.
    `db` must be in autocommit mode (isolation_level=None)."""
    version = check_version(db, name, migrations)
    db.executescript(base)
    for step in range(version, len(migrations)):
        db.execute("BEGIN IMMEDIATE")
        try:
            migrations[step](db)
            db.execute(f"PRAGMA user_version = {step + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if step:  # version 1 is what every file of release 0.1 is: not worth a line
            log.info("%s: schema migrated to version %d", name, step + 1)
    return len(migrations)


def baseline(_db: sqlite3.Connection) -> None:
    """Version 1: release 0.1's schema, which the base script makes."""


def statements(*sql: str) -> Migration:
    """A migration of plain SQL statements, run one by one inside the step's transaction."""

    def run(db: sqlite3.Connection) -> None:
        for statement in sql:
            db.execute(statement)

    return run
