"""The all-in-one server's plant on an in-memory bus, so its hub is fed by the gateway's code.

One process plays both sides of the cluster's bus: its plant publishes what an active ingest
node publishes on Redis (each committed alarm event under its journal id, with its alarm's
state; one frame per tick), on a `MemoryBus` whose epoch is the journal's own (the journal
outlives the bus across a restart, so a client's cursor stays good); the hub reads it through
the gateway's `BusSource` and `GatewayFeed`. What differs is composition only:
- the broadcaster is the plant's (its stats are the tick's), and the source's tick is the
  plant's tick (`Runtime.after_tick`), not a second fixed-rate loop;
- a resume older than the ring is served from the journal (`AlarmService.replay`);
- a command is applied by the local alarm service; its events reach every client through the
  bus (as on a gateway), so nothing is announced beside it; nor is the flood state, which
  each frame carries.
Frames carry the lines that changed, every line in the first one (what the clients get is
what the all-in-one server always sent).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import orjson

from scada.alarms.service import AlarmService
from scada.auth.audit import Auditor
from scada.bus.membus import MemoryBus
from scada.core.alarmevent import AlarmEvent
from scada.core.config import PlantConfig
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import Broadcaster
from scada.plant.runtime import Runtime
from scada.roles.gateway.bussource import BusSource
from scada.roles.ingest.framepublish import frame_payload
from scada.web.hub.wscommands import AlarmCommands

log = logging.getLogger(__name__)

# 1 s of ticks: the feed reads each frame as it comes, on the event loop of the tick that
# publishes it (whenever the tick yields), so it is never ten ticks behind. 100, as on a
# gateway's Redis, only kept 200 KB of frames already read (in the bench's RSS per connection).
FRAMES_MAXLEN = 10


def encode(event: AlarmEvent) -> bytes:
    """An alarm entry's payload: the event's journal record (as the outbox publishes it).

    Copied to its own size: orjson returns its working buffer (4 to 16 KB measured for a
    600-byte event), and the bus and the hub's ring keep `[cluster] ring_size` entries
    (docs/operations.md, "Memory"): 11,000 typical events took 89 MiB that way, 9 MiB copied.
    """
    return bytes(memoryview(orjson.dumps(event.to_record())))


class LocalSource(BusSource):
    """The hub's plant source: the gateway's, over the local bus, following config reloads.
    The data are always live to its clients (docs/protocol.md): the plant is this process's
    own, and stale values are marked per tag, not per bus."""

    tells_liveness = False
    stamps_with_event_time = True  # a tick's alarm frames share its production data's stamp

    def __init__(
        self, runtime: Runtime, bus: MemoryBus, broadcaster: Broadcaster, alarms: AlarmService
    ) -> None:
        super().__init__(
            runtime.config, bus, broadcaster=broadcaster, archive=alarms.replay, housekeeping=False
        )
        self.runtime = runtime

    @property
    def config(self) -> PlantConfig:
        return self.runtime.config


class Delivered:
    """The alarm service's operator actions, each returning once the hub's feed has read the
    events it committed: its clients get those events before the action's reply, as they
    always did on the all-in-one server."""

    def __init__(self, service: AlarmService, source: LocalSource) -> None:
        self.service = service
        self.source = source

    async def _delivered(self) -> None:
        deadline = self.source.config.cluster.read_deadline
        await self.source.feed.ring.reach(self.service.cursor(), timeout=deadline)

    async def ack(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        events = await self.service.ack(*args, **kwargs)
        await self._delivered()
        return events

    async def ack_many(
        self, *args: Any, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        answer = await self.service.ack_many(*args, **kwargs)
        await self._delivered()
        return answer

    async def shelve(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        events = await self.service.shelve(*args, **kwargs)
        await self._delivered()
        return events

    async def unshelve(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        events = await self.service.unshelve(*args, **kwargs)
        await self._delivered()
        return events


class LocalCommands(AlarmCommands):
    """ack, shelve, unshelve applied by the local alarm service; the events they commit reach
    the clients through the bus, like every other committed event (before the reply)."""

    def __init__(
        self,
        source: LocalSource,
        broadcaster: Broadcaster,
        auditor: Auditor | None,
        service: AlarmService,
    ) -> None:
        super().__init__(source, broadcaster, auditor)
        self.service = Delivered(service, source)

    def _service(self) -> Any:
        return self.service

    def announce(self, events: list[dict[str, Any]]) -> None:
        """Nothing: committed events are on the bus already."""

    def announce_flood(self, data: dict[str, Any]) -> None:
        """Nothing: the next frame carries the flood state."""


class LocalBus:
    """The publishing side: the plant's committed alarm events and ticks on the MemoryBus."""

    def __init__(
        self,
        runtime: Runtime,
        alarms: AlarmService,
        broadcaster: Broadcaster,
        *,
        alarms_maxlen: int,
        frames_maxlen: int = FRAMES_MAXLEN,
    ) -> None:
        self.bus = MemoryBus(plain_epoch=True)
        self.lease = self.bus.lease("all-in-one", ttl=math.inf)  # one process, never handed over
        self.runtime = runtime
        self.alarms = alarms
        self.alarms_maxlen = alarms_maxlen
        self.frames_maxlen = frames_maxlen
        self.source = LocalSource(runtime, self.bus, broadcaster, alarms)
        self.epoch: str | None = None
        self._fence = ""
        self._full = True
        alarms.on_committed(self._committed)
        runtime.on_frame(self._frame)
        runtime.after_tick(self.source.tick)

    async def start(self, timeout: float = 10.0) -> None:
        """After the alarm service started, before the runtime: the epoch and state as of
        the journal's cursor and a full frame of the lines as they are, then the hub's feed,
        returning once it has read them (a client let in from then on gets the snapshot it
        got from the runtime itself: every line, the alarms, the flood state, the epoch)."""
        if not await self.lease.try_acquire():
            raise RuntimeError("the in-memory bus's lease is taken")
        self._fence = self.lease.fence()
        epoch, _ = await self.bus.ensure_epoch(self._fence, self.alarms.epoch())
        states = [(ev.alarm, encode(ev)) for ev in self.alarms.engine.current()]
        await self.bus.seed_state(self._fence, epoch, self.alarms.cursor(), states)
        self.epoch = epoch
        self._frame(iso_ms(time.time()), [])
        await self.source.start()
        source = self.source
        deadline = time.monotonic() + timeout
        while source.feed.ring.epoch != epoch or source.frames_read == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the hub's feed did not read the in-memory bus")
            await asyncio.sleep(0.005)  # the feed's task runs meanwhile; start-up only

    async def stop(self) -> None:
        await self.source.stop()

    def _committed(self, events: Sequence[AlarmEvent]) -> None:
        """Every commit, on the event loop, before anything else yields: in journal order."""
        if self.epoch is None:
            return  # before start: the state seeded at start includes it
        entries = [(ev.event_id or 0, encode(ev), ev.alarm) for ev in events]
        self.bus.publish_alarms_now(self._fence, self.epoch, entries, maxlen=self.alarms_maxlen)

    def _frame(self, stamp: str, changed: list[dict[str, Any]]) -> None:
        if self.epoch is None:
            return
        full, self._full = self._full, False
        lines = self.runtime.line_samples() if full else changed
        payload = frame_payload(stamp, lines, full, self.alarms.flood())
        self.bus.publish_frame_now(self._fence, payload, maxlen=self.frames_maxlen)
