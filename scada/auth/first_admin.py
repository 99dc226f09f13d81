"""The first start: create `admin` with a random password that reaches no log.

On a terminal the password is printed there, once. Without one (systemd, docker, a pipe)
stderr goes to journald or a log file that outlives the console, so the password is written
to a 0600 file next to the user database instead, and the log says only where it is. The file
holds the password alone (one line), so its whole content can be pasted into the password
field; the user is `admin`.

In a cluster (`ensure_cluster_admin`) only the active ingest node creates it, at activation,
after taking the cluster's auth rows over, and only if the cluster has no user at all: one
admin, one password file, valid on every node. A password file whose password the cluster's
rows replaced is removed, so no file names a password that does not work.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from scada.auth.passwords import new_password, verify_password
from scada.auth.store import AuthStore

log = logging.getLogger(__name__)

PASSWORD_FILE = "initial-admin-password"
FIRST_USER = "admin"


def ensure_admin(store: AuthStore, *, interactive: bool | None = None) -> Path | None:
    """Create `admin` if there are no users; returns the password file written, if any."""
    if store.count_users() > 0:
        return None
    password = new_password()
    store.add_user(FIRST_USER, "admin", password)
    if sys.stderr.isatty() if interactive is None else interactive:
        print(
            f"\n  Created the first user: admin / {password}\n  It is shown only this once; "
            "change it with `scada users passwd admin`.\n",
            file=sys.stderr,
            flush=True,
        )
        log.info("created the first user 'admin' (password shown on the terminal once)")
        return None
    path = store.path.parent / PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"{password}\n")
    log.warning(
        "created the first user 'admin'; its password is in %s (mode 0600, the password "
        "alone): log in as admin with it, delete the file, and change the password with "
        "`scada users passwd admin`",
        path.resolve(),
    )
    return path


def read_password_file(path: Path) -> tuple[str, str] | None:
    """(user, password) from a password file; None if it is missing or not of that form.

    The file holds the password alone; files written before that hold `admin PASSWORD`.
    """
    try:
        words = path.read_text().split()
    except OSError:
        return None
    if len(words) == 1:
        return FIRST_USER, words[0]
    if len(words) == 2:
        return words[0], words[1]
    return None


def password_file_valid(path: Path, password_hash: Callable[[str], str | None]) -> bool:
    """Whether the file's password is the one its user has (`password_hash(user)`)."""
    found = read_password_file(path)
    if found is None:
        return False
    stored = password_hash(found[0])
    return stored is not None and verify_password(found[1], stored)


def ensure_cluster_admin(store: AuthStore, cluster_users: int) -> Path | None:
    """The active ingest node, after merging the cluster's rows (`cluster_users`: how many
    users Redis holds): create `admin` if neither Redis nor this store has a user; remove a
    password file the merge made stale (another node's admin password won)."""
    path = store.path.parent / PASSWORD_FILE
    if path.exists() and not password_file_valid(path, store.password_hash):
        path.unlink(missing_ok=True)
        log.warning(
            "removed %s: its password is not the cluster's (the cluster's rows, made on "
            "another node or changed since, replaced it)",
            path.resolve(),
        )
    if cluster_users > 0:
        return None
    return ensure_admin(store)
