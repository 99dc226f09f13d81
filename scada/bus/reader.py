"""A gateway's view of the bus: alarm entries from a cursor, frames, and whether it is alive.

One XREAD reads both streams, so the 10 frames/s of a live ingest node double as a heartbeat:
the reader keeps its own read deadline (2 s without a single entry → `Status("stale")`), drops
the connection and reconnects, then resumes the alarm stream from its cursor. TCP keepalive
would notice a half-open connection after minutes, if at all; this notices in 2 s.

It never fills a gap silently. XREAD from a cursor older than the (trimmed) stream starts at
the first kept entry without a word, so every entry is checked: the first must be cursor + 1,
each next one its predecessor + 1, otherwise `Gap` comes before the entries. Every alarm entry
carries its epoch; on each (re)connect the epoch key is read as well. A different epoch (Redis
lost its data, or a new journal) yields `EpochChanged` and the cursor starts again from the
beginning of the new epoch's stream: the consumer tells its clients `recovered: false`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scada.bus.conn import connect, raise_if_cancelled, stream_entries
from scada.bus.cursor import CursorCheck
from scada.bus.deadline import ReadDeadline
from scada.bus.epoch import read_epoch
from scada.bus.events import AlarmEntries, BusEvent, EpochChanged, Frames, Gap, Status
from scada.bus.keys import BusKeys, event_id, text
from scada.bus.publish import EPOCH, PAYLOAD

log = logging.getLogger("scada.bus.reader")

__all__ = ["AlarmEntries", "BusEvent", "BusReader", "EpochChanged", "Frames", "Gap", "Status"]


class BusReader:
    def __init__(
        self,
        url: str,
        keys: BusKeys,
        *,
        cursor: int | None = None,
        epoch: str | None = None,
        read_deadline: float = 2.0,
        block: float = 0.5,
        batch: int = 1000,
        frames: bool = True,
        reconnect_pause: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`cursor`: the last alarm event id already had (None: from the start of the stream);
        `epoch`: the epoch that cursor belongs to (None: take the current one as it is)."""
        self.url = url
        self.keys = keys
        self.check = CursorCheck(cursor, epoch)
        self.deadline = ReadDeadline(read_deadline, clock(), block=block)
        self.read_deadline = read_deadline
        self.block = block
        self.batch = batch
        self.with_frames = frames
        self.reconnect_pause = reconnect_pause
        self._clock = clock
        self._redis: Redis | None = None
        self._frame_cursor = "$"
        self.reconnects = 0

    @property
    def cursor(self) -> int | None:
        return self.check.cursor

    @property
    def epoch(self) -> str | None:
        return self.check.epoch

    async def close(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            with contextlib.suppress(RedisError, OSError):
                await redis.aclose()

    async def events(self) -> AsyncIterator[BusEvent]:
        """Everything the consumer must act on, in order, until cancelled."""
        try:
            while True:
                raise_if_cancelled()
                if self._redis is None:
                    async for event in self._connect():
                        yield event
                    if self._redis is None:
                        async for event in self._check_deadline("no connection"):
                            yield event
                        await asyncio.sleep(self.reconnect_pause)
                        continue
                try:
                    reply = await asyncio.wait_for(self._read(), timeout=self.read_deadline)
                except (TimeoutError, RedisError, OSError) as err:
                    log.debug("bus read failed: %r", err)
                    await self.close()
                    async for event in self._check_deadline(f"read failed: {err!r}"):
                        yield event
                    continue
                if reply:
                    async for event in self._entries(reply):
                        yield event
                else:
                    async for event in self._check_deadline("no entries"):
                        yield event
        finally:
            await self.close()

    # ------------------------------------------------------------------ steps

    async def _connect(self) -> AsyncIterator[BusEvent]:
        redis = connect(self.url, timeout=self.read_deadline, name="scada-gateway")
        try:
            epoch = await read_epoch(redis, self.keys)
            latest = await redis.xrevrange(self.keys.frames, count=1) if self.with_frames else []
        except (RedisError, OSError) as err:
            log.debug("bus connect failed: %r", err)
            await _quiet_close(redis)
            return
        changed = self.check.connected(epoch)
        if epoch is None:
            # No epoch: Redis lost its data and no ingest node has published since. Nothing
            # read here could be trusted; keep reconnecting until one appears.
            await _quiet_close(redis)
            if changed is not None:
                yield changed
            return
        self._redis = redis
        self.reconnects += 1
        if changed is not None:
            yield changed
        if self.with_frames and not latest and self._frame_cursor == "$":
            # No frame yet: every one appended from now on counts. ("$" would only see those
            # appended while a read blocks, losing any that come between two reads.)
            self._frame_cursor = "0-0"
        if latest:
            # Go on from the newest frame (the latest value is what counts), delivering it
            # unless it is the one delivered last before the reconnect.
            entry, fields = latest[0]
            assert entry is not None and fields is not None
            async for event in self._live():
                yield event
            if text(entry) != self._frame_cursor:
                self._frame_cursor = text(entry)
                yield Frames([(self._frame_cursor, _bytes(fields[PAYLOAD]))])

    async def _read(self) -> Any:
        assert self._redis is not None
        streams: dict[Any, Any] = {self.keys.alarms: str(self.check.read_from)}
        if self.with_frames:
            streams[self.keys.frames] = self._frame_cursor
        return await self._redis.xread(streams, count=self.batch, block=int(self.block * 1000))

    async def _entries(self, reply: Any) -> AsyncIterator[BusEvent]:
        alarms: list[tuple[int, bytes]] = []
        frames: list[tuple[str, bytes]] = []
        epoch_seen: str | None = None
        for name, entries in stream_entries(reply):
            if name == self.keys.alarms:
                for entry, fields in entries:
                    alarms.append((event_id(entry), fields[PAYLOAD]))
                    if epoch_seen is None and EPOCH in fields:
                        epoch_seen = text(fields[EPOCH])
            else:
                frames.extend((entry, fields[PAYLOAD]) for entry, fields in entries)
        async for event in self._live():
            yield event
        changed = self.check.entry_epoch(epoch_seen)
        if changed is not None:
            # Entries of another epoch: drop them and reconnect, which re-reads the epoch key.
            yield changed
            await self.close()
            return
        if frames:
            self._frame_cursor = frames[-1][0]
            yield Frames(frames)
        for event in self.check.entries(alarms):
            if isinstance(event, Gap):
                log.warning("alarm stream gap: after %d comes %d", event.after, event.first)
            yield event

    async def _live(self) -> AsyncIterator[BusEvent]:
        status = self.deadline.read(self._clock())
        if status is not None:
            log.info("bus live again (epoch %s, cursor %s)", self.epoch, self.cursor)
            yield status

    async def _check_deadline(self, reason: str) -> AsyncIterator[BusEvent]:
        now = self._clock()
        status = self.deadline.silent(now, reason)
        if status is None:
            return
        log.warning(
            "bus stale: nothing read for %.1f s (%s); reconnecting",
            self.deadline.silent_for(now),
            reason,
        )
        await self.close()
        yield status


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def _quiet_close(redis: Redis) -> None:
    with contextlib.suppress(RedisError, OSError):
        await redis.aclose()
