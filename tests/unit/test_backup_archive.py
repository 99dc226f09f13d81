"""`scada restore` refuses a damaged archive, a directory in use or one holding data, with
nothing changed; a good archive restores databases that pass integrity_check."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from scada.alarms.journal import Journal
from scada.auth.store import AuthStore
from scada.core.config import load_config
from scada.core.datadir import lock_data_dir
from scada.notify.outbox import Outbox
from scada.tools.backup import BackupError, take_backup
from scada.tools.restore import restore


def _plant(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    journal = Journal(data / "journal.sqlite", retention_days=1, retention_events=100)
    journal.close()
    Outbox(data / "notify.sqlite").close()
    store = AuthStore(data / "auth.sqlite")
    store.add_user("bob", "operator", "pw-bob-123")
    store.close()
    config = load_config().model_copy(
        update={"server": load_config().server.model_copy(update={"data_dir": str(data)})}
    )
    archive = tmp_path / "b.tar"
    take_backup(config, archive)
    return archive


def _rewrite(archive: Path, out: Path, name: str, content: bytes, *, manifest: bool) -> None:
    """A copy of `archive` with member `name` replaced (and the manifest's digest too)."""
    import hashlib

    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members[name] = content
    if manifest:
        doc = json.loads(members["manifest.json"])
        doc["databases"][name]["sha256"] = hashlib.sha256(content).hexdigest()
        members["manifest.json"] = json.dumps(doc).encode()
    with tarfile.open(out, "w") as tar:
        for key, body in members.items():
            info = tarfile.TarInfo(key)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def test_a_good_archive_restores_and_reopens_as_a_new_lineage(tmp_path: Path) -> None:
    archive = _plant(tmp_path)
    restore(archive, tmp_path / "new")
    store = AuthStore(tmp_path / "new" / "auth.sqlite")
    assert [u["name"] for u in store.list_users()] == ["bob"]
    store.close()
    old, new = tmp_path / "data", tmp_path / "new"
    epochs = [
        Journal(d / "journal.sqlite", retention_days=1, retention_events=9) for d in (old, new)
    ]
    assert epochs[0].epoch != epochs[1].epoch  # resume cursors of the source mean nothing here
    instances = [Outbox(d / "notify.sqlite") for d in (old, new)]
    assert instances[0].instance != instances[1].instance  # nor its notification ids
    for journal in epochs:
        journal.close()
    for outbox in instances:
        outbox.close()


def test_a_damaged_database_is_refused_before_anything_moves(tmp_path: Path) -> None:
    archive = _plant(tmp_path)
    with tarfile.open(archive) as tar:
        good = tar.extractfile("auth.sqlite").read()  # type: ignore[union-attr]
    damaged = good[:4096] + b"\xff" * 4096 + good[8192:]
    bad = tmp_path / "bad.tar"
    _rewrite(archive, bad, "auth.sqlite", damaged, manifest=False)
    with pytest.raises(BackupError, match="checksum"):
        restore(bad, tmp_path / "new")
    _rewrite(archive, bad, "auth.sqlite", damaged, manifest=True)  # digest matches: integrity
    with pytest.raises(BackupError, match="integrity_check"):
        restore(bad, tmp_path / "new")
    assert not list((tmp_path / "new").glob("*.sqlite"))


def test_a_directory_in_use_or_holding_data_is_refused(tmp_path: Path) -> None:
    archive = _plant(tmp_path)
    busy = tmp_path / "busy"
    lock = lock_data_dir(busy)
    try:
        with pytest.raises(BackupError, match="in use by scada server"):
            restore(archive, busy)
    finally:
        lock.close()
    restore(archive, tmp_path / "full")
    before = (tmp_path / "full" / "auth.sqlite").read_bytes()
    with pytest.raises(BackupError, match="--force"):
        restore(archive, tmp_path / "full")
    assert (tmp_path / "full" / "auth.sqlite").read_bytes() == before
    restore(archive, tmp_path / "full", force=True)  # the old files are moved aside
    assert len(list((tmp_path / "full").glob("replaced-*/auth.sqlite"))) == 1


def test_not_a_backup_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tar:
        info = tarfile.TarInfo("../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BackupError, match="not a scada backup"):
        restore(junk, tmp_path / "new")
    (tmp_path / "plain").write_text("hello")
    with pytest.raises(BackupError, match="cannot read"):
        restore(tmp_path / "plain", tmp_path / "new")
