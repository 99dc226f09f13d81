"""`scada backup`: one consistent archive of a data directory, taken while the server runs.

A separate process, not the server: it opens each database read-only and copies it with
SQLite's online backup API (docs/operations.md says why). Each copy runs inside one read
transaction, so in WAL mode it is that database's state at one instant however long the copy
takes, and the server's writers never wait for it (only its WAL cannot be checkpointed past
that instant until the copy ends). The copy goes a few MB at a time with a short pause
between steps, so a large historian does not take the disk from the server.

The databases are copied in an order that keeps their cross-references safe: the notification
outbox first (its journal cursor then never points past the copied journal's newest event),
then the alarm journal, the auth store, and the historian last. Every copy must pass
`PRAGMA integrity_check` before it goes into the archive.

The archive is a tar file (gzip-compressed if FILE ends in .gz or .tgz) holding
`manifest.json`, `config.toml` (the config file given, as it is now) and one `NAME.sqlite`
per database the server has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scada import __version__
from scada.core.config import PlantConfig, resolve_data_path
from scada.core.errors import ScadaError
from scada.core.schema import version_of
from scada.core.timefmt import iso_ms

log = logging.getLogger(__name__)

FORMAT = 1  # manifest "format": what `scada restore` of this release understands
MANIFEST = "manifest.json"
CONFIG = "config.toml"
# Archive name -> what it holds, in copy order (see the module's docstring).
DATABASES = {
    "notify.sqlite": "notification outbox",
    "journal.sqlite": "alarm journal",
    "auth.sqlite": "users, sessions, tokens and audit log",
    "history.sqlite": "historian",
}
STEP_BYTES = 4 * 1024 * 1024  # copied per backup step
STEP_PAUSE_S = 0.005  # between steps: the server's writer and readers get the disk

Progress = Callable[[str], None]


class BackupError(ScadaError):
    """A backup or restore that cannot be done; nothing was changed."""


@dataclass(frozen=True)
class Source:
    name: str  # the archive member, e.g. journal.sqlite
    path: Path  # where the server keeps it


def sources(config: PlantConfig) -> list[Source]:
    """The databases of this config's data directory that exist, in copy order."""
    notify = config.notifications.get("outbox_path")
    where = {
        "notify.sqlite": resolve_data_path(config, notify, "notify.sqlite"),
        "journal.sqlite": resolve_data_path(config, config.alarms.journal_path, "journal.sqlite"),
        "auth.sqlite": resolve_data_path(config, config.auth.database, "auth.sqlite"),
        "history.sqlite": resolve_data_path(config, config.historian.path, "history.sqlite"),
    }
    return [Source(name, where[name]) for name in DATABASES if where[name].exists()]


def integrity(path: Path) -> str:
    """'ok', or SQLite's first problems with the file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as err:
        return str(err)
    finally:
        db.close()
    text = "; ".join(str(r[0]) for r in rows[:5])
    return "ok" if text == "ok" else text


def copy_database(
    src_path: Path, dst_path: Path, *, step_bytes: int = STEP_BYTES, pause: float = STEP_PAUSE_S
) -> int:
    """A consistent copy of a live WAL database; returns its schema version."""
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout=5000")
        # One read transaction around every step: the copy is this instant's snapshot, and a
        # commit by the server meanwhile does not restart it (as it would between steps).
        src.execute("BEGIN")
        version = version_of(src)
        page_size = int(src.execute("PRAGMA page_size").fetchone()[0])
        dst = sqlite3.connect(dst_path)
        try:
            src.backup(
                dst,
                pages=max(step_bytes // page_size, 1),
                progress=lambda _status, _remaining, _total: time.sleep(pause),
            )
            # A self-contained file (no -wal beside it); the server sets WAL when it opens it.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as err:
        raise BackupError(f"cannot copy {src_path}: {err}") from err
    finally:
        src.close()
    return version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _in_use(data_dir: Path) -> str | None:
    """Who holds the data dir's lock (the running server), without taking it."""
    import fcntl

    lock = data_dir / "server.lock"
    if not lock.exists():
        return None
    with lock.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "a process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def take_backup(
    config: PlantConfig,
    out: Path,
    *,
    config_path: Path | None = None,
    progress: Progress | None = None,
    step_bytes: int = STEP_BYTES,
    pause: float = STEP_PAUSE_S,
) -> dict[str, Any]:
    """Write the archive `out` (atomically: a temporary file renamed at the end); returns its
    manifest. Raises BackupError, leaving no partial archive."""
    data_dir = Path(config.server.data_dir).resolve()
    found = sources(config)
    if not found:
        raise BackupError(f"no database in {data_dir} (is [server] data_dir right?)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "scada_version": __version__,
        "created": iso_ms(time.time()),
        "data_dir": str(data_dir),
        "server_running": _in_use(data_dir),
        "config": CONFIG if config_path is not None else None,
        "databases": {},
    }
    work = Path(tempfile.mkdtemp(prefix=".scada-backup-", dir=out.parent))
    try:
        os.chmod(work, 0o700)
        for source in found:
            began = time.monotonic()
            copy = work / source.name
            version = copy_database(source.path, copy, step_bytes=step_bytes, pause=pause)
            check = integrity(copy)
            if check != "ok":
                raise BackupError(f"the copy of {source.path} fails integrity_check: {check}")
            size = copy.stat().st_size
            manifest["databases"][source.name] = {
                "what": DATABASES[source.name],
                "source": str(source.path),
                "schema_version": version,
                "bytes": size,
                "sha256": sha256_file(copy),
                "integrity": check,
            }
            log.info(
                "backup: %s (%d bytes, schema %d) copied in %.1f s",
                source.name,
                size,
                version,
                time.monotonic() - began,
            )
            if progress is not None:
                progress(f"{source.name}: {size:,} bytes, integrity ok")
        if config_path is not None:
            shutil.copyfile(config_path, work / CONFIG)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial = work / "archive.partial"
        mode = "w:gz" if out.name.endswith((".gz", ".tgz")) else "w"
        with tarfile.open(partial, mode) as tar:  # type: ignore[call-overload]
            tar.add(work / MANIFEST, MANIFEST)
            if config_path is not None:
                tar.add(work / CONFIG, CONFIG)
            for name in manifest["databases"]:
                tar.add(work / name, name)
        os.chmod(partial, 0o600)  # password hashes, alarm texts: the service user's only
        partial.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest
