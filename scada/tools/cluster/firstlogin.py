"""Which ingest node's `initial-admin-password` file holds the cluster's admin password.

Only the ingest node that was active when the cluster had no user writes the file (see
`scada.auth.first_admin.ensure_cluster_admin`), so after a failover or a restart it may be
on any node. The truth is what the active node seeded in Redis: the file named is the one
whose password verifies against its user's hash there, sealed for the ingest nodes (so this
reads Redis as the ingest user: `scada cluster` made that user and knows its password).
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
from scada.auth.replica.rows import AuthKeys
from scada.auth.replica.sealed import Sealer
from scada.bus.keys import text


def cluster_hashes(redis: Redis, keys: AuthKeys, sealer: Sealer) -> dict[str, str] | None:
    """User name → password hash once the active node seeded the auth rows; None before."""
    if redis.get(keys.seed) is None:
        return None
    raw: Any = redis.hgetall(keys.secrets)
    hashes = {text(name): sealer.unseal(text(name), blob) for name, blob in raw.items()}
    return {name: h for name, h in hashes.items() if h is not None}


def cluster_password_file(
    redis_url: str,
    prefix: str,
    candidates: Sequence[Path],
    *,
    timeout: float,
    stopping: Callable[[], bool] = lambda: False,
) -> Path | None:
    """The candidate whose password is its user's in the cluster (waits up to `timeout` for
    the active node's seed); None if none is (the cluster had users already, or
    `redis_url` is not the ingest nodes' own: without their password nothing unseals)."""
    keys = AuthKeys(prefix)
    sealer = Sealer.for_url(redis_url, prefix)
    if sealer is None:
        return None
    deadline = time.monotonic() + timeout
    with Redis.from_url(redis_url, socket_timeout=2) as redis:
        users = None
        while users is None and time.monotonic() < deadline and not stopping():
            with contextlib.suppress(RedisError, OSError):
                users = cluster_hashes(redis, keys, sealer)
            if users is None:
                time.sleep(0.1)
    if users is None:
        return None
    return next((p for p in candidates if password_file_valid(p, users.get)), None)
