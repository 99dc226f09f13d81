"""The journal is the outbox: every committed alarm event goes to the `alarms` stream.

Entry id = journal event id ("N-0", see `keys`), payload = the event's full record (what the
standby needs to journal it under the same id). The outbox never publishes from memory: after
each commit it is poked, reads what the journal holds above what it has published, and appends
it through the fenced script, so the normal path, a Redis outage and a restart or takeover are
one path. On start it learns what is published from the stream itself (its last generated id)
and republishes the rest; entries Redis already has are refused by Redis and counted as such.

A journal that is *behind* the stream (a standby that takes over before it mirrored the
stream's tail) must not publish: its next ids would be refused as "already published" while
holding other events. `start()` raises JournalBehind then; the node mirrors first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from scada.bus.conn import raise_if_cancelled
from scada.bus.epoch import ensure_epoch, seed_state
from scada.bus.keys import BusKeys, entry_id
from scada.bus.lease import Lease, LeaseLost
from scada.bus.publish import EpochChanged, Fenced, FencedPublisher
from scada.core.alarmevent import AlarmEvent

log = logging.getLogger("scada.roles.ingest.alarmoutbox")


class JournalSource(Protocol):
    """What the outbox needs of the alarm journal (scada.alarms.journal.Journal has it)."""

    def since(self, cursor: int, limit: int = ...) -> Sequence[AlarmEvent] | None: ...

    def newest_id(self) -> int: ...

    def restore_events(self, recent: int = ...) -> list[AlarmEvent]: ...


class JournalBehind(Exception):
    """The stream holds ids this journal has not got: mirror them before publishing."""

    def __init__(self, stream_top: int, journal_newest: int) -> None:
        super().__init__(f"alarm stream is at {stream_top}, the journal at {journal_newest}")
        self.stream_top = stream_top
        self.journal_newest = journal_newest


def encode_event(ev: AlarmEvent) -> bytes:
    """The stream payload of an event: its full journal record, event_id included."""
    return orjson.dumps(ev.to_record())


def decode_event(payload: bytes) -> AlarmEvent:
    return AlarmEvent.from_record(orjson.loads(payload))


async def stream_top(redis: Redis, stream: str) -> int:
    """The stream's last generated entry id as a journal id (0: no such stream).

    The last *generated* id, not the last entry: trimming never lowers it, and it is what
    Redis compares an explicit XADD id with.
    """
    try:
        info = await redis.xinfo_stream(stream)
    except ResponseError as err:
        if "no such key" in str(err).lower():
            return 0
        raise
    last = info["last-generated-id"]
    return int((last.decode() if isinstance(last, bytes) else str(last)).partition("-")[0])


class Outbox:
    def __init__(
        self,
        redis: Redis,
        keys: BusKeys,
        lease: Lease,
        journal: JournalSource,
        journal_epoch: str,
        *,
        batch: int = 500,
        maxlen: int = 100_000,
        backfill: int = 1_000,
        encode: Callable[[AlarmEvent], bytes] = encode_event,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lease = lease
        self.journal = journal
        self.journal_epoch = journal_epoch
        self.batch = batch
        self.maxlen = maxlen
        self.backfill = backfill
        self.encode = encode
        self.publisher = FencedPublisher(redis, keys)
        self.epoch: str | None = None
        self.published_through = 0
        self._state_from = 0  # events from this id on update the state hash
        self.added_total = 0
        self.already_published_total = 0
        self._poke = asyncio.Event()

    async def start(self) -> str:
        """Mint or join the bus epoch and learn what is published; returns the epoch.

        On a fresh epoch (Redis lost its data, or a new journal) the newest `backfill` events
        are republished so gateways start with a recent history; older cursors get
        `recovered: false` by the epoch change anyway.
        """
        fence = self.lease.fence()
        self.epoch, minted = await ensure_epoch(self.redis, self.keys, fence, self.journal_epoch)
        newest = await asyncio.to_thread(self.journal.newest_id)
        if minted:
            # The state hash at `newest`; the backfill below it is history for the gateways'
            # rings and must not roll that state back.
            latest = await asyncio.to_thread(self.journal.restore_events, 0)
            states = {ev.alarm: self.encode(ev) for ev in latest if _id(ev) <= newest}
            await seed_state(self.redis, self.keys, fence, self.epoch, newest, list(states.items()))
            self._state_from = newest + 1
            self.published_through = max(0, newest - self.backfill)
            log.info("outbox: minted bus epoch %s at journal id %d", self.epoch, newest)
        else:
            top = await stream_top(self.redis, self.keys.alarms)
            if top > newest:
                raise JournalBehind(top, newest)
            self._state_from = 0
            self.published_through = top
            if newest > top:
                log.info("outbox: republishing events %d..%d", top + 1, newest)
        return self.epoch

    def poke(self) -> None:
        """Tell the outbox the journal committed something (call after every commit)."""
        self._poke.set()

    async def flush(self) -> int:
        """Publish everything committed and not yet published; returns entries added.

        Raises LeaseLost/Fenced when this node may no longer publish, EpochChanged when Redis
        lost its data meanwhile (call start() again), RedisError when Redis is unreachable.
        """
        if self.epoch is None:
            raise RuntimeError("Outbox.start() first")
        added = 0
        while True:
            fence = self.lease.fence()
            events = await asyncio.to_thread(self.journal.since, self.published_through, self.batch)
            if events is None:
                self._skip_pruned()
                continue
            if not events:
                return added
            entries = [(entry_id(_id(ev)), self.encode(ev)) for ev in events]
            state = [ev.alarm if _id(ev) >= self._state_from else "" for ev in events]
            result = await self.publisher.publish(
                self.keys.alarms, fence, entries, epoch=self.epoch, maxlen=self.maxlen, state=state
            )
            self.published_through = _id(events[-1])
            added += result.added
            self.added_total += result.added
            self.already_published_total += result.already_published

    def _skip_pruned(self) -> None:
        """The journal pruned events before they were published: leave a gap readers see."""
        newest = self.journal.newest_id()
        skip_to = max(self.published_through + 1, newest - self.backfill)
        log.error(
            "outbox: events %d..%d were pruned before they were published; readers will see a gap",
            self.published_through + 1,
            skip_to,
        )
        self.published_through = skip_to

    async def run(self, retry_every: float = 1.0) -> None:
        """Publish after every poke (and every `retry_every` s) while this node holds the lease."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=retry_every)
            raise_if_cancelled()
            self._poke.clear()
            if not self.lease.held():
                self.epoch = None
                continue
            try:
                if self.epoch is None:
                    await self.start()
                await self.flush()
                if failing:
                    log.info("outbox: publishing again, through event %d", self.published_through)
                failing = False
            except (LeaseLost, Fenced):
                self.epoch = None
            except EpochChanged:
                log.warning("outbox: bus epoch changed (Redis lost its data?), rejoining")
                self.epoch = None
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("outbox: cannot publish: %s", err)
                failing = True


def _id(ev: AlarmEvent) -> int:
    if ev.event_id is None:
        raise ValueError("an uncommitted event cannot be published")
    return ev.event_id
