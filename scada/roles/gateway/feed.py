"""What a gateway keeps from the bus for its clients: alarm state, alarm ring, latest frame.

It knows the bus only by its interface (scada.bus.interface.Bus): Redis in a gateway, the
in-memory bus in tests. Start: read the epoch and the state hash together (each alarm's newest
event, as of its cursor), the ring's history up to that cursor, then follow the stream from
the cursor. A gap or an epoch change means the state may have missed events: the feed
starts over from the hash and tells its listener `reset`, which gives every client a fresh
snapshot (`recovered: false` for a resume across it). Staleness is passed on as it comes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from scada.bus.events import AlarmEntries, EpochChanged, Frames, Gap, Status
from scada.bus.interface import Bus, BusFollower
from scada.bus.ring import AlarmRing, contiguous

log = logging.getLogger("scada.roles.gateway.feed")


class FeedListener:
    """What the gateway's hub is told; the defaults do nothing."""

    def reset(self, epoch: str, cursor: int, reason: str) -> None:
        """State rebuilt at `cursor` (start, gap or new epoch): send fresh snapshots."""

    def alarms(self, entries: list[tuple[int, bytes]]) -> None:
        """New alarm events, contiguous, after everything told before."""

    def frame(self, payload: bytes) -> None:
        """One tick's records."""

    def status(self, live: bool, reason: str) -> None:
        """The bus went stale (mark the data stale on screen) or is live again."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    epoch: str | None
    cursor: int
    alarms: list[dict[str, Any]]  # the newest event record of every alarm not normal
    frame: bytes | None
    live: bool


class GatewayFeed:
    def __init__(
        self,
        bus: Bus,
        listener: FeedListener | None = None,
        *,
        ring_size: int = 10_000,
        read_deadline: float = 2.0,
    ) -> None:
        self.bus = bus
        self.listener = listener or FeedListener()
        self.ring = AlarmRing(ring_size)
        self.read_deadline = read_deadline
        self.table: dict[str, dict[str, Any]] = {}  # alarm → its newest event record
        self.latest_frame: bytes | None = None
        self.live = False
        self.resets = 0

    def snapshot(self) -> Snapshot:
        active = [r for r in self.table.values() if r.get("state") != "normal"]
        return Snapshot(self.ring.epoch, self.ring.newest, active, self.latest_frame, self.live)

    async def run(self) -> None:
        """Follow the bus until cancelled."""
        reason = "start"
        while True:
            started = await self._bootstrap(reason)
            if started is None:
                reason = "bus unavailable or without epoch"
                if self.live:
                    self.live = False
                    self.listener.status(False, reason)
                await asyncio.sleep(self.read_deadline / 4)
                continue
            epoch, cursor = started
            follower = self.bus.follow(cursor=cursor, epoch=epoch, read_deadline=self.read_deadline)
            try:
                reason = await self._follow(follower)
            finally:
                await follower.close()

    async def _bootstrap(self, reason: str) -> tuple[str, int] | None:
        start = await self.bus.start(history=self.ring.size, timeout=self.read_deadline)
        if start is None:
            return None
        epoch, cursor, entries = start.epoch, start.cursor, start.history
        self.table = {k: orjson.loads(v) for k, v in start.state.items()}
        self.ring.reset(epoch, newest=cursor)
        if entries and entries[-1][0] == cursor and contiguous(entries):
            self.ring.reset(epoch)
            self.ring.add(entries)
        self.resets += 1
        log.info("feed: %s; state of %d alarms at %s/%d", reason, len(self.table), epoch, cursor)
        self.listener.reset(epoch, cursor, reason)
        return epoch, cursor

    async def _follow(self, follower: BusFollower) -> str:
        """Pass events on until the state must be rebuilt; returns why."""
        async for event in follower.events():
            if isinstance(event, Frames):
                for _, payload in event.frames:
                    self.latest_frame = payload
                    self.listener.frame(payload)
            elif isinstance(event, AlarmEntries):
                self.ring.add(event.entries)
                for _, payload in event.entries:
                    record = orjson.loads(payload)
                    self.table[record["alarm"]] = record
                self.listener.alarms(event.entries)
            elif isinstance(event, Status):
                self.live = event.state == "live"
                self.listener.status(self.live, event.reason)
            elif isinstance(event, Gap):
                return f"gap after {event.after}"
            elif isinstance(event, EpochChanged):
                return f"epoch {event.old} → {event.new}"
        return "reader ended"
