"""The service's Sparkplug edge node: start()/stop() around the plant's runtime, tick() after
each plant tick (docs/sparkplug.md).

After every tick (at most every `publish_interval_ms`) the tags whose rounded value or quality
changed, and the alarm metrics that changed, go to the session, which publishes a DDATA per
device with the metrics past their deadband. A birth (first connect, a rebirth request, the
primary host back) carries every metric's current value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from drivers.sparkplug.edge import EdgeNode, EdgeState, Publish, Write
from drivers.sparkplug.edgeclient import EdgeClient, now_ms
from scada.core.config import LineConfig
from scada.core.tags import TagSchema
from scada.sparkplug.edgeconfig import EdgeSettings
from scada.sparkplug.plantmetrics import AlarmInfo, PlantMetrics
from scada.sparkplug.writes import Acknowledge, EdgeWrites, WriteGate

log = logging.getLogger(__name__)


class StoreView(Protocol):
    """What the edge node reads of the tag store."""

    values: np.ndarray
    quality: np.ndarray
    source_time: np.ndarray


AlarmsCurrent = Callable[[], list[dict[str, Any]]]


class SparkplugEdge:
    def __init__(
        self,
        settings: EdgeSettings,
        schema: TagSchema,
        store: StoreView,
        *,
        alarm_defs: Iterable[AlarmInfo] = (),
        alarms_current: AlarmsCurrent | None = None,
        alarms_version: Callable[[], object] | None = None,
        identifier: str | None = None,
        next_bdseq: Callable[[], Awaitable[int]] | None = None,
        gate: WriteGate | None = None,
        acknowledge: Acknowledge | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        lines: list[LineConfig] = [
            line for line in schema.lines if settings.lines == "*" or line.id in settings.lines
        ]
        self.alarms_current = alarms_current if settings.alarms else None
        self.alarms_version = alarms_version or (lambda: None)
        self.metrics = PlantMetrics(
            schema,
            lines,
            alarm_defs if self.alarms_current is not None else (),
            settings.deadband,
        )
        self.node = EdgeNode(
            settings.group,
            settings.edge_node,
            self.metrics.defs(),
            primary_host=settings.primary_host,
        )
        self.client = EdgeClient(
            self.node,
            settings.broker,
            identifier=identifier or f"sparkplug-{settings.group}-{settings.edge_node}",
            refresh=self._refresh,
            on_writes=self._on_writes,
            next_bdseq=next_bdseq,
            label="sparkplug edge node",
        )
        self.writes = EdgeWrites(settings.writes, gate, alarms_current, acknowledge)
        self._write_tasks: set[asyncio.Task[None]] = set()
        self.interval = settings.publish_interval_ms / 1000.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.client.start()
        self._task = asyncio.create_task(self._publisher(), name="sparkplug-publish")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.client.stop()

    def tick(self) -> None:
        """After a plant tick (Runtime.on_tick): publish what changed, soon."""
        self._wake.set()

    def describe(self) -> dict[str, Any]:
        node = self.node
        return {
            "broker": self.settings.broker.endpoint,
            "group": node.group,
            "edge_node": node.node_id,
            "state": node.state.value,
            "bdSeq": node.bdseq,
            "births": node.births,
            "messages": self.client.sent,
            "values": node.values_sent,
            "writes_applied": self.writes.applied,
            "writes_refused": self.writes.refused,
        }

    def prometheus(self) -> Iterator[Metric]:
        """For /metrics (Runtime.metric_sources)."""
        node = self.node
        yield GaugeMetricFamily(
            "scada_sparkplug_online",
            "1 while the edge node is born on the broker (births sent, data flowing).",
            1.0 if node.state is EdgeState.ONLINE else 0.0,
        )
        yield GaugeMetricFamily(
            "scada_sparkplug_bdseq", "bdSeq of the current session.", node.bdseq
        )
        yield CounterMetricFamily(
            "scada_sparkplug_births", "NBIRTH sequences sent.", value=node.births
        )
        yield CounterMetricFamily(
            "scada_sparkplug_messages", "Sparkplug messages published.", value=self.client.sent
        )
        yield CounterMetricFamily(
            "scada_sparkplug_values", "Metric values published in DATA.", value=node.values_sent
        )
        yield CounterMetricFamily(
            "scada_sparkplug_writes_applied", "DCMD writes applied.", value=self.writes.applied
        )
        yield CounterMetricFamily(
            "scada_sparkplug_writes_refused", "DCMD writes refused.", value=self.writes.refused
        )

    async def _publisher(self) -> None:
        next_at = 0.0
        while True:
            await self._wake.wait()
            wait = next_at - time.monotonic()
            if wait > 0:  # a publish interval longer than the tick: skip ticks
                await asyncio.sleep(wait)
            self._wake.clear()
            next_at = time.monotonic() + self.interval
            try:
                await self.client.step(self._changes)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the session notices a lost broker and reconnects
                log.debug("sparkplug edge node: publish failed: %s", err)

    def _on_writes(self, writes: list[Write]) -> None:
        task = asyncio.create_task(self.writes.apply(writes), name="sparkplug-writes")
        self._write_tasks.add(task)
        task.add_done_callback(self._write_tasks.discard)

    def _refresh(self) -> None:
        """Every metric's current value into the session (before a birth)."""
        self._load(full=True)

    def _changes(self) -> list[Publish]:
        self._load(full=False)
        return self.node.changes(now_ms())

    def _load(self, *, full: bool) -> None:
        store = self.store
        samples = self.metrics.tag_samples(
            store.values, store.quality, store.source_time, full=full
        )
        if self.alarms_current is not None:
            with contextlib.suppress(Exception):
                extra = self.metrics.alarm_samples(
                    self.alarms_current(), now_ms(), full=full, version=self.alarms_version()
                )
                for device, values in extra.items():
                    samples.setdefault(device, {}).update(values)
        for device, values in samples.items():
            self.node.set_values(device, values)


def alarm_infos(defs: Iterable[Any]) -> list[AlarmInfo]:
    """The line alarms of the alarm engine's definitions (device alarms have no line)."""
    return [AlarmInfo(d.name, d.line_id, d.severity) for d in defs if d.line_id is not None]
