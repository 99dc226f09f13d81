"""The in-memory bus has the Redis bus's semantics (scada.bus.interface): journal ids,
idempotent republish, fencing, the epoch on every entry, a gap for a cursor that fell off the
trimmed stream, bounded frames, stale and live on the follower's own deadline, commands
answered once (a retry gets the stored answer), tokens that only go up. And the gateway's
feed runs on it exactly as on Redis."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from scada.bus.commandstream import Command
from scada.bus.events import AlarmEntries, BusEvent, EpochChanged, Frames, Gap, Status
from scada.bus.lease import LeaseLost
from scada.bus.membus import MemoryBus
from scada.bus.publish import EpochChanged as EpochRefused
from scada.bus.publish import Fenced
from scada.bus.ring import AlarmRing
from scada.core.alarmevent import AlarmEvent
from scada.core.config import config_from_dict, default_config_text
from scada.roles.gateway.bussource import BusSource
from scada.roles.gateway.feed import FeedListener, GatewayFeed


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(n: int) -> bytes:
    """A journal record of event n (of alarm a0, a1 or a2)."""
    event = AlarmEvent(
        event_id=n, occurrence_id=n, alarm=f"a{n % 3}", production_line_id="1", tag="diameter",
        condition="hi", severity="high", event="raised", state="unacked_active",
        message="diameter high", value=2.1, limit=2.0, at=1.0e9 + n,
    )  # fmt: skip
    return orjson.dumps(event.to_record())


async def active(bus: MemoryBus, journal: str = "J1") -> tuple[str, str]:
    lease = bus.lease("ingest-a")
    assert await lease.try_acquire()
    epoch, minted = await bus.ensure_epoch(lease.fence(), journal)
    assert minted
    return lease.fence(), epoch


async def publish(bus: MemoryBus, fence: str, epoch: str, ids: range, maxlen: int = 0) -> None:
    entries = [(i, record(i), f"a{i % 3}") for i in ids]
    await bus.publish_alarms(fence, epoch, entries, maxlen=maxlen)


async def take(events: AsyncIterator[BusEvent], count: int) -> list[BusEvent]:
    out: list[BusEvent] = []
    while len(out) < count:
        out.append(await asyncio.wait_for(anext(events), 5))
    return out


def test_ids_are_journal_ids_republish_is_idempotent_and_the_state_follows() -> None:
    async def main() -> None:
        bus = MemoryBus()
        fence, epoch = await active(bus)
        assert epoch.startswith("J1/")
        result = await bus.publish_alarms(fence, epoch, [(1, record(1), "a1"), (2, record(2), "")])
        assert (result.added, result.already_published, result.last_id) == (2, 0, "2-0")
        again = await bus.publish_alarms(fence, epoch, [(2, record(2), ""), (3, record(3), "a0")])
        assert (again.added, again.already_published, again.last_id) == (1, 1, "3-0")
        start = await bus.start(history=10, timeout=1)
        assert start is not None
        assert (start.epoch, start.cursor) == (epoch, 3)
        assert start.state == {"a1": record(1), "a0": record(3)}
        assert start.history == [(1, record(1)), (2, record(2)), (3, record(3))]

    asyncio.run(main())


def test_a_publish_needs_the_lease_and_the_current_epoch() -> None:
    async def main() -> None:
        clock = FakeClock()
        bus = MemoryBus(clock=clock)
        fence, epoch = await active(bus)
        with pytest.raises(Fenced):
            await bus.publish_alarms("9:other", epoch, [(1, record(1), "")])
        with pytest.raises(EpochRefused):
            await bus.publish_alarms(fence, "J1/old", [(1, record(1), "")])
        with pytest.raises(Fenced):
            await bus.publish_frame("9:other", b"f")
        clock.now += 10  # the lease's TTL ran out: nobody holds it
        with pytest.raises(Fenced):
            await bus.publish_frame(fence, b"f")
        assert bus.alarms == [] and not bus.frames

    asyncio.run(main())


def test_tokens_only_go_up_and_a_lapsed_holder_cannot_fence() -> None:
    async def main() -> None:
        clock = FakeClock()
        bus = MemoryBus(clock=clock)
        a, b = bus.lease("a", ttl=3.0), bus.lease("b", ttl=3.0)
        assert await a.try_acquire() and not await b.try_acquire()
        assert await b.holder() == (1, "a")
        clock.now += 2.6  # past ttl - safety: a no longer trusts its lease
        assert not a.held()
        with pytest.raises(LeaseLost):
            a.fence()
        clock.now += 0.5
        assert await b.try_acquire() and b.token == 2
        assert not await a.renew()
        await b.release()
        assert await bus.lease("c", token_floor=7).try_acquire()
        assert await a.holder() == (8, "c")

    asyncio.run(main())


def test_a_follower_sees_entries_then_a_gap_past_the_trimmed_stream() -> None:
    async def main() -> None:
        bus = MemoryBus()
        fence, epoch = await active(bus)
        await publish(bus, fence, epoch, range(1, 6))
        events = bus.follow(cursor=2, epoch=epoch, frames=False).events()
        assert await take(events, 1) == [AlarmEntries([(i, record(i)) for i in (3, 4, 5)])]
        await publish(bus, fence, epoch, range(6, 51), maxlen=10)  # trims to about 10
        late = bus.follow(cursor=5, epoch=epoch, frames=False).events()
        first, entries = await take(late, 2)
        assert isinstance(first, Gap) and first.after == 5 and first.first > 6
        assert isinstance(entries, AlarmEntries) and entries.entries[-1][0] == 50
        assert len(bus.alarms) <= 11

    asyncio.run(main())


def test_frames_are_bounded_and_a_follower_starts_at_the_newest() -> None:
    async def main() -> None:
        bus = MemoryBus()
        fence, _ = await active(bus)
        for n in range(20):
            await bus.publish_frame(fence, b"f%d" % n, maxlen=5)
        assert [p for _, p, _ in bus.frames] == [b"f%d" % n for n in range(15, 20)]
        events = bus.follow(cursor=None, epoch=None).events()
        assert await take(events, 1) == [Frames([("20-0", b"f19")])]
        await bus.publish_frame(fence, b"next", maxlen=5)
        assert await take(events, 1) == [Frames([("21-0", b"next")])]

    asyncio.run(main())


def test_a_new_epoch_reaches_the_follower_and_its_cursor_starts_over() -> None:
    async def main() -> None:
        bus = MemoryBus()
        fence, old = await active(bus, "J1")
        await publish(bus, fence, old, range(1, 4))
        events = bus.follow(cursor=3, epoch=old, frames=False).events()
        new, minted = await bus.ensure_epoch(fence, "J2")  # a new journal on the same bus
        assert minted and new != old and bus.alarms == []
        await publish(bus, fence, new, range(1, 6))
        changed, *rest = await take(events, 2)
        assert changed == EpochChanged(old, new)
        assert rest == [AlarmEntries([(i, record(i)) for i in range(1, 6)])]

    asyncio.run(main())


def test_a_bus_that_lost_its_data_is_a_changed_epoch_even_for_the_same_journal() -> None:
    async def main() -> None:
        bus = MemoryBus(plain_epoch=True)
        fence, epoch = await active(bus, "J1")
        assert epoch == "J1"  # plain: the journal's own epoch
        follower = bus.follow(cursor=0, epoch=epoch, read_deadline=0.3, block=0.1, frames=False)
        events = follower.events()
        await publish(bus, fence, epoch, range(1, 3))
        assert await take(events, 1) == [AlarmEntries([(1, record(1)), (2, record(2))])]
        bus.flush()
        got = await take(events, 2)  # silent past the deadline, then the epoch is gone
        assert got == [Status("stale", "no entries"), EpochChanged("J1", None)]
        lease = bus.lease("ingest-a")
        assert await lease.try_acquire()
        await bus.ensure_epoch(lease.fence(), "J1")
        assert await take(events, 1) == [EpochChanged(None, "J1")]
        await publish(bus, lease.fence(), "J1", range(1, 2))
        assert await take(events, 2) == [
            Status("live", "reading again"),
            AlarmEntries([(1, record(1))]),
        ]

    asyncio.run(main())


def test_commands_are_answered_once_and_a_retry_gets_the_stored_answer() -> None:
    async def main() -> None:
        clock = FakeClock()
        bus = MemoryBus(clock=clock)
        lease = bus.lease("ingest-a", ttl=1000.0)  # the clock jumps past claim_idle below
        assert await lease.try_acquire()
        ledger: dict[str, dict[str, Any]] = {}
        applied: list[Command] = []

        async def apply(command: Command) -> dict[str, Any]:
            applied.append(command)
            ledger[command.request_id] = {"events": [command.body["n"]]}
            return ledger[command.request_id]

        handler = bus.command_handler(lease, apply=apply, lookup=ledger.get, claim_idle=5.0)
        gateway = bus.commands("gw-1")
        other = bus.commands("gw-2")
        rid = await gateway.send("ack", {"n": 1})
        fetched = await handler.fetch(block=0.1)
        assert [c.request_id for c in fetched] == [rid]
        # Not acknowledged: delivered again once idle for claim_idle.
        assert await handler.fetch(block=0.05) == []
        clock.now += 5
        again = await handler.fetch(block=0.05)
        assert [c.request_id for c in again] == [rid]
        reply = await handler.handle(again[0])
        assert (reply.result, reply.duplicate) == ({"events": [1]}, False)
        await gateway.send("ack", {"n": 1}, request_id=rid)  # the gateway's retry
        retried = await handler.handle((await handler.fetch(block=0.1))[0])
        assert retried.duplicate and len(applied) == 1
        replies = await gateway.read_replies(block=0.1)
        assert [(r.request_id, r.duplicate) for r in replies] == [(rid, False), (rid, True)]
        assert await other.read_replies(block=0.05) == []  # each gateway reads its own
        clock.now += 100
        assert await handler.fetch(block=0.05) == []  # acknowledged: never again

    asyncio.run(main())


class Screen(FeedListener):
    def __init__(self) -> None:
        self.resets: list[tuple[str, int, str]] = []
        self.alarm_ids: list[int] = []
        self.frames: list[bytes] = []

    def reset(self, epoch: str, cursor: int, reason: str) -> None:
        self.resets.append((epoch, cursor, reason))

    def alarms(self, entries: list[tuple[int, bytes]]) -> None:
        self.alarm_ids += [i for i, _ in entries]

    def frame(self, payload: bytes) -> None:
        self.frames.append(payload)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


def test_the_gateway_feed_on_the_memory_bus_state_ring_frames_and_a_gap() -> None:
    async def main() -> None:
        bus = MemoryBus()
        fence, epoch = await active(bus)
        await publish(bus, fence, epoch, range(1, 21))
        screens = [Screen(), Screen()]
        feeds = [GatewayFeed(bus, s, ring_size=100) for s in screens]
        tasks = [asyncio.create_task(f.run()) for f in feeds]
        await until(lambda: all(s.resets for s in screens))
        assert [s.resets for s in screens] == [[(epoch, 20, "start")]] * 2
        assert all(f.ring.since(epoch, 0) is not None for f in feeds)  # history up to 20
        for n in range(5):
            await bus.publish_frame(fence, b"tick %d" % n)
        await publish(bus, fence, epoch, range(21, 121))
        await until(lambda: all(s.alarm_ids[-1:] == [120] for s in screens))
        await until(lambda: all(s.frames[-1:] == [b"tick 4"] for s in screens))
        for screen, feed in zip(screens, feeds, strict=True):
            assert screen.alarm_ids == list(range(21, 121))  # 0 missing, 0 duplicated
            assert {r["alarm"] for r in feed.snapshot().alarms} == {"a0", "a1", "a2"}
            missed = feed.ring.since(epoch, 100)
            assert missed is not None and [i for i, _ in missed] == list(range(101, 121))

        # A feed that falls behind a trimmed stream starts over from the state.
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        lagging = Screen()
        feed = GatewayFeed(bus, lagging, ring_size=100)
        feed.ring.reset(epoch, newest=120)
        events = bus.follow(cursor=120, epoch=epoch, frames=False)
        await publish(bus, fence, epoch, range(121, 300), maxlen=50)
        assert (await feed._follow(events)).startswith("gap after 120")
        assert lagging.alarm_ids == []  # nothing across the gap
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)

    asyncio.run(main())


def test_a_resume_older_than_the_ring_is_served_from_the_archive_when_there_is_one() -> None:
    async def main() -> None:
        bus = MemoryBus(plain_epoch=True)
        fence, epoch = await active(bus, "J1")
        await publish(bus, fence, epoch, range(1, 301))
        config = config_from_dict(tomllib.loads(default_config_text()))
        asked: list[tuple[int, int]] = []

        async def archive(cursor: int, upto: int) -> list[dict[str, Any]] | None:
            asked.append((cursor, upto))
            return [{"event_id": i} for i in range(cursor + 1, upto + 1)]

        for source, older in (
            (BusSource(config, bus, archive=archive), [{"event_id": i} for i in range(11, 301)]),
            (BusSource(config, bus), None),  # a gateway: only what its ring holds
        ):
            source.feed.ring = AlarmRing(100)
            task = asyncio.create_task(source.feed.run())
            await until(lambda s=source: s.feed.ring.newest == 300)
            assert await source.alarms.replay(10) == older
            recent = await source.alarms.replay(250)
            assert recent is not None and [e["event_id"] for e in recent] == list(range(251, 301))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert asked == [(10, 300)]

    asyncio.run(main())


def test_a_follower_gets_the_two_streams_in_publish_order() -> None:
    """A tick's alarm events are published before its frame; a follower that reads both in
    one go keeps that order (the all-in-one server sends them so)."""

    async def main() -> None:
        bus = MemoryBus()
        fence, epoch = await active(bus)
        follower = bus.follow(cursor=0, epoch=epoch)
        got: list[BusEvent] = []

        async def collect() -> None:
            async for event in follower.events():
                got.append(event)

        task = asyncio.create_task(collect())
        await until(lambda: follower.connected)
        # No await between these: the follower reads them in one go.
        bus.publish_frame_now(fence, b"f1")
        bus.publish_alarms_now(fence, epoch, [(i, record(i), "") for i in (1, 2)])
        bus.publish_frame_now(fence, b"f2")
        bus.publish_frame_now(fence, b"f3")
        bus.publish_alarms_now(fence, epoch, [(3, record(3), "")])
        await until(lambda: len(got) >= 4)
        assert got == [
            Frames([("1-0", b"f1")]),
            AlarmEntries([(1, record(1)), (2, record(2))]),
            Frames([("2-0", b"f2"), ("3-0", b"f3")]),
            AlarmEntries([(3, record(3))]),
        ]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
