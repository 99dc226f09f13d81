"""A gateway's plant source: what the hub shows, fed from the bus by a GatewayFeed.

It knows the bus by its interface only (scada.bus.interface.Bus): Redis in a gateway, the
in-memory bus in tests.

The feed keeps the alarm state, the ring of recent events and the latest frame; this module
turns what it reports into frames for the clients:
- each `frames` entry (one ingest tick: changed lines, every 10th all of them, the flood
  state) is merged per line for snapshots and fanned out as `production_data` through the
  broadcaster (encoded once per subscription, as in the all-in-one server); a changed flood
  state becomes an `alarm_flood` frame;
- alarm entries become `alarm` frames (the wire form of each journal record);
- the bus going stale or live again becomes a `data_status` frame to every client: stale when
  the feed's reader says so or nothing at all came for `read_deadline` s (the active ingest
  node publishes a frame every tick, so silence means no data, whatever the reason), live
  again with the next frame or alarm entry read;
- a feed reset (start, gap, new epoch) gives every client a fresh snapshot, `recovered:
  false`.
It also runs the gateway's own fixed-rate housekeeping tick (heartbeats to idle clients,
slow clients, the session watch), since no plant tick drives it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from scada.bus.interface import Bus
from scada.core.alarmevent import AlarmEvent
from scada.core.config import PlantConfig
from scada.core.fixedrate import FixedRate
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import Broadcaster, Client
from scada.roles.gateway.feed import FeedListener, GatewayFeed

log = logging.getLogger(__name__)

# The reason a client shows for a stale spell (the log line says what happened exactly).
STALE = "bus stale"


class Screens(Protocol):
    """What the source asks of the hub: a fresh snapshot for one client."""

    def send_snapshot(self, client: Client, *, recovered: bool | None = None) -> None: ...


def wire(payload: bytes | dict[str, Any]) -> dict[str, Any]:
    """The client's form of an alarm entry (a journal record)."""
    record = orjson.loads(payload) if isinstance(payload, bytes) else payload
    return AlarmEvent.from_record(record).to_wire()


class BusAlarms:
    """The hub's alarm view (snapshot and resume) over the feed's state table and ring."""

    def __init__(self, source: BusSource) -> None:
        self.source = source
        self._current: list[dict[str, Any]] | None = None  # cached until the table changes

    @property
    def feed(self) -> GatewayFeed:
        return self.source.feed

    def changed(self) -> None:
        self._current = None

    def current(self) -> list[dict[str, Any]]:
        if self._current is None:
            records = self.feed.table.values()
            self._current = [wire(r) for r in records if r.get("state") != "normal"]
        return list(self._current)

    def cursor(self) -> int:
        return self.feed.ring.newest

    def flood(self) -> dict[str, Any] | None:
        return self.source.flood

    def epoch(self) -> str | None:
        return self.feed.ring.epoch

    async def replay(self, cursor: int, upto: int | None = None) -> list[dict[str, Any]] | None:
        ring = self.feed.ring
        upto = ring.newest if upto is None else upto
        archive = self.source.archive
        if cursor > upto and archive is not None:
            return None  # the journal's own cursor: one from further on is another journal's
        if cursor > upto:
            # The client read further on another gateway: nothing is missing once this one
            # has read as far (what came since reached it live on this connection).
            reached = await ring.reach(cursor, timeout=self.source.config.cluster.read_deadline)
            return [] if reached else None
        entries = ring.since(None, cursor)
        if entries is None:
            # Older than the ring: the journal beside the bus has it, if there is one.
            return None if archive is None else await archive(cursor, upto)
        return [wire(payload) for ev_id, payload in entries if ev_id <= upto]


class _Relay(FeedListener):
    """The feed's listener: passes each report on to the source (whose `alarms` is the
    hub's alarm view, not the feed's callback of that name)."""

    def __init__(self, source: BusSource) -> None:
        self.source = source

    def reset(self, epoch: str, cursor: int, reason: str) -> None:
        self.source.on_reset(epoch, cursor, reason)

    def alarms(self, entries: list[tuple[int, bytes]]) -> None:
        self.source.on_alarms(entries)

    def frame(self, payload: bytes) -> None:
        self.source.on_frame(payload)

    def status(self, live: bool, reason: str) -> None:
        self.source.on_status(live, reason)


# Events cursor < id <= upto from a journal beside the bus (AlarmService.replay), or None.
Archive = Callable[[int, int], Awaitable[list[dict[str, Any]] | None]]


class BusSource:
    """PlantSource of a gateway (see scada.web.hub.plantsource), and of the all-in-one server
    on its in-memory bus (scada.roles.localbus), which passes its own `broadcaster`, an
    `archive` (a resume older than the ring is served from the journal) and drives `tick`
    from its plant's tick (`housekeeping=False`)."""

    # Whether clients are told of the bus going stale (data_status, data_live): a gateway's
    # bus is the only way its plant data come; the all-in-one's plant is its own.
    tells_liveness = True
    # An alarm frame's timestamp: when the entry was read (a gateway), or the event's own
    # time (the all-in-one: a tick's events are stamped with the tick, like its frame).
    stamps_with_event_time = False

    def __init__(
        self,
        config: PlantConfig,
        bus: Bus,
        *,
        broadcaster: Broadcaster | None = None,
        archive: Archive | None = None,
        housekeeping: bool = True,
    ) -> None:
        cluster = config.cluster
        srv = config.server
        self._config = config
        self.broadcaster = broadcaster or Broadcaster.from_settings(srv)
        self.archive = archive
        self.housekeeping = housekeeping
        self.line_ids = [line.id for line in config.lines]
        self.feed = GatewayFeed(
            bus,
            _Relay(self),
            ring_size=cluster.ring_size,
            read_deadline=cluster.read_deadline,
        )
        self.alarms = BusAlarms(self)
        self.flood: dict[str, Any] | None = None
        self.live = False
        self.reason = "starting"
        self.since = time.time()  # when `live` last changed
        self.last_read = time.monotonic()  # when the feed last reported an entry or reset
        self.frames_read = 0
        self.frames_bad = 0
        self.screens: Screens | None = None
        self._samples: dict[str, dict[str, Any]] = {}  # line id → its latest LineSample
        self._tick_listeners: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    # -- PlantSource -----------------------------------------------------------------------

    @property
    def config(self) -> PlantConfig:
        return self._config

    def line_samples(self, line_ids: list[str] | None = None) -> list[dict[str, Any]]:
        ids = self.line_ids if line_ids is None else line_ids
        return [self._samples[i] for i in ids if i in self._samples]

    def data_live(self) -> bool:
        return self.live or not self.tells_liveness

    def on_tick(self, listener: Callable[[], None]) -> None:
        self._tick_listeners.append(listener)

    # -- lifecycle -------------------------------------------------------------------------

    def attach(self, screens: Screens) -> None:
        self.screens = screens

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow_bus(), name="bus-feed")]
        if self.housekeeping:
            self._tasks.append(asyncio.create_task(self._housekeeping(), name="gateway-tick"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow_bus(self) -> None:
        """Run the feed; if it fails (an entry it cannot take), start it over from the state
        hash (clients: a fresh snapshot) rather than serve a frozen screen."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self.feed.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - started > 60:
                    failures = 0  # a new streak
                failures += 1
                if failures == 1:
                    log.exception("bus feed failed; starting it over")
                else:
                    log.error("bus feed failed again (%d times); starting it over", failures)
                await asyncio.sleep(min(30.0, float(failures)))

    async def _housekeeping(self) -> None:
        rate = FixedRate(self.config.server.batch_interval_ms / 1000.0)
        stats = self.broadcaster.stats
        failing = False
        while True:
            started = time.perf_counter()
            try:
                self.tick(time.monotonic())
                failing = False
            except Exception:
                stats.errors += 1
                if not failing:  # one traceback per streak, not ten a second
                    log.exception("gateway tick failed")
                failing = True
            spent = time.perf_counter() - started
            stats.ticks, stats.tick_seconds_sum = stats.ticks + 1, stats.tick_seconds_sum + spent
            stats.tick_ms.append(spent * 1000)
            if await rate.sleep():
                stats.tick_overruns += 1

    def tick(self, mono: float) -> None:
        silent = mono - self.last_read
        if self.live and silent >= self.config.cluster.read_deadline:
            self._set_live(False, STALE, f"nothing read for {silent:.1f} s")
        self.broadcaster.after_tick(mono)
        for listener in self._tick_listeners:
            listener()

    # -- what the feed reports ---------------------------------------------------------------

    def on_reset(self, epoch: str, cursor: int, reason: str) -> None:
        self.alarms.changed()
        if self.screens is not None:
            for client in list(self.broadcaster.active()):
                self.screens.send_snapshot(client, recovered=False)

    def on_alarms(self, entries: list[tuple[int, bytes]]) -> None:
        self._read("reading again")
        self.alarms.changed()
        events = [wire(payload) for _, payload in entries]
        if not self.stamps_with_event_time:
            self.broadcaster.publish_alarms(events, iso_ms(time.time()))
            return
        for event in events:
            self.broadcaster.publish_alarms([event], event["at"])

    def on_frame(self, payload: bytes) -> None:
        self._read("reading again")
        try:
            body = orjson.loads(payload)
            lines: list[dict[str, Any]] = body["lines"]
            stamp: str = body["ts"]
            samples = {sample["production_line_id"]: sample for sample in lines}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.frames_bad += 1
            if self.frames_bad == 1:
                log.warning("frames entry is not a tick's records: %r", payload[:80])
            return
        self.frames_read += 1
        self._samples.update(samples)
        if lines:
            self.broadcaster.publish_production(lines, stamp)
        flood = body.get("flood")
        if flood is not None and flood != self.flood:
            self.flood = flood
            self.broadcaster.publish_to_alarm_clients("alarm_flood", flood, stamp)

    def on_status(self, live: bool, reason: str) -> None:
        # Stale at once; live only with the next entry actually read (a reconnect to a
        # Redis whose ingest node is gone finds the same old frame and reads nothing).
        if not live and self.live:
            self._set_live(False, STALE, reason)

    def _read(self, reason: str) -> None:
        self.last_read = time.monotonic()
        if not self.live:
            self._set_live(True, "bus live", reason)

    def _set_live(self, live: bool, reason: str, detail: str) -> None:
        """Tell every client; `since` of a stale spell is when the data stopped."""
        now = time.time()
        since = now if live else now - (time.monotonic() - self.last_read)
        self.live, self.reason, self.since = live, reason, since
        if not self.tells_liveness:
            return
        clients = len(self.broadcaster.clients)
        if live:
            log.info("clients' data live: %s (%d clients told)", detail, clients)
        else:
            log.warning("clients' data stale: %s (%d clients told)", detail, clients)
        data = {"live": live, "reason": reason, "since": iso_ms(self.since)}
        for client in list(self.broadcaster.active()):
            client.send("data_status", data)
