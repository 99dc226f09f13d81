"""The simulated plant as a Sparkplug B edge node (`scada simulate sparkplug`).

One edge node (default id `simulator`, group `plant`) with each line as a device
`line<id>`, every simulator tag of the line as a Double metric (`state` as Int32). Values are published by exception at each update
(100 ms): the plant's noise moves every analog value, so a running line reports them all.

Faults (the same as the Modbus and OPC UA simulators', docs/drivers.md):
- `connection_drop`: the MQTT connection is cut without DISCONNECT (the broker publishes the
  NDEATH will) and stays down until the fault clears; then a new connect, bdSeq + 1, birth.
- `server_unresponsive`: nothing is published and no command answered until it clears.
- `source_stop` of a line: DDEATH of its device, DBIRTH when it clears.
- `sensor_dropout`: the metric is null (is_null) with Quality 0.
- `seq_gap` (this simulator only): the next message skips one seq number, once per fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

import aiomqtt

from drivers.sparkplug import payload as sp
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import EdgeNode, MetricDef, Outcome, Publish, Sample
from drivers.sparkplug.settings import device_id
from drivers.sparkplug.topics import StateTopic, parse_topic, state_topic
from scada.core.config import PlantConfig
from scada.core.fixedrate import FixedRate
from simulators.plant import COL, SIM_TAGS
from simulators.runtime import SimulatedPlant
from simulators.scenario import ScheduledFault, load_scenario

log = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.1
RECONNECT_S = 0.5


def metric_defs(config: PlantConfig) -> dict[str, list[MetricDef]]:
    """The devices of the simulated plant: each line's simulator tags with their unit."""
    devices: dict[str, list[MetricDef]] = {}
    for line in config.lines:
        defs = []
        for name in SIM_TAGS:
            tag = line.tags.get(name)
            props = {"engUnit": sp.Prop(sp.DataType.STRING, tag.unit)} if tag and tag.unit else {}
            datatype = sp.DataType.INT32 if name == "state" else sp.DataType.DOUBLE
            defs.append(MetricDef(name, datatype, props))
        devices[device_id(line.id)] = defs
    return devices


class SparkplugSimulator:
    """The plant behind a Sparkplug edge node; `start()`/`stop()`. With
    `update_interval=None` nothing updates by itself: call `tick()` (tests)."""

    def __init__(
        self,
        config: PlantConfig,
        broker: BrokerSettings,
        *,
        group: str = "plant",
        edge_node: str = "simulator",
        primary_host: str | None = None,
        scenario: str | list[ScheduledFault] | None = None,
        update_interval: float | None = UPDATE_INTERVAL_S,
        plant: SimulatedPlant | None = None,
    ) -> None:
        line_ids = [line.id for line in config.lines]
        if isinstance(scenario, str):
            scenario = load_scenario(scenario, line_ids)
        elif scenario is None and config.simulator.scenario:
            scenario = load_scenario(config.simulator.scenario, line_ids)
        self.plant = plant or SimulatedPlant(
            config.lines, seed=config.simulator.seed, scenario=scenario
        )
        self.broker = broker
        self.devices = [device_id(lid) for lid in line_ids]
        self.node = EdgeNode(group, edge_node, metric_defs(config), primary_host=primary_host)
        self.update_interval = update_interval
        self.published: list[Publish] = []  # the last tick's messages (tests)
        self.connected = asyncio.Event()  # set while a session is up
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._gaps_done: set[int] = set()
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.sample()
        self._task = asyncio.create_task(self._run(), name="sparkplug-sim")

    async def stop(self) -> None:
        """A deliberate disconnect: NDEATH first, then DISCONNECT
        ([tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath])."""
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send(client, [self.node.death()]), 2.0)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            while self.plant.faults.source_fault("connection_drop"):
                self.sample()
                await asyncio.sleep(UPDATE_INTERVAL_S)
            try:
                await self._session()
            except aiomqtt.MqttError as err:
                log.info("sparkplug simulator: connection lost (%s), reconnecting", err)
            finally:
                self._client = None
                self.connected.clear()
                self.node.disconnected()
            await asyncio.sleep(RECONNECT_S)

    async def _session(self) -> None:
        will = self.node.connecting()
        async with aiomqtt.Client(
            **self.broker.client_kwargs(),
            identifier=f"sparkplug-sim-{self.node.node_id}",
            will=aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain),
        ) as client:
            # [tck-id-message-flow-edge-node-ncmd-subscribe] [tck-id-message-flow-device-dcmd-subscribe]
            await client.subscribe(self.node.ncmd_topic, qos=1)
            await client.subscribe(self.node.dcmd_topic, qos=1)
            if self.node.primary_host is not None:
                await client.subscribe(state_topic(self.node.primary_host), qos=1)
            self._client = client
            async with self._lock:
                self.sample()
                await self._apply(client, self.node.connected(_now_ms()))
            self.connected.set()
            log.info(
                "sparkplug simulator: edge node %s/%s connected to %s (bdSeq %d)",
                self.node.group,
                self.node.node_id,
                self.broker.endpoint,
                self.node.bdseq,
            )
            ticker = None
            if self.update_interval is not None:
                ticker = asyncio.create_task(self._updates(self.update_interval))
            try:
                async for message in client.messages:
                    if await self._handle(client, message):
                        return
            finally:
                if ticker is not None:
                    ticker.cancel()

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> bool:
        """One incoming message; True when the session must end (primary host offline)."""
        if self.plant.faults.source_fault("server_unresponsive"):
            return False
        topic = parse_topic(str(message.topic))
        data = message.payload if isinstance(message.payload, bytes) else b""
        async with self._lock:
            if topic is None:
                return False
            if isinstance(topic, StateTopic):
                out = self.node.on_state(topic.host_id, data, _now_ms())
            else:
                self.sample()
                out = self.node.on_command(topic.device, data, _now_ms())
                for write in out.writes:
                    log.info("sparkplug simulator: refused write of %s (read-only)", write.metric)
            await self._apply(client, out)
        return out.disconnect

    async def _updates(self, interval: float) -> None:
        rate = FixedRate(interval)
        while True:
            try:
                await self.tick()
            except aiomqtt.MqttError:
                return  # the session's message loop sees the loss too
            except Exception:
                log.exception("sparkplug simulator update failed")
            await rate.sleep()

    # -- plant -> metrics ------------------------------------------------------------------

    def sample(self) -> None:
        self.plant.advance_to(time.monotonic())
        values, valid = self.plant.sample()
        ts = _now_ms()
        for row, device in enumerate(self.devices):
            samples = {}
            for name in SIM_TAGS:
                col = COL[name]
                ok = bool(valid[row, col])
                v: float | int | None = float(values[row, col]) if ok else None
                if name == "state" and v is not None:
                    v = int(v)
                q = sp.SpQuality.GOOD if ok else sp.SpQuality.BAD
                samples[name] = Sample(v, ts, q, None if ok else "bad")
            self.node.set_values(device, samples)

    async def tick(self) -> None:
        """Advance the plant, act on source faults, publish what changed."""
        client = self._client
        async with self._lock:
            self.sample()
            faults = self.plant.faults
            if faults.source_fault("connection_drop") and client is not None:
                log.info("sparkplug simulator: connection_drop fault, cutting the connection")
                _cut(client)
                return
            if faults.source_fault("server_unresponsive") or client is None:
                return
            for fault in faults.active():
                if fault.request.kind == "seq_gap" and fault.id not in self._gaps_done:
                    self._gaps_done.add(fault.id)
                    self.node.skip_seq = 1
                    log.info("sparkplug simulator: seq_gap fault, skipping one seq number")
            now = _now_ms()
            out: list[Publish] = []
            silent = self.plant.model.overrides.silent
            for row, device in enumerate(self.devices):
                if silent[row]:
                    out += self.node.device_death(device, now)
                else:
                    out += self.node.device_alive(device, now)
            out += self.node.changes(now)
            await self._send(client, out)

    async def _apply(self, client: aiomqtt.Client, out: Outcome) -> None:
        await self._send(client, out.publish)
        if out.disconnect:
            log.info("sparkplug simulator: primary host offline, disconnected")

    async def _send(self, client: aiomqtt.Client, messages: list[Publish]) -> None:
        self.published = messages
        for m in messages:
            await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)


def _cut(client: aiomqtt.Client) -> None:
    """Drop the TCP connection without an MQTT DISCONNECT, like a pulled cable: the broker
    then publishes the will (NDEATH)."""
    sock = client._client.socket()  # the paho client's socket
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def serve_sparkplug(
    config: PlantConfig,
    broker: BrokerSettings,
    *,
    group: str = "plant",
    edge_node: str = "simulator",
    primary_host: str | None = None,
    scenario: str | None = None,
) -> None:
    """Publish the simulated plant until cancelled (`scada simulate sparkplug`)."""
    sim = SparkplugSimulator(
        config,
        broker,
        group=group,
        edge_node=edge_node,
        primary_host=primary_host,
        scenario=scenario,
    )
    await sim.start()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await sim.stop()
