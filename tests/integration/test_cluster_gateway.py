"""Gateways' bus feeds against a real redis-server and a real active ingest node: the same
contiguous alarm ids and every frame on each gateway, resume on another gateway, a new
epoch after Redis lost its data, stale while the bus hangs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scada.bus.redisbus import RedisBus
from scada.roles.gateway.feed import FeedListener, GatewayFeed
from scada.roles.ingest.node import IngestNode
from tests.conftest import scaled
from tests.integration.cluster_redis import RedisServer, redis_server
from tests.integration.test_cluster_bus import KEYS, make_journal
from tests.integration.test_cluster_node import active_node, produce, until

redis_server = redis_server  # the fixture, shared by the cluster tests


class Screen(FeedListener):
    """What a gateway's hub would be told."""

    def __init__(self) -> None:
        self.resets: list[tuple[str, int, str]] = []
        self.alarm_ids: list[int] = []
        self.frames: list[bytes] = []
        self.statuses: list[bool] = []

    def reset(self, epoch: str, cursor: int, reason: str) -> None:
        self.resets.append((epoch, cursor, reason))

    def alarms(self, entries: list[tuple[int, bytes]]) -> None:
        self.alarm_ids += [i for i, _ in entries]

    def frame(self, payload: bytes) -> None:
        self.frames.append(payload)

    def status(self, live: bool, reason: str) -> None:
        self.statuses.append(live)


async def heartbeat(node: IngestNode) -> None:
    """Frames at the tick rate, as a live active node publishes them: without them the readers
    go stale after 2 s, reconnect, and (by design) go on from the newest frame, skipping any
    published during the reconnect."""
    while True:
        await node.publish_frame(BEAT)
        await asyncio.sleep(0.1)


BEAT = b"beat"


async def ticks(node: IngestNode, count: int) -> int:
    """Publish `count` frames (as fast as a burst of ticks); returns how many went out."""
    sent = 0
    for n in range(count):
        sent += await node.publish_frame(f"tick {n}".encode())
        await asyncio.sleep(0.01)
    return sent


def test_three_gateways_get_the_same_alarms_and_frames_and_resume_on_each_other(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journal = make_journal(tmp_path / "a.db")

    async def main() -> None:
        node, node_task = await active_node(redis_server.url, journal)
        beating = asyncio.create_task(heartbeat(node))
        await produce(node, journal, 20, "before")  # what the gateways find in the state hash
        await until(lambda: node.outbox.published_through == 20)
        screens = [Screen() for _ in range(3)]
        # A deadline stretched like every test deadline: this test is about delivery, and a
        # stall of the loaded box past 2 s would make the readers skip to the newest frame.
        feeds = [
            GatewayFeed(RedisBus(redis_server.url, KEYS), s, read_deadline=scaled(2.0))
            for s in screens
        ]
        tasks = [asyncio.create_task(f.run()) for f in feeds]
        await until(lambda: all(s.resets for s in screens))
        epoch = screens[0].resets[0][0]
        assert [s.resets for s in screens] == [[(epoch, 20, "start")]] * 3
        assert all(len(f.snapshot().alarms) == 20 for f in feeds)
        # Following, not only bootstrapped: a reader's first connect delivers the newest frame
        # and goes on from it, so a tick published before that connect would not be "missed".
        await until(lambda: all(BEAT in s.frames for s in screens))

        assert await ticks(node, 30) == 30
        await produce(node, journal, 200, "burst")
        await until(lambda: all(s.alarm_ids[-1:] == [220] for s in screens))
        sent = [f"tick {n}".encode() for n in range(30)]
        await until(lambda: all(sent[-1] in s.frames for s in screens))
        for screen in screens:
            assert screen.alarm_ids == list(range(21, 221))  # 0 missing, 0 duplicated
            assert [f for f in screen.frames if f != BEAT] == sent  # every frame, in order

        # A client of gateway 0 saw up to 150; gateway 0 dies; it resumes on gateway 2.
        missed = feeds[2].ring.since(epoch, 150)
        assert missed is not None and [i for i, _ in missed] == list(range(151, 221))
        assert feeds[2].ring.since("another-epoch", 150) is None
        assert feeds[2].snapshot().cursor == 220

        for task in [*tasks, beating, node_task]:
            task.cancel()
        await asyncio.gather(*tasks, beating, node_task, return_exceptions=True)

    asyncio.run(main())


def test_gateways_see_a_new_epoch_after_redis_lost_its_data_and_stale_while_it_hangs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    journal = make_journal(tmp_path / "a.db")

    async def main() -> None:
        node, node_task = await active_node(redis_server.url, journal)
        await produce(node, journal, 5, "first")
        screen = Screen()
        feed = GatewayFeed(RedisBus(redis_server.url, KEYS), screen)
        feed_task = asyncio.create_task(feed.run())
        pulse = asyncio.create_task(ticks(node, 10_000))
        await until(lambda: bool(screen.resets and screen.frames))
        old_epoch = screen.resets[0][0]
        redis_server.pause()  # hangs: connections stay open, nothing answers
        await until(lambda: screen.statuses[-1:] == [False])
        redis_server.resume()
        await until(lambda: screen.statuses[-1:] == [True])

        redis_server.restart()  # kill -9, no persistence: comes back empty
        await until(lambda: len(screen.resets) == 2, timeout=20)
        new_epoch, cursor, _ = screen.resets[1]
        assert new_epoch != old_epoch and cursor == 5
        assert feed.ring.since(old_epoch, 5) is None  # recovered: false for old cursors
        await produce(node, journal, 3, "after")
        await until(lambda: screen.alarm_ids[-1:] == [8])
        assert feed.ring.since(new_epoch, 5) is not None
        pulse.cancel()
        for task in (feed_task, node_task, pulse):
            task.cancel()
        await asyncio.gather(feed_task, node_task, pulse, return_exceptions=True)

    asyncio.run(main())
