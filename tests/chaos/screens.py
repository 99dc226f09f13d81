"""The checker's own WebSocket clients: through nginx, reconnecting and resuming as a browser
does (docs/protocol.md), each recording every alarm event it is sent with its epoch, and when it
was told NO LIVE DATA. They run in their own event loop in a thread.

A client's history is cut into segments: a new one starts with every snapshot that does not
continue the last (a new epoch, or `recovered: false`), at that snapshot's `alarm_cursor`.
Within a segment every event id above the base must arrive exactly once and in order, which
is what `missing`, `duplicated` and `out_of_order` count.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus


@dataclass
class Segment:
    epoch: str
    base: int  # events above this id belong to the segment
    ids: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    names: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (alarm, event)
    duplicated: int = 0
    out_of_order: int = 0

    def take(self, event_id: int, alarm: str, event: str) -> None:
        if event_id <= self.base:  # before this segment's snapshot: already in its state
            return
        if event_id in self.seen:
            self.duplicated += 1
            return
        if self.ids and event_id < self.ids[-1]:
            self.out_of_order += 1
        self.ids.append(event_id)
        self.seen.add(event_id)
        self.names[event_id] = (alarm, event)

    @property
    def top(self) -> int:
        return max(self.base, self.ids[-1] if self.ids else 0)


@dataclass
class Screen:
    name: str
    url: str
    segments: list[Segment] = field(default_factory=list)
    connects: int = 0
    resets: int = 0  # snapshots that started a new segment after the first
    live: bool = True
    stale_since: float | None = None
    stale_spells: list[tuple[float, float]] = field(default_factory=list)  # (from, to) monotonic
    last_frame: float = 0.0
    connected: bool = False
    # resume bookkeeping (docs/protocol.md "Epochs"): events above the new connection's first
    # snapshot that arrive before the resume's snapshot are held and taken after it.
    _resuming: bool = False
    _connect_cursor: int | None = None
    _held: list[dict[str, Any]] = field(default_factory=list)

    @property
    def segment(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    @property
    def cursor(self) -> int:
        return self.segment.top if self.segment else 0

    def _status(self, live: bool) -> None:
        now = time.monotonic()
        if not live and self.live:
            self.stale_since = now
        elif live and not self.live and self.stale_since is not None:
            self.stale_spells.append((self.stale_since, now))
            self.stale_since = None
        self.live = live

    def _alarm(self, data: dict[str, Any]) -> None:
        if self.segment is not None:
            self.segment.take(int(data["event_id"]), str(data["alarm"]), str(data["event"]))

    def _snapshot(self, data: dict[str, Any]) -> None:
        epoch, cursor = str(data.get("epoch")), int(data["alarm_cursor"])
        seg = self.segment
        if seg is None or seg.epoch != epoch or data.get("recovered") is False:
            if seg is not None:
                self.resets += 1
            self.segments.append(Segment(epoch, cursor))
        if data.get("data_live") is not None:
            self._status(bool(data["data_live"]))

    def take(self, frame: dict[str, Any]) -> None:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind == "production_data":
            self.last_frame = time.monotonic()
        elif kind == "alarm":
            above = (
                self._connect_cursor is not None and int(data["event_id"]) > self._connect_cursor
            )
            if self._resuming and above:
                self._held.append(data)
            elif not (self._resuming and self._connect_cursor is None):
                self._alarm(data)
        elif kind == "snapshot":
            if self._resuming and self._connect_cursor is None:
                # the connection's first snapshot: its cursor; the resume's answer follows
                self._connect_cursor = int(data["alarm_cursor"])
                if data.get("data_live") is not None:
                    self._status(bool(data["data_live"]))
                return
            if self._resuming and "recovered" in data:
                self._snapshot(data)
                held, self._held = self._held, []
                self._resuming, self._connect_cursor = False, None
                for event in held:
                    self._alarm(event)
                return
            self._snapshot(data)
        elif kind == "data_status":
            self._status(bool(data.get("live")))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            gone = (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed)
            with contextlib.suppress(*gone):
                await self._session(stop)
            self.connected = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)  # reconnect pause, as a browser's

    async def _session(self, stop: asyncio.Event) -> None:
        async with connect(self.url, open_timeout=10, ping_interval=None, max_queue=None) as ws:
            self.connects += 1
            self.connected = True
            seg = self.segment
            self._resuming, self._connect_cursor, self._held = seg is not None, None, []
            if seg is not None:
                data = {"alarm_cursor": seg.top, "epoch": seg.epoch}
                await ws.send(orjson.dumps({"type": "resume", "id": "resume", "data": data}))
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                self.take(orjson.loads(raw))


class Screens:
    """N screens in a thread of their own."""

    def __init__(self, url: str, count: int) -> None:
        self.screens = [Screen(f"screen-{i}", url) for i in range(count)]
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="screens", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        await asyncio.gather(*(s.run(self._stop) for s in self.screens))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def settled(self, top: int, epoch_prefix: str) -> bool:
        """Every screen connected, live, with frames flowing, and has events up to `top` in a
        segment of the journal epoch `epoch_prefix`."""
        now = time.monotonic()
        for s in self.screens:
            seg = s.segment
            if not (s.connected and s.live and now - s.last_frame < 2.0 and seg is not None):
                return False
            if not seg.epoch.startswith(epoch_prefix + "/") or seg.top < top:
                return False
        return True
