"""`scada restore`: put a `scada backup` archive into a data directory no server uses.

Order of the checks, each of which stops with nothing changed:
1. the archive: a tar with a manifest of a format this release reads, only known members;
2. the directory: its lock (`server.lock`, the one a server holds while it runs) is taken
   for the whole restore, so a running server — or one starting meanwhile — is refused;
3. existing databases in the directory: refused unless `force` (they are then moved to
   `replaced-<time>/` in it, never deleted);
4. every database of the archive, unpacked beside its place: its SHA-256 against the
   manifest, `PRAGMA integrity_check`, and a schema version this release knows.
Then the journal gets a new epoch and the outbox a new instance (a new lineage of ids: see
`_new_lineage`), the files are renamed into place (stale -wal/-shm removed first) and each is
checked again with `PRAGMA integrity_check` where it now lies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scada.core.datadir import DataDirBusy, lock_data_dir, private_dir
from scada.core.schema import Migration, version_of
from scada.tools.backup import (
    CONFIG,
    DATABASES,
    FORMAT,
    MANIFEST,
    BackupError,
    integrity,
    sha256_file,
)

log = logging.getLogger(__name__)

RESTORED_CONFIG = "config-from-backup.toml"


def _newest_version(name: str) -> int:
    """The newest schema version of archive member `name` this release knows."""
    from scada.alarms.journal import MIGRATIONS as JOURNAL
    from scada.auth.authdb import MIGRATIONS as AUTH
    from scada.historian.db import MIGRATIONS as HISTORY
    from scada.notify.outbox import MIGRATIONS as NOTIFY

    known: dict[str, Sequence[Migration]] = {
        "journal.sqlite": JOURNAL,
        "auth.sqlite": AUTH,
        "history.sqlite": HISTORY,
        "notify.sqlite": NOTIFY,
    }
    return len(known[name])


def read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    names = set(tar.getnames())
    if MANIFEST not in names:
        raise BackupError(f"{archive} is not a scada backup (no {MANIFEST})")
    member = tar.extractfile(MANIFEST)
    assert member is not None
    try:
        manifest: dict[str, Any] = json.loads(member.read())
    except ValueError as err:
        raise BackupError(f"{archive}: unreadable {MANIFEST}: {err}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{archive} is backup format {manifest.get('format')!r}; this release reads {FORMAT}"
        )
    allowed = {MANIFEST, CONFIG, *DATABASES}
    unknown = names - allowed
    listed = set(manifest.get("databases", {}))
    if unknown or not listed <= set(DATABASES) or not listed <= names:
        raise BackupError(
            f"{archive} does not match its manifest (unexpected: {sorted(unknown)}, "
            f"listed: {sorted(listed)})"
        )
    return manifest


def _existing(data_dir: Path) -> list[Path]:
    return [
        p for name in DATABASES for p in (data_dir / name, data_dir / f"{name}-wal") if p.exists()
    ]


def _new_lineage(work: Path, names: dict[str, Any]) -> None:
    """A restored journal hands out again the ids its source used after the backup, for other
    events: it gets a new epoch, so a client's resume cursor from before is not taken as
    meaning these (it gets a fresh snapshot), and the outbox a new instance, so a receiver
    that de-duplicates by notification id does not drop them as seen."""
    if "journal.sqlite" in names:
        with contextlib.closing(sqlite3.connect(work / "journal.sqlite")) as db, db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (secrets.randbits(63),))
    if "notify.sqlite" in names:
        with contextlib.closing(sqlite3.connect(work / "notify.sqlite")) as db, db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'instance'", (secrets.token_hex(4),))


def restore(archive: Path, data_dir: Path, *, force: bool = False) -> dict[str, Any]:
    """Restore `archive` into `data_dir`; returns the manifest. Raises BackupError or
    DataDirBusy with nothing changed (short of the directory and its lock file made)."""
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as err:
        raise BackupError(f"cannot read {archive}: {err}") from None
    with tar:
        manifest = read_manifest(tar, archive)
        try:
            lock = lock_data_dir(data_dir, holder="scada restore")
        except DataDirBusy as err:
            raise BackupError(f"refusing to restore: {err}") from None
        try:
            _restore_locked(tar, manifest, data_dir, force=force)
        finally:
            lock.close()
    return manifest


def _restore_locked(
    tar: tarfile.TarFile, manifest: dict[str, Any], data_dir: Path, *, force: bool
) -> None:
    existing = _existing(data_dir)
    if existing and not force:
        raise BackupError(
            f"{data_dir} already holds {', '.join(p.name for p in existing)}; restore into an "
            "empty directory, or pass --force to move those files aside first"
        )
    work = private_dir(data_dir / f".restore-{os.getpid()}")
    try:
        for name, entry in manifest["databases"].items():
            member = tar.getmember(name)
            if not member.isfile():
                raise BackupError(f"archive member {name} is not a file")
            source = tar.extractfile(member)
            assert source is not None
            target = work / name
            with source, open(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            if sha256_file(target) != entry["sha256"]:
                raise BackupError(f"{name} in the archive does not match its checksum")
            check = integrity(target)
            if check != "ok":
                raise BackupError(f"{name} in the archive fails integrity_check: {check}")
            with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as db:
                version = version_of(db)
            if version > _newest_version(name):
                raise BackupError(
                    f"{name} has schema version {version}, newer than this release knows "
                    f"({_newest_version(name)}): restore it with the release that took it"
                )
        _new_lineage(work, manifest["databases"])
        if existing:
            aside = private_dir(data_dir / time.strftime("replaced-%Y%m%dT%H%M%S"))
            for path in existing + [Path(f"{p}-shm") for p in existing]:
                if path.exists():
                    path.rename(aside / path.name)
            log.warning("restore: the files that were in %s are now in %s", data_dir, aside)
        for name in manifest["databases"]:
            for stale in (data_dir / f"{name}-wal", data_dir / f"{name}-shm"):
                stale.unlink(missing_ok=True)
            (work / name).replace(data_dir / name)
        if CONFIG in tar.getnames():
            config = tar.extractfile(CONFIG)
            assert config is not None
            target = data_dir / RESTORED_CONFIG  # may hold secrets: the service user's only
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "wb") as out:
                out.write(config.read())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name in manifest["databases"]:
        check = integrity(data_dir / name)
        if check != "ok":
            raise BackupError(f"{data_dir / name} fails integrity_check after restore: {check}")
