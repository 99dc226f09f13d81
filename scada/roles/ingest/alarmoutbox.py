"""The journal is the outbox: every committed alarm event goes to the `alarms` stream.

Entry id = journal event id ("N-0", see `keys`), payload = the event's full record (what the
standby needs to journal it under the same id). The outbox never publishes from memory: after
each commit it is poked, reads what the journal holds above what it has published, and appends
it through the fenced script, so the normal path, a Redis outage and a restart or takeover are
one path. On start it learns what is published from the stream itself (its last generated id)
and republishes the rest; entries Redis already has are refused by Redis and counted as such.

In a cluster the journal writes nothing the bus has not accepted: `accept` is the journal's
gate (scada.alarms.journal: it numbers each batch newest + 1.. and calls the gate before it
writes), run on the journal's thread; it publishes the batch under exactly those ids with a
strict fenced publish and waits up to one lease TTL (it starts only while this node trusts its
lease; Redis checks the fence with the write). So an
id is handed out by one publish into one stream, and a journal holds under it the event the
stream holds: the ids of two nodes cannot fork. What the bus did not accept in time stays out
of the numbered journal (a tick's events are kept pending and reach the record late). The run
loop and `start` remain for what the bus lost (a Redis that lost its newest writes): they
republish the journal's tail under the same ids.

A journal that is *behind* the stream (a standby that takes over before it mirrored the
stream's tail) must not publish: its next ids would be refused as "already published" while
holding other events. `start()` raises JournalBehind then; the node mirrors first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from scada.alarms.journal import NotAccepted
from scada.bus.conn import raise_if_cancelled
from scada.bus.epoch import ensure_epoch, seed_state
from scada.bus.keys import BusKeys, entry_id
from scada.bus.lease import Lease, LeaseLost
from scada.bus.publish import PAYLOAD, Behind, EpochChanged, Fenced, FencedPublisher
from scada.core.alarmevent import AlarmEvent

log = logging.getLogger("scada.roles.ingest.alarmoutbox")


class JournalSource(Protocol):
    """What the outbox needs of the alarm journal (scada.alarms.journal.Journal has it)."""

    def since(self, cursor: int, limit: int = ...) -> Sequence[AlarmEvent] | None: ...

    def newest_id(self) -> int: ...

    def committed_id(self) -> int: ...

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
        self.refused_total = 0  # batches the gate did not accept
        self._poke = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Called (on the event loop) when the stream holds ids this journal lacks: the node
        # steps down and catches up as a standby.
        self.on_behind: Callable[[str], None] | None = None
        # Called (from the journal's thread) when a batch was not accepted: the node's tick
        # stopped evaluating alarms, so the node steps down and takes over again.
        self.on_refused: Callable[[str], None] | None = None

    async def start(self) -> str:
        """Mint or join the bus epoch and learn what is published; returns the epoch.

        On a fresh epoch (Redis lost its data, or a new journal) the newest `backfill` events
        are republished so gateways start with a recent history; older cursors get
        `recovered: false` by the epoch change anyway.
        """
        self._loop = asyncio.get_running_loop()
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

    # ------------------------------------------------------------------ the journal's gate

    def accept(self, events: list[AlarmEvent]) -> None:
        """The journal's gate, on its thread: publish this numbered batch before it is written.

        Raises NotAccepted when this node does not trust its lease, or the bus did not take
        the batch within one TTL (refused, Redis unreachable or silent): the journal writes
        none of it."""
        loop = self._loop
        try:
            fence = self.lease.fence()  # this node may start a write only while it trusts it
        except LeaseLost as err:
            self._refuse(str(err))
        if loop is None or self.epoch is None:
            self._refuse(f"{self.lease.node} is not publishing (no bus epoch joined)")
        # Redis checks the fence atomically with the write, so waiting longer than the local
        # validity is safe: a lease taken over meanwhile makes the publish FENCED. One TTL.
        left = self.lease.ttl
        for ev in events:
            if ev.node is None:
                ev.node = self.lease.node
        future = asyncio.run_coroutine_threadsafe(self._accept(events, fence, left), loop)
        try:
            future.result(left + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            self._refuse("the bus did not answer while the lease could be trusted")
        except NotAccepted as err:
            self._refuse(str(err))

    def _refuse(self, why: str) -> NoReturn:
        self.refused_total += 1
        if self.on_refused is not None:
            self.on_refused(why)
        raise NotAccepted(why)

    async def _accept(self, events: list[AlarmEvent], fence: str, left: float) -> None:
        entries = [(entry_id(_id(ev)), self.encode(ev)) for ev in events]
        state = ["" if ev.late else ev.alarm for ev in events]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + left
        failure = "no attempt"
        while True:
            raise_if_cancelled()
            epoch, remaining = self.epoch, deadline - loop.time()
            if epoch is None:
                raise NotAccepted("the bus epoch changed (Redis lost its data?)")
            if remaining <= 0:
                raise NotAccepted(f"the bus did not accept the events in time: {failure}")
            try:
                result = await asyncio.wait_for(
                    self.publisher.publish(
                        self.keys.alarms,
                        fence,
                        entries,
                        epoch=epoch,
                        maxlen=self.maxlen,
                        state=state,
                        strict=True,
                    ),
                    remaining,
                )
            except Behind:
                if not await self._on_stream(entries):  # an earlier try did land: accepted
                    why = f"the alarm stream already has id {entries[0][0]} (journal behind)"
                    if self.on_behind is not None:
                        self.on_behind(why)
                    raise NotAccepted(why) from None
            except (Fenced, EpochChanged) as err:
                raise NotAccepted(str(err)) from None
            except (RedisError, OSError, TimeoutError) as err:
                failure = repr(err)
                await asyncio.sleep(0.05)
                continue
            else:
                self.added_total += result.added
            self.published_through = max(self.published_through, _id(events[-1]))
            return

    async def _on_stream(self, entries: list[tuple[str, bytes]]) -> bool:
        """Whether the stream holds exactly these entries (a publish whose answer was lost)."""
        try:
            found: Any = await self.redis.xrange(
                self.keys.alarms, min=entries[0][0], max=entries[-1][0]
            )
        except (RedisError, OSError):
            return False
        return [(e.decode() if isinstance(e, bytes) else e, f[PAYLOAD]) for e, f in found] == [
            (i, p) for i, p in entries
        ]

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
                # Never `newest_id` here: it waits for the journal's lock, which an append
                # holds while its gate waits for this loop to publish the batch (a takeover
                # under load hung 4 s in it and the node stepped down).
                newest = await asyncio.to_thread(self.journal.committed_id)
                if self.published_through >= newest:
                    # The gate (`accept`) publishes a batch before the journal commits it:
                    # until the commit lands the bus is ahead of the file, and nothing the
                    # file holds is unpublished. Not a prune: there is no gap to leave.
                    return added
                self._skip_pruned(newest)
                continue
            if not events:
                return added
            entries = [(entry_id(_id(ev)), self.encode(ev)) for ev in events]
            state = [ev.alarm if _id(ev) >= self._state_from else "" for ev in events]
            result = await self.publisher.publish(
                self.keys.alarms, fence, entries, epoch=self.epoch, maxlen=self.maxlen, state=state
            )
            self.published_through = max(self.published_through, _id(events[-1]))
            added += result.added
            self.added_total += result.added
            self.already_published_total += result.already_published

    def _skip_pruned(self, newest: int) -> None:
        """The journal pruned events before they were published: leave a gap readers see."""
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
