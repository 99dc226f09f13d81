"""The cluster bus against real redis-server processes: outbox, epoch, cursor reader.

Each test runs its own Redis (free loopback port, tmp dir) and a real SQLite alarm journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from scada.alarms.journal import Journal
from scada.bus.epoch import read_epoch
from scada.bus.framestream import FramePublisher
from scada.bus.keys import BusKeys, entry_id, event_id
from scada.bus.lease import Lease
from scada.bus.reader import (
    AlarmEntries,
    BusEvent,
    BusReader,
    EpochChanged,
    Frames,
    Gap,
    Status,
)
from scada.roles.ingest.alarmoutbox import Outbox, decode_event
from tests.integration.cluster_node import alarm_event
from tests.integration.cluster_redis import RedisServer, connect, redis_server

KEYS = BusKeys("test")
redis_server = redis_server  # the fixture, shared by the cluster tests
T = TypeVar("T")
JOURNAL_EPOCH = "j0urnal"


def make_journal(path: Path) -> Journal:
    return Journal(path, retention_days=30, retention_events=1_000_000)


def commit(journal: Journal, count: int) -> list[int]:
    """Journal `count` alarm events; returns their ids."""
    events = [alarm_event(i + 1) for i in range(count)]
    return [ev.event_id or 0 for ev in journal.append(events)]


async def leader(redis: Redis, node: str = "ingest-a", ttl: float = 60.0) -> Lease:
    """A lease held without a renewal loop: a long TTL, so a slow test step cannot outlast it."""
    lease = Lease(redis, KEYS, node, ttl=ttl)
    assert await lease.try_acquire()
    return lease


async def publishing(
    url: str, journal: Journal, node: str = "ingest-a", backfill: int = 1000, ttl: float = 60.0
) -> tuple[Redis, Lease, Outbox, str]:
    """A leader on `url` with its outbox started: (redis, lease, outbox, epoch)."""
    redis = connect(url)
    lease = await leader(redis, node, ttl)
    outbox = Outbox(redis, KEYS, lease, journal, JOURNAL_EPOCH, backfill=backfill)
    return redis, lease, outbox, await outbox.start()


async def stream_ids(redis: Redis) -> list[int]:
    entries: Any = await redis.xrange(KEYS.alarms)
    return [event_id(entry) for entry, _ in entries]


async def alarms_through(
    stream: AsyncIterator[BusEvent], last: int, timeout: float = 15.0
) -> tuple[list[int], list[BusEvent]]:
    """Alarm ids (and every event) from the reader's stream until event `last` arrived."""
    got: list[int] = []
    events: list[BusEvent] = []
    while got[-1:] != [last]:
        event = await asyncio.wait_for(anext(stream), timeout)
        events.append(event)
        if isinstance(event, AlarmEntries):
            got += [i for i, _ in event.entries]
    return got, events


def test_entry_ids_are_journal_ids() -> None:
    assert entry_id(42) == "42-0"
    assert event_id(b"42-0") == 42
    with pytest.raises(ValueError):
        entry_id(0)
    with pytest.raises(ValueError):
        event_id("42-1")


def test_outbox_republishes_only_what_is_missing_and_redis_refuses_the_rest(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journal = make_journal(tmp_path / "journal.db")

    async def main() -> None:
        redis = connect(redis_server.url)
        lease = await leader(redis)
        commit(journal, 50)
        first = Outbox(redis, KEYS, lease, journal, JOURNAL_EPOCH)
        epoch = await first.start()
        assert await first.flush() == 50

        # The node "restarts" after committing 30 more events it never published.
        commit(journal, 30)
        second = Outbox(redis, KEYS, lease, journal, JOURNAL_EPOCH)
        assert await second.start() == epoch
        assert second.published_through == 50
        assert await second.flush() == 30

        # Republishing everything again adds nothing: Redis refuses ids at or below its top.
        second.published_through = 0
        assert await second.flush() == 0
        assert second.already_published_total == 80

        assert await stream_ids(redis) == list(range(1, 81))
        entries: Any = await redis.xrange(KEYS.alarms, "7", "7")
        assert decode_event(entries[0][1][b"e"]).event_id == 7
        assert entries[0][1][b"h"].decode() == epoch
        await redis.aclose()

    asyncio.run(main())


def test_a_batch_on_the_bus_before_its_commit_is_not_taken_for_pruned_events(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gate publishes a batch before the journal commits it, so a flush in that window
    finds the outbox ahead of the file. It is not a prune: nothing is skipped and no gap is
    logged. (It was: a takeover under load logged "pruned before they were published" 248
    times in 90 ms, moving the outbox's cursor 247 ids past the journal.)"""
    journal = make_journal(tmp_path / "journal.db")

    async def main() -> None:
        redis, _lease, outbox, _ = await publishing(redis_server.url, journal)
        commit(journal, 5)
        assert await outbox.flush() == 5
        loop = asyncio.get_running_loop()
        in_window: list[tuple[int, int, int]] = []

        def gate(batch: list[Any]) -> None:  # the node's gate, and a flush before the commit
            outbox.accept(batch)
            added = asyncio.run_coroutine_threadsafe(outbox.flush(), loop).result(30)
            in_window.append((added, outbox.published_through, journal.committed_id()))

        journal.gate = gate
        await asyncio.to_thread(commit, journal, 3)
        assert in_window == [(0, 8, 5)]  # published through 8, the file at 5: nothing to do
        journal.gate = None
        commit(journal, 2)  # committed without the gate: the flush publishes exactly these
        assert await outbox.flush() == 2
        assert outbox.published_through == 10
        assert await stream_ids(redis) == list(range(1, 11))
        await redis.aclose()

    with caplog.at_level(logging.ERROR, logger="scada.roles.ingest.alarmoutbox"):
        asyncio.run(main())
    assert "pruned" not in caplog.text


def test_reader_reports_a_gap_after_trimming_and_never_fills_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journal = make_journal(tmp_path / "journal.db")

    async def main() -> None:
        redis, _, outbox, epoch = await publishing(redis_server.url, journal)
        commit(journal, 100)
        await outbox.flush()

        # A cursor the stream still covers: every event after it, contiguous, no gap.
        fine = BusReader(redis_server.url, KEYS, cursor=10, epoch=epoch, frames=False)
        got, events = await alarms_through(fine.events(), 100)
        assert got == list(range(11, 101))
        assert not [e for e in events if isinstance(e, Gap | EpochChanged)]

        # Trim to the newest 20 (exactly): a reader at 10 is told what it missed, not fed 81.
        await redis.xtrim(KEYS.alarms, maxlen=20, approximate=False)
        trimmed = BusReader(redis_server.url, KEYS, cursor=10, epoch=epoch, frames=False)
        got, events = await alarms_through(trimmed.events(), 100)
        kinds = [e for e in events if isinstance(e, Gap | AlarmEntries)]
        assert kinds[0] == Gap(after=10, first=81)
        assert got == list(range(81, 101))
        await redis.aclose()

    asyncio.run(main())


def test_redis_restart_without_persistence_changes_the_epoch(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journal = make_journal(tmp_path / "journal.db")

    async def main() -> None:
        redis, _, outbox, old_epoch = await publishing(redis_server.url, journal, backfill=5)
        commit(journal, 20)
        await outbox.flush()
        reader = BusReader(redis_server.url, KEYS, cursor=0, epoch=old_epoch, frames=False)
        stream = reader.events()
        assert isinstance(stream, AsyncGenerator)  # closed with aclose() below
        got, _ = await alarms_through(stream, 20)
        assert got == list(range(1, 21))

        redis_server.restart()  # kill -9, no persistence: Redis comes back empty
        await redis.aclose()
        redis = connect(redis_server.url)
        assert await read_epoch(redis, KEYS) is None
        # Whatever the reader sees before a leader is back: the old epoch is over.
        first_change = await next_of(stream, EpochChanged)
        assert first_change.old == old_epoch

        lease = await leader(redis, "ingest-b")
        outbox = Outbox(redis, KEYS, lease, journal, JOURNAL_EPOCH, backfill=5)
        new_epoch = await outbox.start()
        assert new_epoch != old_epoch and new_epoch.startswith(JOURNAL_EPOCH + "/")
        commit(journal, 3)
        await outbox.flush()
        if first_change.new != new_epoch:
            assert first_change.new is None
            assert await next_of(stream, EpochChanged) == EpochChanged(None, new_epoch)
        after, events = await alarms_through(stream, 23)
        assert not [e for e in events if isinstance(e, Gap | EpochChanged)]
        # The new epoch's stream: the 5 newest journal events backfilled, then the 3 new ones.
        assert after == list(range(16, 24))
        await stream.aclose()
        await redis.aclose()

    asyncio.run(main())


async def next_of(stream: AsyncIterator[BusEvent], kind: type[T], timeout: float = 15.0) -> T:
    async def find() -> T:
        async for event in stream:
            if isinstance(event, kind):
                return event
        raise AssertionError("reader ended")

    return await asyncio.wait_for(find(), timeout)


def test_redis_with_aof_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", aof=True).start()
    journal = make_journal(tmp_path / "journal.db")

    async def main() -> None:
        # The lease outlives the kill in the AOF: the restarted leader waits for it to expire.
        redis, lease, outbox, epoch = await publishing(server.url, journal, ttl=8.0)
        reader = BusReader(server.url, KEYS, cursor=0, epoch=epoch, frames=False)
        stream = reader.events()
        assert isinstance(stream, AsyncGenerator)  # closed with aclose() below
        for burst in range(3):
            commit(journal, 100)
            await outbox.flush()
            if burst == 1:
                server.kill()  # kill -9 mid-run; the reader may be mid-read
                await redis.aclose()
                server.start()
                redis = connect(server.url)
                lease = Lease(redis, KEYS, "ingest-a", ttl=8.0)
                await wait_async(lease.try_acquire, timeout=30.0)
                outbox = Outbox(redis, KEYS, lease, journal, JOURNAL_EPOCH)
                assert await outbox.start() == epoch  # the epoch key survived with the stream
                assert outbox.published_through == 200
        got, events = await alarms_through(stream, 300)
        assert got == list(range(1, 301))  # 0 gaps, 0 duplicates
        assert not [e for e in events if isinstance(e, Gap | EpochChanged)]
        await stream.aclose()
        await redis.aclose()

    try:
        asyncio.run(main())
    finally:
        server.kill()


async def wait_async(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[misc]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_reader_goes_stale_when_the_bus_hangs_and_resumes_from_its_cursor(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A hung Redis (SIGSTOP: the TCP connection stays open, nothing comes back) is noticed
    by the reader's own deadline, not by TCP; after SIGCONT it resumes without a gap."""
    journal = make_journal(tmp_path / "journal.db")

    async def main() -> None:
        redis, lease, outbox, epoch = await publishing(redis_server.url, journal)
        frames = FramePublisher(redis, KEYS, lease)
        commit(journal, 10)
        await outbox.flush()
        await frames.publish(b"tick-1")
        reader = BusReader(redis_server.url, KEYS, cursor=0, epoch=epoch)
        stream = reader.events()
        assert isinstance(stream, AsyncGenerator)  # closed with aclose() below
        first = await next_of(stream, Frames)
        assert first.frames[-1][1] == b"tick-1"
        got, _ = await alarms_through(stream, 10)

        redis_server.pause()
        stale = await next_of(stream, Status)
        assert stale.state == "stale"
        redis_server.resume()
        if not await lease.renew():  # paused past the TTL: take it again
            await wait_async(lease.try_acquire)
        commit(journal, 10)
        await outbox.flush()
        await frames.publish(b"tick-2")
        live = await next_of(stream, Status)
        assert live.state == "live"
        more, events = await alarms_through(stream, 20)
        assert not [e for e in events if isinstance(e, Gap | EpochChanged)]
        assert got + more == list(range(1, 21))
        assert reader.reconnects >= 2
        await stream.aclose()
        await redis.aclose()

    asyncio.run(main())
