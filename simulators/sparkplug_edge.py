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
import time

import aiomqtt

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import EdgeNode, MetricDef, Publish, Sample
from drivers.sparkplug.edgeclient import EdgeClient, now_ms
from drivers.sparkplug.hostmap import device_id
from scada.core.config import PlantConfig
from scada.core.fixedrate import FixedRate
from simulators.plant import COL, SIM_TAGS
from simulators.scenario import ScheduledFault, load_scenario
from simulators.simulation import SimulatedPlant

log = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.1


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
        self.devices = [device_id(lid) for lid in line_ids]
        self.node = EdgeNode(group, edge_node, metric_defs(config), primary_host=primary_host)
        faults = self.plant.faults
        self.client = EdgeClient(
            self.node,
            broker,
            identifier=f"sparkplug-sim-{edge_node}",
            refresh=self.sample,
            offline=lambda: faults.source_fault("connection_drop"),
            deaf=lambda: faults.source_fault("server_unresponsive"),
            label="sparkplug simulator",
        )
        self.update_interval = update_interval
        self._task: asyncio.Task[None] | None = None
        self._gaps_done: set[int] = set()

    @property
    def connected(self) -> asyncio.Event:
        return self.client.connected

    async def start(self) -> None:
        self.sample()
        self.client.start()
        if self.update_interval is not None:
            self._task = asyncio.create_task(self._updates(self.update_interval))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.client.stop()

    async def _updates(self, interval: float) -> None:
        rate = FixedRate(interval)
        while True:
            try:
                await self.tick()
            except aiomqtt.MqttError:
                pass  # the session's message loop sees the loss too, and reconnects
            except Exception:
                log.exception("sparkplug simulator update failed")
            await rate.sleep()

    # -- plant -> metrics ------------------------------------------------------------------

    def sample(self) -> None:
        self.plant.advance_to(time.monotonic())
        values, valid = self.plant.sample()
        ts = now_ms()
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
        faults = self.plant.faults
        if faults.source_fault("connection_drop"):
            self.sample()
            if self.client.session_up:
                log.info("sparkplug simulator: connection_drop fault, cutting the connection")
                self.client.cut()
            return
        if faults.source_fault("server_unresponsive") or not await self.client.step(self._step):
            self.sample()

    def _step(self) -> list[Publish]:
        self.sample()
        for fault in self.plant.faults.active():
            if fault.request.kind == "seq_gap" and fault.id not in self._gaps_done:
                self._gaps_done.add(fault.id)
                self.node.skip_seq = 1
                log.info("sparkplug simulator: seq_gap fault, skipping one seq number")
        now = now_ms()
        out: list[Publish] = []
        silent = self.plant.model.overrides.silent
        for row, device in enumerate(self.devices):
            if silent[row]:
                out += self.node.device_death(device, now)
            else:
                out += self.node.device_alive(device, now)
        return out + self.node.changes(now)


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
