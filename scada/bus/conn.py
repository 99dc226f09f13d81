"""One way to open a Redis client for the bus (bounded waits, no hidden retries), and one
way to read its stream replies.

Every loop of the cluster retries on its own schedule (lease renewal, outbox, reader), so the
client must fail fast instead of retrying behind their back; a command that hangs longer than
`timeout` is an error, never a frozen task.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from scada.bus.keys import text


def connect(url: str, *, timeout: float = 2.0, name: str | None = None) -> Redis:
    """A client for `url` (redis://host:port/db) whose every wait ends after `timeout` s."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )


Entry = tuple[str, dict[bytes, bytes]]


def stream_entries(reply: Any) -> list[tuple[str, list[Entry]]]:
    """An XREAD/XREADGROUP reply (RESP2 list or RESP3 dict) as [(stream, [(id, fields)])]."""
    pairs = reply.items() if isinstance(reply, dict) else reply or []
    return [
        (text(name), [(text(entry), fields) for entry, fields in entries if fields is not None])
        for name, entries in pairs
    ]


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that an `asyncio.wait_for` racing with a result swallowed
    (Python 3.11): every retry loop of the cluster calls this once per turn."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
