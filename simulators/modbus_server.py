"""The simulated plant served over Modbus TCP (pymodbus server).

Layout (documented for users in config/modbus.toml and docs/drivers.md): one unit id per
line, unit = the line's position in the config + 1 (lines 1..8 -> units 1..8), each unit with
the same register block, as if every line were its own PLC behind one Modbus TCP gateway.
Floats are IEEE-754 in two registers, low word first (CDAB); a few values are scaled
integers as real PLCs send them. A value the plant has no reading for (sensor dropout) is NaN
for floats and the type's sentinel (65535 for uint16, -32768 for int16) for integers.

Faults: a line silenced by `source_stop` answers exception 11 (gateway target failed to
respond); `server_unresponsive` keeps accepting connections and requests but sends nothing;
`connection_drop` closes every connection and stops listening until the fault clears.
The server is read-only: writes answer exception 1 (illegal function).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer

from drivers.modbus_codec import WIDTH, DataType, Order, encode_value, to_raw
from scada.core.config import PlantConfig
from scada.core.errors import ScadaError
from scada.core.fixedrate import FixedRate
from simulators.plant import COL, FAULT, RUNNING, STARTING, STOPPED, ZONES
from simulators.pymodbus_adapter import DirectContext, bound_port, tcp_server
from simulators.scenario import ScheduledFault, load_scenario
from simulators.simulation import SimulatedPlant

log = logging.getLogger(__name__)

FLOAT_ORDER: Order = "CDAB"
UPDATE_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Field:
    """One value of the simulator's register block."""

    name: str
    address: int
    data_type: DataType
    scale: float = 1.0
    invalid: int | None = None
    description: str = ""


# Input registers (function code 4), per unit. Names in SIM_TAGS are the plant's tags.
INPUT_FIELDS: tuple[Field, ...] = (
    Field("body_temperature_1", 0, "float32", description="barrel zone 1, °C"),
    Field("body_temperature_2", 2, "float32", description="barrel zone 2, °C"),
    Field("body_temperature_3", 4, "float32", description="barrel zone 3, °C"),
    Field("body_temperature_4", 6, "float32", description="barrel zone 4, °C"),
    Field("die_temperature", 8, "float32", description="die, °C"),
    Field("diameter", 10, "float32", description="outer diameter, mm"),
    Field("line_speed", 12, "uint16", 0.01, 65535, "haul-off speed, m/min × 100"),
    Field("motor_current", 13, "int16", 0.1, -32768, "motor current, A × 10"),
    Field("melt_pressure", 14, "uint16", 0.1, 65535, "melt pressure, bar × 10"),
    Field("state", 15, "uint16", 1.0, 65535, "0 stopped, 1 starting, 2 running, 3 fault"),
    Field(
        "status_word",
        16,
        "uint16",
        description="bit 0 running, 1 starting, 2 stopped, 3 fault, 4..7 heater zone 1..4 on",
    ),
    Field("heartbeat", 18, "uint32", description="update counter, +1 every 100 ms"),
    Field("plant_time", 20, "float64", description="simulated seconds since start"),
)
# Holding registers (function code 3): the line's setpoints, read-only here.
HOLDING_FIELDS: tuple[Field, ...] = (
    *(
        Field(f"body_temperature_{z + 1}_setpoint", 2 * z, "float32", description="°C")
        for z in range(ZONES)
    ),
    Field("die_temperature_setpoint", 8, "float32", description="°C"),
    Field("diameter_setpoint", 10, "float32", description="mm"),
    Field("line_speed_setpoint", 12, "uint16", 0.01, description="m/min × 100"),
)
# Discrete inputs (function code 2) and coils (function code 1): bit addresses.
DISCRETE_BITS: tuple[str, ...] = (
    "running",
    "starting",
    "stopped",
    "fault",
    *(f"heater_{z + 1}_on" for z in range(ZONES)),
)
COIL_BITS: tuple[str, ...] = ("run_enable",)  # false while a line_stop holds the line down


def block_size(fields: Sequence[Field]) -> int:
    """Registers a table holds: exactly up to its last field (a read past it is exception 2,
    as docs/drivers.md and config/modbus.toml say), never padding that answers zeros."""
    return max(f.address + WIDTH[f.data_type] for f in fields)


INPUT_SIZE = block_size(INPUT_FIELDS)  # 24
HOLDING_SIZE = block_size(HOLDING_FIELDS)  # 13
DISCRETE_SIZE = len(DISCRETE_BITS)  # 8
COIL_SIZE = len(COIL_BITS)  # 1

_STATE_BITS = {RUNNING: 0, STARTING: 1, STOPPED: 2, FAULT: 3}


def unit_of(position: int) -> int:
    """Unit id of the line at `position` (0-based) in the config."""
    return position + 1


def driver_settings(line_ids: Sequence[str], *, host: str, port: int) -> dict[str, object]:
    """`[devices.settings]` of a `modbus` device that reads this simulator's lines (the
    layout above; config/modbus.toml is the same, written out): for a config generated to
    poll a simulator process, e.g. the ingest nodes of `scada cluster`."""
    tags: dict[str, object] = {}
    for f in INPUT_FIELDS:
        if f.name not in COL:
            continue
        point: dict[str, object] = {"table": "input", "address": f.address, "type": f.data_type}
        if f.scale != 1.0:
            point["scale"] = f.scale
        if f.invalid is not None:
            point["invalid"] = f.invalid
        tags[f.name] = point
    return {
        "host": host,
        "port": port,
        "timeout": 0.3,
        "retries": 0,
        "reconnect_delay": 0.5,
        "reconnect_delay_max": 2.0,
        "max_gap": 8,
        "order": FLOAT_ORDER,
        "lines": {lid: {"unit": unit_of(i)} for i, lid in enumerate(line_ids)},
        "map": tags,
    }


@dataclass
class _UnitData:
    input: list[int]
    holding: list[int]
    discrete: list[bool]
    coil: list[bool]


def _put(regs: list[int], f: Field, value: float, valid: bool) -> None:
    if f.data_type in ("float32", "float64"):
        words = encode_value(value if valid else float("nan"), f.data_type, FLOAT_ORDER)
    elif not valid and f.invalid is not None:
        words = encode_value(f.invalid, f.data_type, FLOAT_ORDER)
    else:
        raw = int(to_raw(value, f.data_type, f.scale))
        if f.invalid is not None and raw == f.invalid:  # clip off the sentinel
            raw += 1 if f.invalid < 0 else -1
        words = encode_value(raw, f.data_type, FLOAT_ORDER)
    regs[f.address : f.address + len(words)] = words


def encode_unit(
    values: np.ndarray,
    valid: np.ndarray,
    *,
    heater_on: Sequence[bool],
    run_enable: bool,
    setpoints: Sequence[float],
    heartbeat: int,
    plant_time: float,
) -> _UnitData:
    """The register block of one line. Pure: `values`/`valid` are one row of plant.sample()."""
    inp = [0] * INPUT_SIZE
    state = int(values[COL["state"]])
    bits = [False] * DISCRETE_SIZE
    bits[_STATE_BITS.get(state, 3)] = True
    for z, on in enumerate(heater_on):
        bits[4 + z] = bool(on)
    status = sum(1 << i for i, b in enumerate(bits) if b)
    extra = {"status_word": status, "heartbeat": heartbeat % 2**32, "plant_time": plant_time}
    for f in INPUT_FIELDS:
        if f.name in COL:
            _put(inp, f, float(values[COL[f.name]]), bool(valid[COL[f.name]]))
        else:
            _put(inp, f, float(extra[f.name]), True)
    hold = [0] * HOLDING_SIZE
    for f, sp in zip(HOLDING_FIELDS, setpoints, strict=True):
        _put(hold, f, sp, True)
    coils = [False] * COIL_SIZE
    coils[0] = run_enable
    return _UnitData(inp, hold, bits, coils)


class _PlantContext(DirectContext):
    """pymodbus datastore answering from the simulator's current register blocks."""

    def __init__(self, sim: ModbusSimulator) -> None:
        super().__init__()
        self.sim = sim

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        return self.sim.get_values(device_id, func_code, address, count)

    async def async_setValues(
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_FUNCTION

    def device_ids(self) -> list[int]:
        return [unit_of(i) for i in range(len(self.sim.plant.line_ids))]


class ModbusSimulator:
    """The simulated plant behind a Modbus TCP server; `start()`/`stop()` can repeat.

    `port=0` picks a free port at the first start and keeps it for restarts. With
    `update_interval=None` nothing updates by itself: call `tick()` (tests).
    """

    def __init__(
        self,
        config: PlantConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
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
        self.host = host
        self.port = port
        self.update_interval = update_interval
        self.units: dict[int, _UnitData] = {}
        self.values = np.zeros(0)  # last published plant sample [lines, SIM_TAGS]
        self.valid = np.zeros(0, dtype=bool)
        self.heartbeat = 0
        self.requests = 0
        self._context = _PlantContext(self)
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._dropped = False  # stopped listening for a connection_drop fault

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._running:
            return
        self.publish(time.monotonic())
        self._dropped = self.plant.faults.source_fault("connection_drop")
        if not self._dropped:
            await self._listen()
        self._running = True
        if self.update_interval is not None:
            self._task = asyncio.create_task(self._updates(self.update_interval), name="modbus-sim")

    async def stop(self) -> None:
        """Stop listening and drop every connection, like a PLC switched off."""
        self._running = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._shutdown()

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        server = tcp_server(self._context, self.host, self.port, self._trace_packet)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:  # pymodbus: "Could not start listen"
            raise ScadaError(f"modbus simulator: cannot listen on {self.host}:{self.port}") from err
        self.port = bound_port(server)
        self._server = server

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated

    async def _updates(self, interval: float) -> None:
        rate = FixedRate(interval)
        while True:
            try:
                await self.tick()
            except Exception:  # keep serving: a bad tick must not kill the simulator
                log.exception("modbus simulator update failed")
            await rate.sleep()

    # -- plant -> registers ----------------------------------------------------------------

    async def tick(self, clock: float | None = None) -> None:
        """Advance the plant to `clock` (monotonic; default now), publish, apply faults."""
        self.publish(time.monotonic() if clock is None else clock)
        drop = self.plant.faults.source_fault("connection_drop")
        if drop and not self._dropped:
            log.info("modbus simulator: connection_drop fault, closing all connections")
            self._dropped = True
            await self._shutdown()
        elif not drop and self._dropped and self._running:
            await self._listen()
            self._dropped = False
            log.info("modbus simulator: listening again on %s:%d", self.host, self.port)

    def publish(self, clock: float) -> None:
        self.plant.advance_to(clock)
        values, valid = self.plant.sample()
        model = self.plant.model
        self.heartbeat += 1
        units = {}
        for i in range(len(self.plant.line_ids)):
            p = model.params[i]
            setpoints = (*p.zone_setpoints, p.die_setpoint, p.diameter_setpoint, p.speed_setpoint)
            units[unit_of(i)] = encode_unit(
                values[i],
                valid[i],
                heater_on=(~model.overrides.heater_off[i]).tolist(),
                run_enable=not bool(model.overrides.stopped[i]),
                setpoints=setpoints,
                heartbeat=self.heartbeat,
                plant_time=model.time,
            )
        self.units, self.values, self.valid = units, values, valid

    # -- requests --------------------------------------------------------------------------

    def get_values(
        self, unit: int, func_code: int, address: int, count: int
    ) -> list[int] | list[bool] | ExcCodes:
        self.requests += 1
        data = self.units.get(unit)
        if data is None:
            return ExcCodes.GATEWAY_PATH_UNAVIABLE
        if self.plant.model.overrides.silent[unit - 1]:
            return ExcCodes.GATEWAY_NO_RESPONSE
        block: list[int] | list[bool]
        if func_code == 1:
            block = data.coil
        elif func_code == 2:
            block = data.discrete
        elif func_code == 4:
            block = data.input
        elif func_code == 3:
            block = data.holding
        else:
            return ExcCodes.ILLEGAL_FUNCTION
        if count < 1 or address + count > len(block):
            return ExcCodes.ILLEGAL_ADDRESS
        return block[address : address + count]

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.plant.faults.source_fault("server_unresponsive"):
            return b""  # swallow the response: the client hears nothing
        return data


async def serve_modbus(
    config: PlantConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 5020,
    scenario: str | None = None,
    ready: asyncio.Event | None = None,
    control_port: int | None = None,
    control_token: str = "",
) -> None:
    """Serve the simulated plant until cancelled (`scada simulate modbus`); with
    `control_port`, its faults over HTTP too (simulators.control)."""
    sim = ModbusSimulator(config, host=host, port=port, scenario=scenario)
    await sim.start()
    units = ", ".join(f"line {lid} = unit {unit_of(i)}" for i, lid in enumerate(sim.plant.line_ids))
    log.info("modbus simulator listening on %s:%d (%s)", host, sim.port, units)
    if ready is not None:
        ready.set()
    try:
        if control_port is not None:
            from simulators.control import serve_control

            await serve_control(sim.plant, control_token, host=host, port=control_port)
        else:
            await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await sim.stop()
