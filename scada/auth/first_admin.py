"""The first start: create `admin` with a random password that reaches no log.

On a terminal the password is printed there, once. Without one (systemd, docker, a pipe)
stderr goes to journald or a log file that outlives the console, so the password is written
to a 0600 file next to the user database instead, and the log says only where it is.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from scada.auth.passwords import new_password
from scada.auth.store import AuthStore

log = logging.getLogger(__name__)

PASSWORD_FILE = "initial-admin-password"


def ensure_admin(store: AuthStore, *, interactive: bool | None = None) -> Path | None:
    """Create `admin` if there are no users; returns the password file written, if any."""
    if store.count_users() > 0:
        return None
    password = new_password()
    store.add_user("admin", "admin", password)
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
        out.write(f"admin {password}\n")
    log.warning(
        "created the first user 'admin'; its password is in %s (mode 0600): read it, "
        "delete the file, and change the password with `scada users passwd admin`",
        path.resolve(),
    )
    return path
