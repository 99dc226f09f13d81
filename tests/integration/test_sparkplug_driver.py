"""The `sparkplug` driver (a host application) against the Sparkplug simulator, through a real
mosquitto: values exact, NDEATH -> stale, seq gap -> one rebirth request, reconnects."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from drivers.base import DriverContext
from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.driver import SparkplugDriver
from drivers.sparkplug.hostmap import SparkplugSettings
from drivers.sparkplug.topics import parse_state
from scada.core.config import DeviceConfig, PlantConfig, load_config
from scada.core.tags import Quality, TagSchema
from simulators.faults import FaultRequest
from simulators.plant import SIM_TAGS
from simulators.sparkplug_edge import SparkplugSimulator
from tests.conftest import eventually_async, scaled
from tests.mosquitto import Mosquitto, mosquitto  # noqa: F401  (fixture)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, scaled(120)))


def _driver(broker: Mosquitto, **settings: Any) -> tuple[SparkplugDriver, PlantConfig]:
    base = load_config(None)
    device = DeviceConfig(
        name="sp",
        driver="sparkplug",
        settings={
            "broker": {"url": broker.url, **broker.credentials("scada")},
            "edge_node": "simulator",
            **settings,
        },
    )
    config = base.model_copy(update={"devices": [device]})
    context = DriverContext(config, TagSchema(config.lines))
    driver = SparkplugDriver(device, SparkplugSettings.model_validate(device.settings), context)
    return driver, config


def _sim(broker: Mosquitto, config: PlantConfig, **kw: Any) -> SparkplugSimulator:
    settings = BrokerSettings(url=broker.url, **broker.credentials("edge"))
    return SparkplugSimulator(config, settings, update_interval=None, **kw)


class Probe:
    """An independent subscriber: every NCMD to the simulator and the STATE of our host."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.ncmd: list[sp.Payload] = []
        self.state: list[tuple[bool, int]] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def __aenter__(self) -> Probe:
        self._task = asyncio.create_task(self._run())
        await self.ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        kw = BrokerSettings(url=self.broker.url, **self.broker.credentials("probe")).client_kwargs()
        async with aiomqtt.Client(**kw) as client:
            await client.subscribe("spBv1.0/plant/NCMD/simulator", qos=1)
            await client.subscribe("spBv1.0/STATE/#", qos=1)
            self.ready.set()
            async for m in client.messages:
                data = m.payload if isinstance(m.payload, bytes) else b""
                if "/STATE/" in str(m.topic):
                    self.state.append(parse_state(data))
                else:
                    self.ncmd.append(sp.decode(data))


def _expected(sim: SparkplugSimulator, driver: SparkplugDriver) -> np.ndarray:
    by_key = {p.key: p for p in driver.points}
    out = np.full(len(driver.points), np.nan)
    for i, key in enumerate(driver._indices.tolist()):
        p = by_key[key]
        sample = sim.node.current.get((p.device, p.metric))
        if sample is not None and sample.value is not None:
            out[i] = float(sample.value)
    return out


async def _ticks_until(sim: SparkplugSimulator, done: Callable[[], Any], what: str) -> None:
    async def step() -> Any:
        await sim.tick()
        value = done()
        return await value if inspect.isawaitable(value) else value

    await eventually_async(step, timeout=20, interval=0.05, what=what)


def test_values_are_exact_and_a_dropped_edge_node_goes_stale(mosquitto: Mosquitto) -> None:  # noqa: F811
    """[tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale]
    [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-devices-tags-stale]
    [tck-id-host-topic-phid-birth-required] [tck-id-host-topic-phid-birth-payload-timestamp]"""

    async def body() -> None:
        driver, config = _driver(mosquitto)
        sim = _sim(mosquitto, config)
        async with Probe(mosquitto) as probe:
            await driver.connect()
            # our retained STATE birth
            await eventually_async(lambda: (True, driver._connect_ts) in probe.state, what="STATE")
            await sim.start()
            await sim.connected.wait()

            async def exact() -> bool:
                reading = await driver.read()
                good = (reading.quality == Quality.GOOD).all()
                return bool(good and np.array_equal(reading.values, _expected(sim, driver)))

            await sim.tick()
            await eventually_async(exact, what="driver values equal to the published ones")
            reading = await driver.read()
            assert len(reading.indices) == 8 * len(SIM_TAGS)
            assert probe.ncmd == []  # the driver was there for the birth: no rebirth needed
            assert driver.describe()["edge_nodes"]["simulator"]["online"] is True

            # connection_drop: the broker delivers the NDEATH will; every tag goes stale
            fault = sim.plant.inject(FaultRequest(kind="connection_drop"))
            await sim.tick()

            async def stale() -> bool:
                r = await driver.read()
                return bool((r.quality == Quality.STALE).all())

            await eventually_async(stale, timeout=10, what="stale after NDEATH")
            r = await driver.read()
            assert all("NDEATH" in why for why in r.reasons.values())
            assert driver.describe()["edge_nodes"]["simulator"]["deaths"] == 1

            # the source comes back: a new connect (bdSeq 1), a birth, good values again
            sim.plant.clear(fault.id)
            await _ticks_until(sim, lambda: sim.connected.is_set(), "simulator reconnected")
            await sim.tick()
            await eventually_async(exact, what="values again after the rebirth")
            assert driver.host.nodes["simulator"].bdseq == 1
            await sim.stop()
            await driver.close()
            # a clean close publishes the STATE death
            await eventually_async(lambda: probe.state[-1][0] is False, what="STATE death")

    run(body())


def test_a_seq_gap_brings_exactly_one_rebirth_request(mosquitto: Mosquitto) -> None:  # noqa: F811
    """[tck-id-operational-behavior-host-reordering-start]
    [tck-id-operational-behavior-host-reordering-rebirth]
    [tck-id-operational-behavior-data-commands-ncmd-rebirth-verb] -name -value
    [tck-id-topics-ncmd-mqtt] [tck-id-operational-behavior-data-commands-rebirth-action-3]"""

    async def body() -> None:
        driver, config = _driver(mosquitto, reorder_timeout=0.5, rebirth_retry=30)
        sim = _sim(mosquitto, config)
        async with Probe(mosquitto) as probe:
            await driver.connect()
            await sim.start()
            await sim.connected.wait()
            await _ticks_until(sim, lambda: driver.host.nodes["simulator"].born, "birth seen")
            births = driver.host.nodes["simulator"].births
            sim.plant.inject(FaultRequest(kind="seq_gap"))
            await _ticks_until(sim, lambda: len(probe.ncmd) >= 1, "a rebirth request")
            (ncmd,) = probe.ncmd
            (metric,) = ncmd.metrics
            assert metric.name == "Node Control/Rebirth" and metric.boolean_value is True
            assert not ncmd.HasField("seq")
            # the simulator answered with a birth (same bdSeq), and nothing more was asked for
            # while two more reorder timeouts' worth of contiguous data went by
            node = driver.host.nodes["simulator"]
            await _ticks_until(sim, lambda: node.births == births + 1, "the rebirth")
            assert node.bdseq == 0 and node.gaps == 1
            loop = asyncio.get_running_loop()
            until = loop.time() + 1.0
            await _ticks_until(sim, lambda: loop.time() > until, "a second of data")
            assert len(probe.ncmd) == 1
            assert driver.describe()["edge_nodes"]["simulator"]["rebirth_requests"] == 1
            await sim.stop()
            await driver.close()

    run(body())


def test_data_before_birth_asks_for_a_rebirth(mosquitto: Mosquitto) -> None:  # noqa: F811
    """A host that connects after the edge node's birth asks for one
    ([tck-id-operational-behavior-data-commands-ncmd-rebirth-verb])."""

    async def body() -> None:
        driver, config = _driver(mosquitto)
        sim = _sim(mosquitto, config)
        async with Probe(mosquitto) as probe:
            await sim.start()
            await sim.connected.wait()
            await driver.connect()
            await _ticks_until(sim, lambda: len(probe.ncmd) == 1, "a rebirth request")

            async def all_good() -> bool:
                reading = await driver.read()
                return bool((reading.quality == Quality.GOOD).all())

            # the NBIRTH and the 8 DBIRTHs after it
            await _ticks_until(sim, all_good, "every tag good after the rebirth")
            assert driver.host.nodes["simulator"].births == 1
            await sim.stop()
            await driver.close()

    run(body())


class SimulatorProcess:
    """`scada simulate sparkplug` in a subprocess, the way an engineer runs it."""

    def __init__(self, broker: Mosquitto, workdir: Path) -> None:
        self.broker = broker
        self.log = workdir / "sparkplug-sim.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SimulatorProcess:
        env = {**os.environ, "SIM_MQTT_PASSWORD": self.broker.users["edge"]}
        args = ["--broker", self.broker.url, "--username", "edge"]
        args += ["--password-env", "SIM_MQTT_PASSWORD"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scada", "simulate", "sparkplug", *args],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=scaled(10))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.kill()


def test_a_killed_simulator_goes_stale_and_a_restarted_one_is_read_again(
    mosquitto: Mosquitto,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`kill -9` of `scada simulate sparkplug`: the broker's NDEATH marks every tag stale at
    once ([tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline]);
    a new process is born and read again."""
    sim = SimulatorProcess(mosquitto, tmp_path).start()

    async def body() -> None:
        driver, _ = _driver(mosquitto)
        await driver.connect()

        async def quality(q: Quality) -> bool:
            r = await driver.read()
            return bool((r.quality == q).all()) and not np.isnan(r.values).all()

        try:
            await eventually_async(lambda: quality(Quality.GOOD), timeout=30, what="values")
            sim.kill()
            await eventually_async(lambda: quality(Quality.STALE), what="stale after kill -9")
            sim.start()
            await eventually_async(lambda: quality(Quality.GOOD), timeout=30, what="values again")
            node = driver.describe()["edge_nodes"]["simulator"]
            assert node["deaths"] == 1 and node["online"] is True
        finally:
            await driver.close()

    try:
        run(body())
    finally:
        sim.stop()
