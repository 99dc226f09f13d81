"""Dashboard clients for the cluster tests, many in one event loop: each records what it was
sent (alarm event ids, production_data frames, snapshots, data_status) and, when its gateway
goes away, reconnects to another and resumes with (epoch, cursor) as a browser does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.conftest import scaled

# A production_data frame's identity: each line's id and source timestamp. The ingest node's
# frame on the bus has the same lines, so a client's frame and the bus entry match by it.
FrameKey = tuple[tuple[str, str], ...]


def frame_key(lines: Sequence[dict[str, Any]]) -> FrameKey:
    return tuple(sorted((str(s["production_line_id"]), str(s["timestamp"])) for s in lines))


@dataclass
class Screen:
    """One client. `events`: every alarm event id it was sent, in order (resumed ones too)."""

    name: str
    urls: list[str]
    events: list[int] = field(default_factory=list)
    frames: list[FrameKey] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[Any, dict[str, Any]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)
    # ("alarm", event id) and ("snapshot", alarm_cursor) in the order they arrived.
    log: list[tuple[str, int]] = field(default_factory=list)
    epoch: str | None = None
    cursor: int = 0
    # Event ids before the first snapshot's cursor are not this client's to count.
    baseline: int | None = None
    ws: ClientConnection | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    # A reconnect's resume (docs/protocol.md, "Resume"): live events can arrive between the
    # connection's first snapshot and the resume's answer; those above the first snapshot's
    # cursor are held and taken after the replayed ones, so the client sees them in order.
    resuming: bool = False
    connect_cursor: int | None = None
    held: list[dict[str, Any]] = field(default_factory=list)

    @property
    def snapshot(self) -> dict[str, Any]:
        return self.snapshots[-1] if self.snapshots else {}

    def take(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        data: Any = frame.get("data")
        if kind == "production_data":
            self.frames.append(frame_key(data))
        elif kind == "alarm":
            later = self.connect_cursor is not None and int(data["event_id"]) > self.connect_cursor
            if self.resuming and later:
                self.held.append(data)
                return
            self._alarm(data)
        elif kind == "snapshot":
            self._snapshot(data)
            if self.resuming and self.connect_cursor is None:
                self.connect_cursor = int(data["alarm_cursor"])
            elif self.resuming and "recovered" in data:
                held, self.held = self.held, []
                self.resuming, self.connect_cursor = False, None
                start = self.baseline if data["recovered"] is False else None
                for event in held:
                    if start is None or int(event["event_id"]) > start:
                        self._alarm(event)
        elif kind == "data_status":
            self.statuses.append(data)
        elif kind == "reply":
            self.replies[data["id"]] = data

    def _alarm(self, data: dict[str, Any]) -> None:
        self.events.append(int(data["event_id"]))
        self.log.append(("alarm", int(data["event_id"])))
        self.alarms.append(data)
        self.cursor = max(self.cursor, int(data["event_id"]))

    def _snapshot(self, data: dict[str, Any]) -> None:
        self.snapshots.append(data)
        self.log.append(("snapshot", int(data["alarm_cursor"])))
        if data.get("recovered") is False or self.epoch != data.get("epoch"):
            # A new history: what came before does not continue into it.
            self.baseline = int(data["alarm_cursor"])
            self.cursor = int(data["alarm_cursor"])
        self.epoch = data.get("epoch")
        if self.baseline is None:
            self.baseline = int(data["alarm_cursor"])
        self.cursor = max(self.cursor, int(data["alarm_cursor"]))

    def counted(self, since: int | None = None) -> list[int]:
        """The event ids this client got after `since` (default: its first snapshot)."""
        start = self.baseline if since is None else since
        return [e for e in self.events if start is not None and e > start]

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None, f"{self.name} is not connected"
        await self.ws.send(orjson.dumps(message).decode())

    async def request(self, kind: str, data: dict[str, Any], rid: str, timeout: float = 30) -> Any:
        """Send a request with id `rid` and wait for its reply's data."""
        await self.send({"type": kind, "id": rid, "data": data})
        deadline = asyncio.get_running_loop().time() + timeout
        while rid not in self.replies:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name}: no reply to {kind} {rid} in {timeout} s")
            await asyncio.sleep(0.02)
        return self.replies[rid]

    async def run(self, stop: asyncio.Event) -> None:
        """Connect to urls[0]; when the connection drops, the next url (resuming), until stop."""
        for url in itertools.cycle(self.urls):
            if stop.is_set():
                break
            try:
                await self._session(url, stop)
            except (OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.05)  # refused: that gateway is gone, try the next one
        self.closed.set()

    async def _session(self, url: str, stop: asyncio.Event) -> None:
        resume = self.epoch is not None
        async with connect(url, open_timeout=10, ping_interval=None, max_queue=None) as ws:
            self.ws = ws
            self.connections.append(url)
            self.resuming, self.connect_cursor, self.held = resume, None, []
            if resume:
                data = {"alarm_cursor": self.cursor, "epoch": self.epoch}
                await ws.send(orjson.dumps({"type": "resume", "id": "resume", "data": data}))
            try:
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    self.take(orjson.loads(raw))
            except ConnectionClosed:
                return
            finally:
                self.ws = None


def stale_spells(screen: Screen) -> list[float]:
    """Seconds from each data_status live:false to the next live:true (the gateway's clocks)."""
    spells, since = [], None
    for status in screen.statuses:
        at = datetime.fromisoformat(status["since"].replace("Z", "+00:00")).timestamp()
        if not status["live"]:
            since = at if since is None else since
        elif since is not None:
            spells.append(at - since)
            since = None
    return spells


def what_screens_showed(screens: list[Screen]) -> str:
    """How many clients were told their data was stale (NO LIVE DATA), and for how long."""
    spells = [d for s in screens for d in stale_spells(s)]
    told = sum(1 for s in screens if any(not x["live"] for x in s.statuses))
    if not spells:
        return f"{told}/{len(screens)} clients told data stale"
    return (
        f"{told}/{len(screens)} clients told data stale (NO LIVE DATA) for "
        f"{min(spells):.1f}-{max(spells):.1f} s, then live again"
    )


class Screens:
    """Many screens in one loop: started together, each reading until stopped."""

    def __init__(self, screens: list[Screen]) -> None:
        self.screens = screens
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Screens:
        self.tasks = [asyncio.create_task(s.run(self.stop)) for s in self.screens]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def until(self, predicate: Any, timeout: float, what: str) -> None:
        """Poll predicate() until true; fail naming `what` (and a task's error, if one died)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            for task in self.tasks:
                if task.done() and task.exception() is not None:
                    raise AssertionError(f"a client failed: {task.exception()!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what} not within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def got(self, since: int, count: int, timeout: float = 20) -> None:
        """Every client has at least `count` alarm events after `since` (a burst is on)."""
        await self.until(
            lambda: all(len(s.counted(since)) >= count for s in self.screens),
            scaled(timeout),
            f"{count} events after {since}",
        )

    async def reached(self, top: int, timeout: float = 20) -> None:
        """Every client has the alarm events up to `top`."""
        await self.until(
            lambda: all(s.cursor >= top for s in self.screens), scaled(timeout), f"all at {top}"
        )

    async def live(self, timeout: float = 20) -> None:
        """Every client that was told its data is stale has been told it is live again."""
        await self.until(
            lambda: all(not s.statuses or s.statuses[-1]["live"] for s in self.screens),
            scaled(timeout),
            "data live again",
        )

    async def connected(self, timeout: float = 30) -> None:
        await self.until(lambda: all(s.snapshots for s in self.screens), timeout, "snapshots")
