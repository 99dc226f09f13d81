"""The active/standby lease against a real redis-server, with real node processes.

A node is `tests/integration/cluster_node.py` in a subprocess (its own journal, lease loop,
outbox and frames); the test kills it (-9) or stops it (SIGSTOP) like an operator or a hung VM
would, and watches Redis and the node's output.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scada.bus.framestream import FramePublisher
from scada.bus.keys import BusKeys, event_id
from scada.bus.lease import Lease, LeaseLost
from scada.bus.publish import Fenced, FencedPublisher
from scada.roles.ingest.alarmoutbox import decode_event
from tests.conftest import ROOT, eventually
from tests.integration.cluster_redis import RedisServer, connect, redis_server

KEYS = BusKeys("test")
redis_server = redis_server  # the fixture, shared by the cluster tests


class Node:
    """cluster_node.py in a subprocess; its output lines are collected in a file."""

    def __init__(self, redis: RedisServer, name: str, workdir: Path) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.out"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.cluster_node",
                redis.url,
                name,
                str(workdir / f"{name}.db"),
            ],
            cwd=ROOT,
            stdout=self.out_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    def lines(self) -> list[str]:
        return self.out_path.read_text().splitlines()

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines() if line.startswith(prefix))

    def token(self) -> int:
        return int(next(line for line in self.lines() if line.startswith("held ")).split()[1])

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def test_standby_takes_over_after_the_holders_death_with_a_higher_token(
    redis_server: RedisServer, tmp_path: Path, nodes: list[Node]
) -> None:
    nodes.append(active := Node(redis_server, "node-a", tmp_path))
    eventually(lambda: active.count("published") >= 3, timeout=20)

    async def main() -> float:
        redis = connect(redis_server.url)
        standby = Lease(redis, KEYS, "node-b")
        for _ in range(3):  # the holder is alive and renewing: the lease is not free
            assert not await standby.try_acquire()
        assert not standby.held()
        took: list[float] = []
        task = asyncio.create_task(lease_loop(standby, took))
        killed_at = time.monotonic()
        active.proc.kill()  # kill -9: no release, the lease must expire
        while not took:
            await asyncio.sleep(0.02)
        assert standby.token is not None and standby.token > active.token()
        task.cancel()
        await redis.aclose()
        return took[0] - killed_at

    # How fast is measured by the chaos suite (docs/cluster.md), never asserted here.
    takeover = asyncio.run(main())
    print(f"takeover {takeover:.2f} s after kill -9")


async def lease_loop(lease: Lease, took: list[float]) -> None:
    await lease.run(lambda held: took.append(time.monotonic()) if held else None)


def test_redis_refuses_a_stale_leaders_publish_even_if_it_skips_its_local_check(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        redis = connect(redis_server.url)
        old = Lease(redis, KEYS, "node-a", ttl=1.0, renew_every=0.2, retry_every=0.1, safety=0.2)
        assert await old.try_acquire()
        stale_value = old.fence()
        new = Lease(redis, KEYS, "node-b", ttl=1.0, renew_every=0.2, retry_every=0.1, safety=0.2)
        while not await new.try_acquire():  # the old leader stops renewing
            await asyncio.sleep(0.05)
        assert new.token is not None and old.token is not None and new.token > old.token
        with pytest.raises(LeaseLost):
            old.fence()  # the local guard: expired
        publisher = FencedPublisher(redis, KEYS)
        with pytest.raises(Fenced):  # the Redis guard, for a node past its local check
            await publisher.publish(KEYS.frames, stale_value, [("*", b"stale")])
        assert not await old.renew()
        await FramePublisher(redis, KEYS, new).publish(b"fresh")
        published: Any = await redis.xrange(KEYS.frames)
        assert [f[b"e"] for _, f in published] == [b"fresh"]
        await redis.aclose()

    asyncio.run(main())


def test_a_paused_old_leader_that_wakes_up_publishes_nothing(
    redis_server: RedisServer, tmp_path: Path, nodes: list[Node]
) -> None:
    nodes.append(old := Node(redis_server, "node-a", tmp_path))
    eventually(lambda: old.count("published") >= 5, timeout=20)
    old.signal(signal.SIGSTOP)

    async def main() -> None:
        redis = connect(redis_server.url)
        new = Lease(redis, KEYS, "node-b")
        while not await new.try_acquire():
            await asyncio.sleep(0.1)
        # The new leader publishes (it would have mirrored the alarm stream into its journal
        # first; here it appends one entry above the top by hand).
        newest: Any = await redis.xrevrange(KEYS.alarms, count=1)
        top = event_id(newest[0][0])
        publisher = FencedPublisher(redis, KEYS)
        raw_epoch: Any = await redis.get(KEYS.epoch)
        epoch = raw_epoch.decode()
        await publisher.publish(KEYS.alarms, new.fence(), [(f"{top + 1}-0", b"{}")], epoch=epoch)
        await FramePublisher(redis, KEYS, new).publish(b"node-b")
        frames_before = await redis.xlen(KEYS.frames)

        old.signal(signal.SIGCONT)
        refused_before = old.count("journal refused") + old.count("publish refused")
        # The old leader keeps trying while the new one holds the lease (renewed here).
        deadline = time.monotonic() + 20
        while old.count("journal refused") + old.count("publish refused") < refused_before + 5:
            assert time.monotonic() < deadline, old.lines()[-5:]
            await new.renew()
            await asyncio.sleep(0.1)
        assert "lost" in old.lines()

        alarms: Any = await redis.xrange(KEYS.alarms)
        assert event_id(alarms[-1][0]) == top + 1  # nothing after the new leader's entry
        authors = {decode_event(f[b"e"]).message.split("/")[0] for _, f in alarms[:-1]}
        assert authors == {"node-a"}
        frames: Any = await redis.xrange(KEYS.frames)
        assert len(frames) == frames_before and frames[-1][1][b"e"] == b"node-b"
        await redis.aclose()

    asyncio.run(main())
    # The woken node journaled at most the one event it had passed its check for before it was
    # stopped (a local journal cannot check Redis atomically; that event never left the node);
    # every later attempt was refused.
    last_published = max(int(x.split()[1]) for x in old.lines() if x.startswith("published"))
    with sqlite3.connect(tmp_path / "node-a.db") as db:
        journaled = db.execute("SELECT max(id) FROM events").fetchone()[0]
    assert journaled <= last_published + 1
    print(
        f"old leader after waking: {old.count('journal refused')} journal writes refused, "
        f"{old.count('publish refused')} publishes refused"
    )
