"""Two ingest nodes on a real redis-server: one active, one mirroring; the standby takes over,
restores from its journal and continues the ids; a node that journaled an event nobody saw moves
it to pending, follows the stream, and the event reaches the record late (a new id, marked
late); one whose journal shares nothing with the stream is unfit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scada.alarms.journal import Journal
from scada.bus.commandstream import Command
from scada.bus.keys import event_id
from scada.roles.ingest.alarmoutbox import decode_event
from scada.roles.ingest.node import IngestNode
from tests.conftest import scaled
from tests.integration.cluster_node import alarm_event
from tests.integration.cluster_redis import RedisServer, connect, redis_server
from tests.integration.test_cluster_bus import JOURNAL_EPOCH, KEYS, make_journal

redis_server = redis_server  # the fixture, shared by the cluster tests


class Plant:
    """The ingest process around a node: counts what the node asks of it."""

    def __init__(self) -> None:
        self.activations = 0
        self.stand_bys = 0

    async def activate(self) -> None:
        self.activations += 1

    async def stand_by(self) -> None:
        self.stand_bys += 1


async def no_command(command: Command) -> dict[str, Any]:
    raise AssertionError(f"no commands in this test: {command}")


def start(
    url: str, name: str, journal: Journal, plant: Plant
) -> tuple[IngestNode, asyncio.Task[None]]:
    node = IngestNode(
        url,
        KEYS,
        name,
        journal,
        JOURNAL_EPOCH,
        plant,
        apply_command=no_command,
        lookup_command=lambda _: None,
    )
    return node, asyncio.create_task(node.run())


async def active_node(url: str, journal: Journal) -> tuple[IngestNode, asyncio.Task[None]]:
    """The first node on a Redis: it takes the lease and becomes active."""
    node, task = start(url, "ingest-a", journal, Plant())
    await until(lambda: node.state == "active")
    return node, task


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll until `predicate` holds, within `timeout` stretched like every test deadline."""
    timeout = scaled(timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if await value if isinstance(value, Awaitable) else value:
            return
        assert loop.time() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.05)


def records(journal: Journal) -> list[dict[str, Any]]:
    return [ev.to_record() for ev in journal.since(0) or []]


async def produce(node: IngestNode, journal: Journal, count: int, author: str) -> list[int]:
    """What the active process does for each alarm event: fence, journal (on a worker
    thread, as the alarm service commits), poke the outbox."""
    ids = []
    for i in range(count):
        node.fence()
        stored = await asyncio.to_thread(journal.append, [alarm_event(i, author)])
        ids += [ev.event_id or 0 for ev in stored]
        node.committed()
    return ids


def test_standby_takes_over_continues_the_ids_and_a_diverged_node_follows_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journals = {name: make_journal(tmp_path / f"{name}.db") for name in "abc"}
    plants = {name: Plant() for name in "abc"}
    url = redis_server.url

    async def main() -> None:
        redis = connect(url)
        a, a_task = start(url, "ingest-a", journals["a"], plants["a"])
        await until(lambda: a.state == "active")
        b, b_task = start(url, "ingest-b", journals["b"], plants["b"])
        await until(lambda: b.state == "standby")

        assert await produce(a, journals["a"], 50, "a") == list(range(1, 51))
        await until(lambda: journals["b"].newest_id() == 50)  # mirrored, same ids

        a_task.cancel()  # A stops ...
        await asyncio.gather(a_task, return_exceptions=True)
        journals["a"].append([alarm_event(99, "stray")])  # ... after a write nobody saw (51)

        await until(lambda: b.state == "active")
        assert plants["b"].activations == 1
        assert await produce(b, journals["b"], 10, "b") == list(range(51, 61))

        async def stream_at_60() -> bool:
            entries: Any = await redis.xrange(KEYS.alarms)
            return [event_id(e) for e, _ in entries] == list(range(1, 61))

        await until(stream_at_60)

        a, a_task = start(url, "ingest-a", journals["a"], plants["a"])
        # Its 51 is not the record's: moved to pending, forwarded, journaled late by B as 61.
        await until(lambda: journals["a"].newest_id() == 61 and not journals["a"].pending())
        assert a.state == "standby"
        assert records(journals["a"]) == records(journals["b"])
        (late,) = [ev for ev in journals["b"].since(0) or [] if ev.late]
        assert (late.event_id, late.message, late.occurrence_id) == (61, "stray", 99)

        d_journal = make_journal(tmp_path / "d.db")
        d_journal.append([alarm_event(n, "elsewhere") for n in range(70)])
        d, d_task = start(url, "ingest-d", d_journal, Plant())
        await until(lambda: d.state == "unfit")
        assert d.unfit_reason == "journal and alarm stream share no event in ids 1..61"

        c, c_task = start(url, "ingest-c", journals["c"], plants["c"])
        await until(lambda: journals["c"].newest_id() == 61)
        assert c.state == "standby"
        assert records(journals["c"]) == records(journals["b"])
        entries: Any = await redis.xrange(KEYS.alarms)
        authors = [decode_event(f[b"e"]).message for _, f in entries]
        assert authors == ["a"] * 50 + ["b"] * 10 + ["stray"]
        for task in (a_task, b_task, c_task, d_task):
            task.cancel()
        await asyncio.gather(a_task, b_task, c_task, d_task, return_exceptions=True)
        await redis.aclose()

    asyncio.run(main())
