"""Takeovers always finish (real redis-server, in-process ingest nodes): a node that holds the
lease but is not serving within its activation deadline gives the lease up, says why in one
log line and tries again; one stuck while standing down reports it (`stuck()`, /health 503);
the standby's frame follower stops within its limit even when its loop ignores cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from scada.bus.keys import BusKeys
from scada.core.tags import TagSchema
from scada.roles.ingest.follow import FrameFollower
from scada.roles.ingest.node import IngestNode, Role
from tests.integration.cluster_redis import RedisServer, connect, redis_server
from tests.integration.test_cluster_bus import JOURNAL_EPOCH, KEYS, make_journal
from tests.integration.test_cluster_node import no_command, until

redis_server = redis_server  # the fixture, shared by the cluster tests


class SlowPlant:
    """An ingest process whose activation (or standing down) waits until the test lets it."""

    def __init__(self, *, hang_activate: bool = False, hang_stand_by: bool = False) -> None:
        self.activate_may_finish = asyncio.Event()
        self.stand_by_may_finish = asyncio.Event()
        if not hang_activate:
            self.activate_may_finish.set()
        if not hang_stand_by:
            self.stand_by_may_finish.set()
        self.activations = 0
        self.stand_bys = 0

    async def activate(self) -> None:
        await self.activate_may_finish.wait()
        self.activations += 1

    async def stand_by(self) -> None:
        self.stand_bys += 1
        await self.stand_by_may_finish.wait()


def node(url: str, tmp_path: Path, plant: SlowPlant) -> IngestNode:
    return IngestNode(
        url,
        KEYS,
        "ingest-a",
        make_journal(tmp_path / "a.db"),
        JOURNAL_EPOCH,
        plant,
        apply_command=no_command,
        lookup_command=lambda _: None,
        activation_deadline=1.0,
    )


def test_a_takeover_that_is_not_serving_in_time_gives_the_lease_up_and_tries_again(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    plant = SlowPlant(hang_activate=True)

    async def main() -> None:
        a = node(redis_server.url, tmp_path, plant)
        task = asyncio.create_task(a.run())
        await until(lambda: a.activations_abandoned >= 1)
        await until(lambda: plant.stand_bys >= 1)  # what the activation started was undone
        plant.activate_may_finish.set()  # the next try can finish
        await until(lambda: a.state is Role.ACTIVE)
        assert plant.activations == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    given_up = [r.getMessage() for r in caplog.records if "gives the lease up" in r.getMessage()]
    assert given_up and "activation deadline" in given_up[0]


def test_a_node_stuck_standing_down_says_so(redis_server: RedisServer, tmp_path: Path) -> None:
    plant = SlowPlant(hang_stand_by=True)

    async def main() -> None:
        a = node(redis_server.url, tmp_path, plant)
        task = asyncio.create_task(a.run())
        await until(lambda: a.state is Role.ACTIVE)
        assert a.stuck() is None
        redis = connect(redis_server.url)
        await redis.delete(KEYS.lease)  # the lease is gone (as after an expiry)
        await redis.aclose()
        await until(lambda: a.state is Role.DEPOSING)
        await until(lambda: a.stuck() is not None)  # past the deadline: /health answers 503
        assert str(a.stuck()).startswith("deposing for")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


class StubbornFollower(FrameFollower):
    """A follower whose loop swallows its first cancellation (the bug a stop must survive)."""

    async def run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: the loop goes on
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)  # the next cancellation (asyncio.run's cleanup) ends it


def test_the_follower_stops_within_its_limit_and_records_nothing_after(
    redis_server: RedisServer,
) -> None:
    recorded: list[float] = []

    async def main() -> None:
        follower = StubbornFollower(
            redis_server.url,
            BusKeys("t"),
            TagSchema([]),
            lambda t, _v, _q: recorded.append(t),
            resolution_ms=100,
            last_recorded=lambda: None,
        )
        follower.start()
        await asyncio.sleep(0)  # one turn of the loop: the task runs up to its first await
        await asyncio.wait_for(follower.stop(limit=0.5), timeout=10)
        assert not follower.take(b'{"ts": "2026-01-01T00:00:00.000Z", "lines": [], "full": true}')
        assert recorded == []

    asyncio.run(main())
