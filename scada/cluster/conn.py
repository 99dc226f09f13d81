"""One way to open a Redis client for the bus: bounded waits, no hidden retries.

Every loop of the cluster retries on its own schedule (lease renewal, outbox, reader), so the
client must fail fast instead of retrying behind their back; a command that hangs longer than
`timeout` is an error, never a frozen task.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect(url: str, *, timeout: float = 2.0, name: str | None = None) -> Redis:
    """A client for `url` (redis://host:port/db) whose every wait ends after `timeout` s."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )
