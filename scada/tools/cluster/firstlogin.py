"""Which ingest node's `initial-admin-password` file holds the cluster's admin password.

Only the ingest node that was active when the cluster had no user writes the file (see
`scada.auth.first_admin.ensure_cluster_admin`), so after a failover or a restart it may be
on any node. The truth is Redis' users hash (what the active node seeded): the file named is
the one whose password verifies against the hash stored there for its user.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from scada.auth.first_admin import password_file_valid
from scada.auth.replica.rows import AuthKeys, decode_hash


def cluster_users(redis: Redis, keys: AuthKeys) -> dict[str, dict[str, Any]] | None:
    """The users hash once the active node seeded the auth rows; None before."""
    if redis.get(keys.seed) is None:
        return None
    raw: Any = redis.hgetall(keys.hash("users"))
    return decode_hash(raw)


def cluster_password_file(
    redis_url: str,
    prefix: str,
    candidates: Sequence[Path],
    *,
    timeout: float,
    stopping: Callable[[], bool] = lambda: False,
) -> Path | None:
    """The candidate whose password is its user's in the cluster (waits up to `timeout` for
    the active node's seed); None if none is (the cluster had users already)."""
    keys = AuthKeys(prefix)
    deadline = time.monotonic() + timeout
    with Redis.from_url(redis_url, socket_timeout=2) as redis:
        users = None
        while users is None and time.monotonic() < deadline and not stopping():
            with contextlib.suppress(RedisError, OSError):
                users = cluster_users(redis, keys)
            if users is None:
                time.sleep(0.1)
    if users is None:
        return None

    def password_hash(name: str) -> str | None:
        row = users.get(name) if users else None
        return str(row["password"]) if row and "password" in row else None

    return next((p for p in candidates if password_file_valid(p, password_hash)), None)
