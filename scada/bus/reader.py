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
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scada.bus.conn import connect, raise_if_cancelled, stream_entries
from scada.bus.epoch import read_epoch
from scada.bus.keys import BusKeys, event_id, text
from scada.bus.publish import EPOCH, PAYLOAD

log = logging.getLogger("scada.bus.reader")


@dataclass(frozen=True, slots=True)
class AlarmEntries:
    """Contiguous alarm entries: [(event_id, payload)], oldest first."""

    entries: list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Frames:
    """Frames read since the last batch, oldest first: [(entry id, payload)]."""

    frames: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Gap:
    """The stream no longer holds the events after `after`: it goes on at `first`."""

    after: int
    first: int


@dataclass(frozen=True, slots=True)
class EpochChanged:
    """The bus epoch is not the one the cursor belonged to (new=None: Redis has none yet)."""

    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class Status:
    """`stale`: nothing read for `read_deadline` s (data on screen must be marked stale);
    `live`: reading again."""

    state: Literal["live", "stale"]
    reason: str


BusEvent = AlarmEntries | Frames | Gap | EpochChanged | Status


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
        if block >= read_deadline:
            raise ValueError("block must be shorter than read_deadline")
        self.url = url
        self.keys = keys
        self.cursor = cursor
        self.epoch = epoch
        self.read_deadline = read_deadline
        self.block = block
        self.batch = batch
        self.with_frames = frames
        self.reconnect_pause = reconnect_pause
        self._clock = clock
        self._redis: Redis | None = None
        self._frame_cursor = "$"
        self._last_read = clock()
        self._state: Literal["live", "stale"] = "live"
        self.reconnects = 0
        self._epoch_lost = False  # Redis had no epoch at the last connect

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
        if epoch is None:
            # No epoch: Redis lost its data and no ingest node has published since. Nothing
            # read here could be trusted; keep reconnecting until one appears.
            await _quiet_close(redis)
            if self.epoch is not None:
                yield EpochChanged(self.epoch, None)
                self.epoch, self.cursor, self._epoch_lost = None, None, True
            return
        self._redis = redis
        self.reconnects += 1
        if (self.epoch is not None and epoch != self.epoch) or self._epoch_lost:
            yield EpochChanged(self.epoch, epoch)
            self.cursor = None
        self.epoch, self._epoch_lost = epoch, False
        if latest:
            # Go on from the newest frame (the latest value is what counts), delivering it
            # unless it is the one delivered last before the reconnect.
            entry, fields = latest[0]
            assert entry is not None and fields is not None
            self._last_read = self._clock()
            async for event in self._live():
                yield event
            if text(entry) != self._frame_cursor:
                self._frame_cursor = text(entry)
                yield Frames([(self._frame_cursor, _bytes(fields[PAYLOAD]))])

    async def _read(self) -> Any:
        assert self._redis is not None
        streams: dict[Any, Any] = {self.keys.alarms: str(self.cursor or 0)}
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
        self._last_read = self._clock()
        async for event in self._live():
            yield event
        if epoch_seen is not None and epoch_seen != self.epoch:
            # Entries of another epoch: drop them and reconnect, which re-reads the epoch key.
            yield EpochChanged(self.epoch, epoch_seen)
            self.epoch, self.cursor = epoch_seen, None
            await self.close()
            return
        if frames:
            self._frame_cursor = frames[-1][0]
            yield Frames(frames)
        if alarms:
            run: list[tuple[int, bytes]] = []
            expected = None if self.cursor is None else self.cursor + 1
            for ev_id, payload in alarms:
                if expected is not None and ev_id != expected:
                    if run:
                        yield AlarmEntries(run)
                        run = []
                    log.warning("alarm stream gap: after %d comes %d", expected - 1, ev_id)
                    yield Gap(expected - 1, ev_id)
                run.append((ev_id, payload))
                expected = ev_id + 1
                self.cursor = ev_id
            yield AlarmEntries(run)

    async def _live(self) -> AsyncIterator[BusEvent]:
        if self._state != "live":
            self._state = "live"
            log.info("bus live again (epoch %s, cursor %s)", self.epoch, self.cursor)
            yield Status("live", "reading again")

    async def _check_deadline(self, reason: str) -> AsyncIterator[BusEvent]:
        silent = self._clock() - self._last_read
        if silent < self.read_deadline or self._state == "stale":
            return
        self._state = "stale"
        log.warning("bus stale: nothing read for %.1f s (%s); reconnecting", silent, reason)
        await self.close()
        yield Status("stale", reason)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def _quiet_close(redis: Redis) -> None:
    with contextlib.suppress(RedisError, OSError):
        await redis.aclose()
