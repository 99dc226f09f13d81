"""Commands from a gateway to the active ingest node over a real redis-server: a retry and a
redelivery after the consumer died are applied once.

The ingest side applies an ack into a real SQLite database, recording the request id in the
same transaction (scada.alarms.ledger), as the journal will.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from scada.alarms import ledger
from scada.bus.commandstream import GROUP, Command, CommandConsumer, CommandSender
from scada.bus.keys import BusKeys
from scada.bus.lease import Lease
from tests.integration.cluster_redis import RedisServer, connect, redis_server

KEYS = BusKeys("test")
redis_server = redis_server  # the fixture, shared by the cluster tests
ACK = {"alarm": "line1.diameter.hi", "user": "operator1", "comment": "seen"}


class AckJournal:
    """Acks of alarms in SQLite; each applied command's request id in the same commit."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        self.db.executescript(
            "CREATE TABLE acks (id INTEGER PRIMARY KEY AUTOINCREMENT, alarm TEXT, user TEXT);"
        )
        ledger.create(self.db)

    def apply_sync(self, command: Command) -> dict[str, Any]:
        with self.lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                done = cur.execute(
                    "SELECT 1 FROM acks WHERE alarm = ?", (command.body["alarm"],)
                ).fetchone()
                if done:
                    result = {"ok": False, "error": "already_acknowledged"}
                else:
                    cur.execute(
                        "INSERT INTO acks(alarm, user) VALUES (?, ?)",
                        (command.body["alarm"], command.body["user"]),
                    )
                    result = {"ok": True}
                ledger.record(cur, command.request_id, result, time.time())
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return result

    async def apply(self, command: Command) -> dict[str, Any]:
        return await asyncio.to_thread(self.apply_sync, command)

    def lookup(self, request_id: str) -> dict[str, Any] | None:
        with self.lock:
            return ledger.result(self.db, request_id)

    def acks(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT count(*) FROM acks").fetchone()[0])


def consumer_for(lease: Lease, journal: AckJournal, claim_idle: float = 5.0) -> CommandConsumer:
    return CommandConsumer(
        lease.redis,
        KEYS,
        lease,
        apply=journal.apply,
        lookup=journal.lookup,
        claim_idle=claim_idle,
    )


def test_a_retried_command_is_applied_once(redis_server: RedisServer, tmp_path: Path) -> None:
    journal = AckJournal(tmp_path / "journal.db")

    async def main() -> None:
        redis = connect(redis_server.url)
        lease = Lease(redis, KEYS, "ingest-a")
        assert await lease.try_acquire()
        consumer = consumer_for(lease, journal)
        task = asyncio.create_task(consumer.run())
        gateway = CommandSender(connect(redis_server.url), KEYS, "gateway-b")

        first = await gateway.request("ack", ACK, request_id="req-1")
        assert first.result == {"ok": True} and not first.duplicate
        retry = await gateway.request("ack", ACK, request_id="req-1")
        assert retry.result == {"ok": True} and retry.duplicate
        other = await gateway.request("ack", ACK)  # a new request for the same alarm
        assert other.result == {"ok": False, "error": "already_acknowledged"}

        assert journal.acks() == 1
        assert (consumer.applied, consumer.duplicates) == (2, 1)
        assert (await redis.xpending(KEYS.commands("gateway-b"), GROUP))["pending"] == 0
        task.cancel()
        await gateway.redis.aclose()
        await redis.aclose()

    asyncio.run(main())


def test_a_command_left_unacknowledged_by_a_dead_consumer_is_not_applied_twice(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journal = AckJournal(tmp_path / "journal.db")

    async def main() -> None:
        redis = connect(redis_server.url)
        gateway = CommandSender(connect(redis_server.url), KEYS, "gateway-b")
        old_lease = Lease(redis, KEYS, "ingest-a")
        assert await old_lease.try_acquire()
        old = consumer_for(old_lease, journal)
        await old.ensure_group()
        waiting = asyncio.create_task(gateway.request("ack", ACK, request_id="req-7", timeout=20))
        fetched: list[Command] = []
        while not fetched:
            fetched = await old.fetch(block=0.2)
        await journal.apply(fetched[0])  # committed; the node dies before reply and XACK
        await old_lease.release()
        assert (await redis.xpending(KEYS.commands("gateway-b"), GROUP))["pending"] == 1

        new_lease = Lease(redis, KEYS, "ingest-b")
        assert await new_lease.try_acquire()
        new = consumer_for(new_lease, journal, claim_idle=0.2)
        task = asyncio.create_task(new.run())
        reply = await waiting
        assert reply.result == {"ok": True} and reply.duplicate
        assert journal.acks() == 1
        assert (new.applied, new.duplicates) == (0, 1)
        assert (await redis.xpending(KEYS.commands("gateway-b"), GROUP))["pending"] == 0
        task.cancel()
        await gateway.redis.aclose()
        await redis.aclose()

    asyncio.run(main())


def test_each_gateway_has_its_stream_and_one_lost_with_its_group_is_taken_in_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two gateways' streams are read by one consumer, each answered on its own reply stream
    (the reply goes by the stream, not by the `g` an entry claims); a stream deleted under
    the consumer (its group with it, as when Redis loses its data) and made again by its
    gateway's next command is found and read from its start; an entry that is no command is
    dropped without stopping the rest."""
    journal = AckJournal(tmp_path / "journal.db")

    async def main() -> None:
        redis = connect(redis_server.url)
        lease = Lease(redis, KEYS, "ingest-a", ttl=3600.0)  # never renewed in the test
        assert await lease.try_acquire()
        consumer = consumer_for(lease, journal)
        task = asyncio.create_task(consumer.run())
        a = CommandSender(connect(redis_server.url), KEYS, "gateway-a")
        b = CommandSender(connect(redis_server.url), KEYS, "gateway-b")
        try:
            first = await a.request("ack", {**ACK, "alarm": "a1"}, "ra-1", timeout=20)
            second = await b.request("ack", {**ACK, "alarm": "b1"}, "rb-1", timeout=20)
            assert first.result == second.result == {"ok": True}
            assert consumer.streams == {KEYS.commands("gateway-a"), KEYS.commands("gateway-b")}
            # An entry on a's stream that names b: answered on a's replies.
            await redis.xadd(
                KEYS.commands("gateway-a"),
                {"r": "ra-2", "k": "ack", "g": "gateway-b", "b": b'{"alarm": "a2", "user": "x"}'},
            )
            assert (await asyncio.wait_for(a.reply("ra-2"), 20)).result == {"ok": True}
            # Not a command: dropped, the next one is applied.
            await redis.xadd(KEYS.commands("gateway-b"), {"k": "probe"})
            await redis.delete(KEYS.commands("gateway-a"))  # the stream and its group
            third = await a.request("ack", {**ACK, "alarm": "a3"}, "ra-3", timeout=20)
            assert third.result == {"ok": True}
            fourth = await b.request("ack", {**ACK, "alarm": "b4"}, "rb-4", timeout=20)
            assert fourth.result == {"ok": True}
            assert journal.acks() == 5 and consumer.malformed == 1
        finally:
            task.cancel()
            await a.redis.aclose()
            await b.redis.aclose()
            await redis.aclose()

    asyncio.run(main())
