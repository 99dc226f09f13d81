"""A standby mirrors the alarm stream into its own journal under the same ids and, on
takeover, catches up and continues the ids (real redis-server, real SQLite journals)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from scada.bus.keys import event_id
from scada.bus.lease import Lease
from scada.roles.ingest.alarmoutbox import JournalBehind, Outbox
from scada.roles.ingest.mirror import Mirror, MirrorHole
from tests.integration.cluster_redis import RedisServer, redis_server
from tests.integration.test_cluster_bus import JOURNAL_EPOCH, KEYS, commit, make_journal, publishing

redis_server = redis_server  # the fixture, shared by the cluster tests


def test_standby_mirrors_with_the_same_ids_and_continues_them_after_takeover(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    active_journal = make_journal(tmp_path / "a.db")
    standby_journal = make_journal(tmp_path / "b.db")

    async def main() -> None:
        redis, active, outbox, _ = await publishing(redis_server.url, active_journal)
        commit(active_journal, 100)
        await outbox.flush()

        mirror = Mirror(standby_journal, KEYS)
        mirroring = asyncio.create_task(mirror.run(redis_server.url))
        while standby_journal.newest_id() < 100:
            await asyncio.sleep(0.05)
        records = [ev.to_record() for ev in active_journal.since(0) or []]
        assert [ev.to_record() for ev in standby_journal.since(0) or []] == records
        # What an occurrence was raised at is in the mirrored snapshot: a console of the
        # standby after a failover shows it, not a later event's value (issue 21 #1).
        assert {r["raised_value"] for r in records} == {2.1}

        # The standby stops reading; the active node publishes 20 more and dies.
        mirroring.cancel()
        commit(active_journal, 20)
        await outbox.flush()
        await active.release()

        standby = Lease(redis, KEYS, "ingest-b", ttl=60.0)  # held without renewals
        assert await standby.try_acquire()
        with pytest.raises(JournalBehind):  # publishing now would reuse ids 101..120
            await Outbox(redis, KEYS, standby, standby_journal, JOURNAL_EPOCH).start()
        assert await mirror.catch_up(redis) == 20
        takeover = Outbox(redis, KEYS, standby, standby_journal, JOURNAL_EPOCH)
        await takeover.start()
        assert takeover.published_through == 120
        assert commit(standby_journal, 5) == [121, 122, 123, 124, 125]
        assert await takeover.flush() == 5

        entries: Any = await redis.xrange(KEYS.alarms)
        ids = [event_id(entry) for entry, _ in entries]
        assert ids == list(range(1, 126))
        assert mirror.fit and mirror.mirrored == 120
        await redis.aclose()

    asyncio.run(main())


def test_a_standby_whose_journal_the_trimmed_stream_cannot_complete_is_unfit(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    active_journal = make_journal(tmp_path / "a.db")
    standby_journal = make_journal(tmp_path / "b.db")

    async def main() -> None:
        redis, _, outbox, _ = await publishing(redis_server.url, active_journal)
        commit(active_journal, 50)
        await outbox.flush()
        await redis.xtrim(KEYS.alarms, maxlen=10, approximate=False)

        mirror = Mirror(standby_journal, KEYS)
        with pytest.raises(MirrorHole):
            await mirror.catch_up(redis)
        assert not mirror.fit
        assert standby_journal.newest_id() == 0  # nothing journaled under the wrong ids
        await redis.aclose()

    asyncio.run(main())
