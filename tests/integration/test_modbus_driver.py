"""The Modbus driver against the real Modbus simulator (pymodbus server) on a free port.

Server and driver share one event loop; the server is a real TCP listener on loopback, so
killing it, silencing it and refusing connections behave as with a PLC on the network.
"""

from __future__ import annotations

import asyncio
import copy
import time
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.base import DriverContext
from drivers.modbus import ModbusDriver
from drivers.registry import create_driver
from scada.core.config import PlantConfig, config_from_dict
from scada.core.errors import DriverError
from scada.core.tags import Quality, TagSchema
from scada.plant.poller import Poller
from scada.plant.tagstore import TagStore
from simulators.faults import parse_fault
from simulators.modbus_server import ModbusSimulator
from simulators.plant import COL, RUNNING
from tests.conftest import eventually_async, scaled

ROOT = Path(__file__).resolve().parents[2]
RAW = tomllib.loads((ROOT / "config" / "modbus.toml").read_text("utf-8"))

# Tolerance of each tag read back: floats are float32 on the wire, the rest scaled integers.
TOLERANCE = {"line_speed": 0.0051, "motor_current": 0.051, "melt_pressure": 0.051, "state": 0.0}


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 60))


def plant_config(
    port: int, settings: dict[str, Any] | None = None, raw: dict[str, Any] | None = None
) -> PlantConfig:
    data = copy.deepcopy(raw or RAW)
    device = data["devices"][0]
    device["settings"]["port"] = port
    _merge(device["settings"], settings or {})
    return config_from_dict(data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def make_driver(config: PlantConfig) -> ModbusDriver:
    driver = create_driver(config.devices[0], DriverContext(config, TagSchema(config.lines)))
    assert isinstance(driver, ModbusDriver)
    return driver


async def until(predicate: Callable[[], bool], timeout: float) -> float:
    """Poll `predicate` until true (conftest's eventually); return the seconds it took."""
    start = time.monotonic()
    await eventually_async(predicate, timeout, interval=0.005)
    return time.monotonic() - start


def _by_tag(
    driver: ModbusDriver, reading_values: np.ndarray, indices: np.ndarray
) -> dict[tuple[str, str], float]:
    schema = driver.context.schema
    return {
        (schema.refs[i].line_id, schema.refs[i].name): float(v)
        for i, v in zip(indices.tolist(), reading_values.tolist(), strict=True)
    }


# ---------------------------------------------------------------------------------------------


def test_values_match_the_simulated_plant() -> None:
    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(RAW), port=0, update_interval=None)
        async with sim:
            driver = make_driver(plant_config(sim.port))
            await driver.connect()
            try:
                for _ in range(3):  # a few plant states, published by hand: no timing slack
                    await sim.tick(time.monotonic() + 1.0)
                    reading = await driver.read()
                    assert (reading.quality == Quality.GOOD).all(), reading.reasons
                    assert sorted(reading.indices.tolist()) == driver.indices.tolist()
                    got = _by_tag(driver, reading.values, reading.indices)
                    for pos, line_id in enumerate(sim.plant.line_ids):
                        for name, col in COL.items():
                            want = sim.values[pos, col]
                            tol = TOLERANCE.get(name)
                            if tol is None:  # float32
                                assert got[(line_id, name)] == pytest.approx(want, rel=1e-6)
                            else:
                                assert abs(got[(line_id, name)] - want) <= tol, (line_id, name)
            finally:
                await driver.close()
            assert driver.describe()["requests_per_poll"] == 8

    run(main)


def test_bits_coils_holding_and_wide_types() -> None:
    """Discrete inputs, coils, a bit in a register, holding registers, uint32 and float64."""
    raw = copy.deepcopy(RAW)
    extra = {
        "running": ({"table": "discrete", "address": 0}, None),
        "run_enable": ({"table": "coil", "address": 0}, None),
        "heater_1_on": ({"table": "input", "address": 16, "type": "bit", "bit": 4}, None),
        "heartbeat": ({"table": "input", "address": 18, "type": "uint32"}, None),
        "plant_time": ({"table": "input", "address": 20, "type": "float64"}, None),
        "diameter_sp": ({"table": "holding", "address": 10, "type": "float32"}, None),
    }
    for name, (entry, _) in extra.items():
        raw["line_defaults"]["tags"][name] = {"description": name}
        raw["devices"][0]["settings"]["map"][name] = entry

    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(raw), port=0, update_interval=None)
        async with sim:
            driver = make_driver(plant_config(sim.port, raw=raw))
            # Per unit: input, holding, discrete and coil requests.
            assert len(driver.plan) == 8 * 4
            await driver.connect()
            await sim.tick(time.monotonic() + 0.5)
            reading = await driver.read()
            await driver.close()
        assert (reading.quality == Quality.GOOD).all(), reading.reasons
        got = _by_tag(driver, reading.values, reading.indices)
        for pos, lid in enumerate(sim.plant.line_ids):
            assert got[(lid, "running")] == float(sim.values[pos, COL["state"]] == RUNNING)
            assert got[(lid, "run_enable")] == 1.0
            assert got[(lid, "heater_1_on")] == 1.0
            assert got[(lid, "heartbeat")] == sim.heartbeat
            assert got[(lid, "plant_time")] == sim.plant.model.time
            want_sp = sim.plant.model.params[pos].diameter_setpoint
            assert got[(lid, "diameter_sp")] == pytest.approx(want_sp, rel=1e-6)

    run(main)


def test_exception_response_marks_only_its_tags_bad() -> None:
    # Line 3's diameter at an address the PLC does not have: its request gets exception 2.
    settings = {"lines": {"3": {"map": {"diameter": {"address": 9000}}}}}

    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(RAW), port=0, update_interval=None)
        async with sim:
            driver = make_driver(plant_config(sim.port, settings))
            assert len(driver.plan) == 9
            await driver.connect()
            await sim.tick()
            reading = await driver.read()
            # A silenced line (source_stop) answers exception 11, again only for its tags.
            sim.plant.inject(parse_fault({"line": "5", "kind": "source_stop"}))
            reading2 = await driver.read()
            await driver.close()
        schema = driver.context.schema
        bad_index = schema.index("3", "diameter")
        bad = reading.indices[reading.quality == Quality.BAD].tolist()
        assert bad == [bad_index]
        assert reading.reasons == {bad_index: "modbus exception 2 (illegal data address)"}
        assert np.isnan(reading.values[reading.indices == bad_index]).all()
        line5 = set(schema.line_indices(["5"]).tolist())
        bad2 = set(reading2.indices[reading2.quality == Quality.BAD].tolist())
        assert bad2 == line5 | {bad_index}
        assert {reading2.reasons[i] for i in line5} == {
            "modbus exception 11 (gateway target device failed to respond)"
        }

    run(main)


def test_sensor_dropout_reads_as_bad() -> None:
    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(RAW), port=0, update_interval=None)
        async with sim:
            driver = make_driver(plant_config(sim.port))
            await driver.connect()
            sim.plant.inject(parse_fault({"line": "2", "kind": "sensor_dropout", "tag": "*"}))
            await sim.tick()
            reading = await driver.read()
            await driver.close()
        line2 = set(driver.context.schema.line_indices(["2"]).tolist())
        assert set(reading.indices[reading.quality == Quality.BAD].tolist()) == line2

    run(main)


# ---------------------------------------------------------------------------------------------
# Comms faults through the real poll loop: bad within 1 s, good again within 3 s


async def _fault_cycle(
    fail: Callable[[ModbusSimulator], Coroutine[Any, Any, None]],
    recover: Callable[[ModbusSimulator], Coroutine[Any, Any, None]],
) -> tuple[float, float]:
    sim = ModbusSimulator(config_from_dict(RAW), port=0)
    await sim.start()
    config = plant_config(sim.port)
    driver = make_driver(config)
    store = TagStore(driver.context.schema)
    poller = Poller(driver, store, interval=0.1)
    idx = driver.indices
    poller.start()
    try:
        await until(lambda: bool((store.quality[idx] == Quality.GOOD).all()), 3.0)
        await fail(sim)
        to_bad = await until(lambda: bool((store.quality[idx] == Quality.BAD).all()), 1.0)
        assert poller.status.state == "failed"
        failed_at = time.monotonic()
        await recover(sim)
        recovered = time.monotonic()
        # Good again only with fresh data, read after the device came back.
        to_good = await until(
            lambda: bool(
                (store.quality[idx] == Quality.GOOD).all()
                and (store.fresh_at[idx] > recovered).all()
            ),
            3.0,
        )
        assert failed_at < recovered
        assert poller.status.reconnects >= 1
        return to_bad, to_good
    finally:
        await stop_poller(poller)
        await sim.stop()


async def stop_poller(poller: Poller) -> None:
    """Poller.stop(), but cancel until the task is really done: Python 3.11's wait_for can
    drop a cancel that arrives together with a result, and one cancel would then be lost."""
    task = poller._task
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    await poller.stop()


async def _kill(sim: ModbusSimulator) -> None:
    await sim.stop()


async def _restart(sim: ModbusSimulator) -> None:
    await sim.start()


def test_killed_server_turns_bad_within_1s_and_recovers_within_3s() -> None:
    async def main() -> None:
        to_bad, to_good = await _fault_cycle(_kill, _restart)
        assert to_bad <= 1.0 and to_good <= 3.0

    run(main)


@pytest.mark.parametrize("kind", ["server_unresponsive", "connection_drop"])
def test_source_faults_turn_bad_within_1s_and_recover_within_3s(kind: str) -> None:
    fault_ids: list[int] = []

    async def fail(sim: ModbusSimulator) -> None:
        fault_ids.append(sim.plant.inject(parse_fault({"kind": kind})).id)

    async def recover(sim: ModbusSimulator) -> None:
        sim.plant.clear(fault_ids.pop())

    async def main() -> None:
        to_bad, to_good = await _fault_cycle(fail, recover)
        assert to_bad <= 1.0 and to_good <= 3.0

    run(main)


def test_unresponsive_server_read_raises_within_1s() -> None:
    """Directly at the driver: a silent server makes read() raise, not hang."""

    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(RAW), port=0)
        async with sim:
            driver = make_driver(plant_config(sim.port))
            await driver.connect()
            await driver.read()
            fault = sim.plant.inject(parse_fault({"kind": "server_unresponsive"}))
            with pytest.raises(DriverError, match=r"no answer within 0\.3 s"):
                # wait_for only as a guard: a TimeoutError here would fail the test.
                await asyncio.wait_for(driver.read(), scaled(5.0))
            sim.plant.clear(fault.id)
            await driver.connect()
            reading = await driver.read()
            assert (reading.quality == Quality.GOOD).all()
            await driver.close()

    run(main)


def test_refused_connection_raises_and_reconnects_are_spaced() -> None:
    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(RAW), port=0)
        await sim.start()
        port = sim.port
        await sim.stop()
        config = plant_config(port, {"reconnect_delay": 0.2})
        driver = make_driver(config)
        with pytest.raises(DriverError, match="cannot connect"):
            await driver.connect()
        with pytest.raises(DriverError, match="not connected"):
            await driver.read()
        # The poll loop spaces the attempts by the driver's schedule (0.2 s, then 0.4 s...):
        # one backoff, owned by the loop; the driver never sleeps itself.
        poller = Poller(driver, TagStore(TagSchema(config.lines)), interval=0.05)
        start = time.monotonic()
        poller.start()
        try:
            await until(lambda: poller.status.errors >= 3, 10)
        finally:
            await poller.stop()
        assert time.monotonic() - start >= 0.2 + 0.4
        assert "cannot connect" in (poller.status.last_error or "")

    run(main)


@pytest.mark.parametrize(
    ("table", "last"),
    [("input", 23), ("holding", 12), ("discrete", 7), ("coil", 0)],
)
def test_the_simulator_answers_each_block_exactly_as_documented(table: str, last: int) -> None:
    """Every documented address reads; the first one past each block is exception 2
    (docs/drivers.md, config/modbus.toml), read by pymodbus' own client."""
    from pymodbus.client import AsyncModbusTcpClient

    async def main() -> None:
        sim = ModbusSimulator(config_from_dict(RAW), port=0, update_interval=None)
        async with sim:
            client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=scaled(2))
            await client.connect()
            read = {
                "input": client.read_input_registers,
                "holding": client.read_holding_registers,
                "discrete": client.read_discrete_inputs,
                "coil": client.read_coils,
            }[table]
            try:
                whole = await read(0, count=last + 1, device_id=1)
                assert not whole.isError(), whole
                past = await read(last + 1, count=1, device_id=1)
                assert past.isError() and past.exception_code == 2, past
                spanning = await read(last, count=2, device_id=1)
                assert spanning.isError() and spanning.exception_code == 2, spanning
            finally:
                client.close()

    run(main)
