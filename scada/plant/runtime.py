"""The running plant: drivers, tag store, alarms and historian, and the tick that feeds them.

The tick knows no delivery: whoever shows the plant subscribes to its hooks (`on_alarms`,
`on_frame`, `after_tick`; the all-in-one server wires its in-memory bus so, an ingest node its
Redis publisher and its own broadcaster). The app's lifespan calls `start` and `stop`. The tick is fixed-rate: each deadline is the previous one plus the batch
interval, so work done inside a tick never makes the schedule drift.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import Metric

from drivers.base import DriverContext
from drivers.registry import create_driver
from scada.core.config import PlantConfig
from scada.core.errors import ScadaError, WriteFenced
from scada.core.fixedrate import FixedRate
from scada.core.stats import TickStats
from scada.core.tags import TagSchema
from scada.core.timefmt import iso_ms
from scada.plant.poller import DeviceState, Poller
from scada.plant.samples import SampleEncoder
from scada.plant.tagstore import TagStore
from scada.plant.trendring import HistoryRing

if TYPE_CHECKING:
    from scada.alarms.service import AlarmService
    from scada.historian.service import Historian

# Told after every tick: (the tick's stamp, the records of the lines that changed).
FrameTap = Callable[[str, list[dict[str, Any]]], None]
# Told of each tick's committed alarm events (before its frames): (events, the tick's stamp).
AlarmTap = Callable[[list[dict[str, Any]], str], None]

log = logging.getLogger(__name__)


class JournalFailure(ScadaError):
    """The alarm service could not evaluate or commit a tick's events."""


class AlarmsFenced(ScadaError):
    """The alarm journal refused this process as its writer (a deposed cluster node)."""


def _cause(err: BaseException) -> str:
    """The first cause in the chain ("database or disk is full"), not the wrapper."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err) or type(err).__name__


PRUNE_EVERY_S = 3600.0  # journal retention is applied this often


class Runtime:
    """Built complete: the alarm service and historian (if any) are passed in (the app starts
    and closes them around `start`/`stop`); `on_fatal` is told when the service cannot go on
    (the server then exits non-zero with that reason) instead of the runtime signalling its
    own process."""

    def __init__(
        self,
        config: PlantConfig,
        *,
        scenario: str | Path | None = None,
        alarms: AlarmService | None = None,
        historian: Historian | None = None,
        on_fatal: Callable[[str], None] | None = None,
        stats: TickStats | None = None,
    ) -> None:
        self.config = config
        self.schema = TagSchema(config.lines)
        self.store = TagStore(self.schema)
        self.encoder = SampleEncoder(self.schema)
        self.interval = config.server.batch_interval_ms / 1000.0
        capacity = int(config.server.history_seconds / self.interval) + 1
        self.history = HistoryRing(capacity, self.schema.size)
        # The simulated plant, if a device reads it, is built by its driver (drivers.sim).
        self.context = DriverContext(config=config, schema=self.schema, scenario=scenario)
        self.pollers = [
            Poller(create_driver(d, self.context), self.store, interval=d.poll_interval_ms / 1000.0)
            for d in config.devices
        ]
        self.stats = stats if stats is not None else TickStats()
        self.alarms = alarms
        self.historian = historian
        self._on_fatal = on_fatal
        self.fatal: str | None = None  # why the runtime stopped itself, if it did
        self.last_tick: float | None = None  # monotonic
        self._next_prune = time.monotonic() + 60.0
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None
        self._tick_listeners: list[Callable[[], None]] = []
        self._frame_taps: list[FrameTap] = []
        self._alarm_taps: list[AlarmTap] = []
        self._after_tick: list[Callable[[float], None]] = []
        # Set when the journal refused this process as its writer: the tick goes on without
        # alarm evaluation until `resume_alarms` (after the engine was restored).
        self.alarms_fenced = False
        # Per-runtime extras for /metrics (scada.web.metrics.MetricSource), read at scrape time.
        self.metric_sources: list[Callable[[], Iterable[Metric]]] = []

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        # Each data dir has its own users, tokens and journal: say which one this is, so a
        # switch of config (and so of data dir) is never a silent second admin.
        log.info(
            "data directory %s (users, tokens, alarm journal, history)",
            Path(self.config.server.data_dir).resolve(),
        )
        for poller in self.pollers:
            poller.start()
        self.last_tick = None
        self._task = asyncio.create_task(self._run(), name="broadcast-tick")
        log.info(
            "plant started: %d lines, %d tags, %d device(s), tick %d ms",
            len(self.schema.line_ids),
            self.schema.size,
            len(self.pollers),
            self.config.server.batch_interval_ms,
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*(p.stop() for p in self.pollers), return_exceptions=True)

    def apply_config(self, config: PlantConfig, schema: TagSchema) -> None:
        """Take a reloaded config whose structure is unchanged (scada.plant.reload checked that)."""
        self.config = config
        self.schema = schema
        self.store.schema = schema
        self.encoder = SampleEncoder(schema)

    def _fail(self, reason: str) -> None:
        self.fatal = reason
        log.critical("%s; stopping the server", reason)
        if self._on_fatal is not None:
            self._on_fatal(reason)

    async def _run(self) -> None:
        # Half a period after the pollers start: a device polled at the batch interval then
        # always lands between two ticks, never racing one (which loses ~4% of frames).
        rate = FixedRate(self.interval, phase=-self.interval / 2)
        stats = self.stats
        failing = 0
        while True:
            started = time.perf_counter()  # uvloop's loop.time() has 1 ms steps
            try:
                await self.tick()
                if failing:
                    log.info("broadcast ticks recovered after %d failed tick(s)", failing)
                    failing = 0
            except asyncio.CancelledError:
                raise
            except AlarmsFenced as err:
                self.alarms_fenced = True
                log.warning("alarm evaluation stopped: %s", _cause(err))
            except JournalFailure as err:
                # Going on would announce alarms that are on no record: stop instead.
                self._fail(f"alarm journal write failed: {_cause(err)}")
                return
            except Exception:
                stats.errors += 1
                if not failing:  # one traceback per streak, not ten a second
                    log.exception("broadcast tick failed")
                failing += 1
            finished = time.perf_counter()
            stats.tick_ms.append((finished - started) * 1000)
            stats.tick_seconds_sum += finished - started
            stats.ticks += 1
            if await rate.sleep():
                stats.tick_overruns += 1

    # -- one tick ------------------------------------------------------------------------

    def device_ok(self) -> dict[str, bool]:
        # A device still making its first connection is not a comms failure yet.
        return {p.status.name: p.status.state is not DeviceState.FAILED for p in self.pollers}

    async def tick(self) -> None:
        mono, now = time.monotonic(), time.time()
        store = self.store
        store.refresh(mono)
        stamp = iso_ms(now)
        if self.alarms is not None and not self.alarms_fenced:
            # Committed to the journal before anyone is told, and sent before production data.
            try:
                events = await self.alarms.tick(
                    now, store.values, store.quality, self.device_ok(), mono=mono
                )
            except WriteFenced as err:
                raise AlarmsFenced(str(err)) from err
            except Exception as err:
                raise JournalFailure from err
            if events:
                for alarm_tap in self._alarm_taps:
                    alarm_tap(events, stamp)
        dirty = store.take_dirty()
        samples = self.encoder.encode(store, dirty) if len(dirty) else []
        for tap in self._frame_taps:
            tap(stamp, samples)
        self.history.append(now, store.history_row())
        if self.historian is not None:
            self.historian.record(now, store.values, store.quality)  # a copy; no disk I/O
        for after in self._after_tick:
            after(mono)
        self.last_tick = mono
        if self.alarms is not None and mono >= self._next_prune:
            self._next_prune = mono + PRUNE_EVERY_S
            removed = await self.alarms.prune()
            if removed:
                log.info("journal retention removed %d old event(s)", removed)
        for listener in self._tick_listeners:
            listener()

    def on_tick(self, listener: Callable[[], None]) -> None:
        self._tick_listeners.append(listener)

    def on_alarms(self, tap: AlarmTap) -> None:
        """Call `tap(events, stamp)` with each tick's committed alarm events, before its frames."""
        self._alarm_taps.append(tap)

    def after_tick(self, listener: Callable[[float], None]) -> None:
        """Call `listener(monotonic now)` at the end of every tick (delivery housekeeping)."""
        self._after_tick.append(listener)

    @property
    def plant(self) -> Any:
        """The simulated plant (simulators.simulation.SimulatedPlant), None without a sim device."""
        return self.context.plant

    def on_frame(self, tap: FrameTap) -> None:
        """Call `tap(stamp, changed records)` after every tick's production data (even none)."""
        self._frame_taps.append(tap)

    # -- views ---------------------------------------------------------------------------

    def line_samples(self, line_ids: list[str] | None = None) -> list[dict[str, Any]]:
        ids = self.schema.line_ids
        positions = range(len(ids)) if line_ids is None else [ids.index(i) for i in line_ids]
        return self.encoder.encode(self.store, np.array(list(positions), dtype=np.intp))

    def ticking(self) -> bool:
        return self.last_tick is not None and time.monotonic() - self.last_tick < 1.0
