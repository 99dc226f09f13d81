"""The data directory: private (0700, SQLite files 0600) and owned by one server at a time.

Two servers on one data dir would both raise alarms into one journal (the same occurrence
ids handed out twice); an exclusive lock on `<data_dir>/server.lock`, held for the process's
life, makes the second one stop at start with a message saying who holds it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path
from typing import IO

from scada.core.errors import ScadaError

log = logging.getLogger(__name__)

LOCK_NAME = "server.lock"


class DataDirBusy(ScadaError):
    """Another server process already uses this data directory."""


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700; tighten it if we own it and it is wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path.stat().st_uid == os.getuid():
        path.chmod(0o700)
        log.info("data directory %s was mode %o; now 0700", path, mode)
    return path


def private_file(path: Path) -> Path:
    """Create `path` with mode 0600 before SQLite opens it (SQLite gives its -wal and -shm
    files the database file's mode); tighten an existing file we own."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077 and p.stat().st_uid == os.getuid():
            p.chmod(0o600)
    return path


def lock_data_dir(path: Path, *, holder: str = "scada server") -> IO[str]:
    """Hold an exclusive lock on the data dir; raise DataDirBusy if another process has it.
    `holder` names this process in the lock file (what a refused one is told).

    The returned file must stay open as long as the server runs (closing it releases the
    lock; so does the process's death, also by SIGKILL)."""
    private_dir(path)
    lock_path = path / LOCK_NAME
    handle = os.fdopen(os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = handle.read().strip() or "another process"
        handle.close()
        raise DataDirBusy(
            f"data directory {path.resolve()} is in use by {who}; stop that server or "
            "give this one its own [server] data_dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{holder} pid {os.getpid()}\n")
    handle.flush()
    return handle
