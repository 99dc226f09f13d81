"""The `sparkplug` driver: a Sparkplug B host application that reads metrics of named edge
nodes and devices into tags (docs/sparkplug.md).

On connect it registers its STATE death as the will, subscribes to its own STATE topic and to
the watched edge nodes' topics, then publishes its retained STATE birth
([tck-id-host-topic-phid-birth-sub-required], [tck-id-host-topic-phid-birth-required]). Each
connect starts a fresh view: the first DATA of a node it has no birth of asks for a rebirth.
A read returns the latest value of every mapped metric (report by exception: a value holds
until it changes), stale at once after NDEATH/DDEATH, bad before a birth. Losing the broker
fails the read, so the poll loop marks the device bad and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import aiomqtt
import numpy as np

from drivers.base import Driver, DriverContext, DriverSettings, Reading, register
from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.aiomqtt_adapter import session
from drivers.sparkplug.host import HostSession
from drivers.sparkplug.hostmap import SparkplugSettings, resolve_points
from drivers.sparkplug.topics import (
    NAMESPACE,
    Topic,
    node_topic,
    parse_state,
    parse_topic,
    state_payload,
    state_topic,
)
from scada.core.config import DeviceConfig, PlantConfig
from scada.core.errors import DriverError
from scada.core.tags import Quality

log = logging.getLogger(__name__)

_QUALITY = {
    "good": Quality.GOOD,
    "uncertain": Quality.UNCERTAIN,
    "stale": Quality.STALE,
    "bad": Quality.BAD,
}
POLL_S = 0.1  # how often reorder timeouts are checked


def now_ms() -> int:
    return int(time.time() * 1000)


@register("sparkplug")
class SparkplugDriver(Driver):
    settings_model = SparkplugSettings

    def __init__(self, device: DeviceConfig, settings: DriverSettings, context: DriverContext):
        super().__init__(device, settings, context)
        assert isinstance(settings, SparkplugSettings)
        self.sp = settings
        index = {(r.line_id, r.name): r.index for r in context.schema.refs}
        points, problems = resolve_points(settings, device, context.config, index)
        if problems:
            raise DriverError(f"device {device.name!r}: {problems[0][0]}: {problems[0][1]}")
        self.points = points
        self.nodes = sorted({p.edge_node for p in points})
        self._indices = np.array([p.key for p in points], dtype=np.intp)
        self.host = self._new_host()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._connect_ts = 0
        self._closing = False

    def _new_host(self) -> HostSession:
        return HostSession(
            self.sp.group,
            self.nodes,
            reorder_timeout=self.sp.reorder_timeout,
            rebirth_retry=self.sp.rebirth_retry,
        )

    @classmethod
    def check(cls, device: DeviceConfig, config: PlantConfig, path: str) -> list[tuple[str, str]]:
        settings = SparkplugSettings.model_validate(device.settings)
        _, problems = resolve_points(settings, device, config, path=f"{path}.settings")
        problems += [(f"{path}.settings.broker.{k}", m) for k, m in settings.broker.problems()]
        return problems

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        self.host = self._new_host()
        self._ready.clear()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"sparkplug-{self.device.name}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._task.done():
            self._raise_failure(self._task)

    async def _run(self) -> None:
        host_id = self.sp.host_id
        self._connect_ts = now_ms()
        # [tck-id-host-topic-phid-death-required]: STATE death as the will, retained, QoS 1,
        # with the CONNECT's timestamp ([tck-id-host-topic-phid-death-payload-timestamp-connect])
        will = aiomqtt.Will(
            state_topic(host_id), state_payload(False, self._connect_ts), qos=1, retain=True
        )
        async with session(
            aiomqtt.Client(
                **self.sp.broker.client_kwargs(),
                identifier=f"{host_id}-{self.device.name}",
                will=will,
            )
        ) as client:
            self._client = client
            await client.subscribe(state_topic(host_id), qos=1)
            for node in self.nodes:
                await client.subscribe(f"{NAMESPACE}/{self.sp.group}/+/{node}", qos=0)
                await client.subscribe(f"{NAMESPACE}/{self.sp.group}/+/{node}/+", qos=0)
            await self._publish_state(online=True)
            log.info(
                "sparkplug host %s connected to %s, watching %s/%s",
                host_id,
                self.sp.broker.endpoint,
                self.sp.group,
                ",".join(self.nodes),
            )
            self._ready.set()
            ticker = asyncio.create_task(self._reorder_ticks(client))
            try:
                async for message in client.messages:
                    await self._handle(client, message)
            finally:
                ticker.cancel()
                self._client = None

    async def _publish_state(self, *, online: bool) -> None:
        """[tck-id-host-topic-phid-birth-qos] [tck-id-host-topic-phid-birth-retain]
        [tck-id-host-topic-phid-birth-payload-timestamp]: the birth carries the will's timestamp."""
        client = self._client
        if client is not None:
            ts = self._connect_ts if online else now_ms()
            await client.publish(
                state_topic(self.sp.host_id), state_payload(online, ts), qos=1, retain=True
            )

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = parse_topic(str(message.topic))
        data = message.payload if isinstance(message.payload, bytes) else b""
        if topic is None:
            return
        if not isinstance(topic, Topic):
            # Our own STATE: a death (an old will) while we are up is answered with a birth
            # ([tck-id-message-flow-hid-sparkplug-state-message-delivered]).
            with contextlib.suppress(sp.PayloadError):
                online, _ = parse_state(data)
                if not online and not self._closing:
                    await self._publish_state(online=True)
            return
        for node in self.host.receive(topic, data, time.monotonic()):
            await self._rebirth(client, node)

    async def _reorder_ticks(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            for node in self.host.poll(time.monotonic()):
                await self._rebirth(client, node)

    async def _rebirth(self, client: aiomqtt.Client, node: str) -> None:
        """[tck-id-operational-behavior-host-reordering-rebirth]: NCMD, QoS 0, not retained."""
        topic = node_topic(self.sp.group, "NCMD", node)
        await client.publish(topic, sp.rebirth_request(now_ms()), qos=0, retain=False)

    def _raise_failure(self, task: asyncio.Task[None]) -> None:
        err = task.exception() if not task.cancelled() else None
        reason = "connection closed" if err is None else str(err) or type(err).__name__
        raise DriverError(
            f"device {self.device.name!r}: broker {self.sp.broker.endpoint}: {reason}"
        ) from err

    # -- reads -----------------------------------------------------------------------------

    async def read(self) -> Reading:
        task = self._task
        if task is None or task.done():
            if task is None:
                raise DriverError(f"device {self.device.name!r}: not connected")
            self._raise_failure(task)
        n = len(self.points)
        values = np.full(n, np.nan)
        quality = np.full(n, Quality.BAD, dtype=np.uint8)
        times = np.full(n, time.time())
        reasons: dict[int, str] = {}
        for i, p in enumerate(self.points):
            mv, why = self.host.value(p.edge_node, p.device, p.metric)
            if mv is None:
                reasons[p.key] = why
                continue
            values[i] = _number(mv.value, p.tag.states)
            quality[i] = _QUALITY[mv.quality]
            if mv.timestamp:
                times[i] = mv.timestamp / 1000.0
            if mv.quality != "good":
                reasons[p.key] = why or f"{p.device}/{p.metric}: quality {mv.quality} at the source"
        return Reading(self._indices, values, quality, times, reasons)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # [tck-id-host-topic-phid-death-payload-timestamp-disconnect-clean]
        self._closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publish_state(online=False), 1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        return {
            "broker": self.sp.broker.endpoint,
            "host_id": self.sp.host_id,
            "group": self.sp.group,
            "edge_nodes": {
                name: {
                    "online": s.born,
                    "bdSeq": s.bdseq,
                    "births": s.births,
                    "deaths": s.deaths,
                    "seq_gaps": s.gaps,
                    "rebirth_requests": s.rebirth_requests,
                }
                for name, s in self.host.nodes.items()
            },
        }


def _number(value: sp.Value | None, states: list[str] | None) -> float:
    """A metric value as the tag store's float: a state's name becomes its index."""
    if isinstance(value, str) and states is not None and value in states:
        return float(states.index(value))
    number = sp.as_number(value)
    return number if math.isfinite(number) or math.isnan(number) else math.nan
