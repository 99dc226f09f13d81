"""The `modbus` driver: Modbus TCP through pymodbus, reads planned once at start.

Tag map (see docs/drivers.md and config/modbus.toml): a per-tag template under
`settings.map`, addresses relative to each line's `base`, read from each line's `unit`:

    [devices.settings]
    host = "127.0.0.1"
    port = 5020
    order = "CDAB"                       # default order of every tag
    lines = { "1" = { unit = 1 }, "2" = { unit = 2 } }
    [devices.settings.map]
    diameter = { table = "input", address = 10, type = "float32" }
    line_speed = { table = "input", address = 12, type = "uint16", scale = 0.01 }

Failure semantics: an exception response (illegal address, device busy) marks only the tags
of that request bad, with the reason, and the read goes on; a timeout or lost connection
raises DriverError and closes the connection, so the poll loop marks the device bad and
reconnects. pymodbus' own retries and automatic reconnect are off (retries come from config;
reconnect is the poll loop's job), and its timeout is ours (0.3 s by default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, ValidationError
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.base import Driver, DriverContext, DriverSettings, Reading, register
from drivers.modbus_codec import (
    DEFAULT_MAX_GAP,
    INT_RANGE,
    MAX_REGISTERS,
    WIDTH,
    DataType,
    Order,
    Point,
    ReadRequest,
    RequestDecoder,
    Table,
    exception_reason,
    plan_reads,
)
from scada.core.config import DeviceConfig, PlantConfig, format_path
from scada.core.errors import DriverError
from scada.core.tags import Quality

log = logging.getLogger(__name__)

# pymodbus logs every timeout and refused connect at WARNING/ERROR, several times a second
# during an outage. The poll loop already reports failures once per outage, so keep the
# library quiet unless the user configured its logger explicitly.
_pymodbus_log = logging.getLogger("pymodbus")
if _pymodbus_log.level == logging.NOTSET:
    _pymodbus_log.setLevel(logging.CRITICAL)


class TagMap(DriverSettings):
    """Where one tag lives. `address` is the 0-based protocol address, relative to the
    line's `base`. `type` defaults to `bool` in coil/discrete tables, `uint16` otherwise."""

    table: Table = Table.HOLDING
    address: int = Field(ge=0, le=65535)
    type: DataType | None = None
    order: Order | None = None  # default: the device's `order`
    bit: int = Field(default=0, ge=0, le=15)  # for type = "bit": 0 = least significant
    scale: float = 1.0
    offset: float = 0.0
    invalid: int | None = None  # raw value the device sends for "no value"


class TagPatch(DriverSettings):
    """A line's override of the template: only the keys given replace the template's."""

    table: Table | None = None
    address: int | None = Field(default=None, ge=0, le=65535)
    type: DataType | None = None
    order: Order | None = None
    bit: int | None = Field(default=None, ge=0, le=15)
    scale: float | None = None
    offset: float | None = None
    invalid: int | None = None


class LineMap(DriverSettings):
    unit: int | None = Field(default=None, ge=0, le=255)  # default: the device's `unit`
    base: int = Field(default=0, ge=0, le=65535)  # added to every tag address of the line
    map: dict[str, TagPatch] = Field(default_factory=dict)


class ModbusSettings(DriverSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    # Seconds to wait for one response (and for the TCP connect).
    timeout: float = Field(default=0.3, gt=0, le=10)
    # Resends of a request that got no answer before the device counts as failed.
    retries: int = Field(default=0, ge=0, le=5)
    # Spacing of connection attempts after a failure: doubles from reconnect_delay up to
    # reconnect_delay_max, reset by a successful connect.
    reconnect_delay: float = Field(default=0.5, ge=0, le=2.0)
    reconnect_delay_max: float = Field(default=2.0, ge=0, le=2.0)
    # Unused registers a request may read through to save a request.
    max_gap: int = Field(default=DEFAULT_MAX_GAP, ge=0, le=MAX_REGISTERS - 1)
    unit: int = Field(default=1, ge=0, le=255)
    order: Order = "ABCD"
    map: dict[str, TagMap] = Field(default_factory=dict)
    lines: dict[str, LineMap] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Resolving the map into points (shared by `check` and the driver)


def _merge(template: TagMap | None, patch: TagPatch | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if template is not None:
        merged.update({k: getattr(template, k) for k in template.model_fields_set})
    if patch is not None:
        merged.update({k: getattr(patch, k) for k in patch.model_fields_set})
    return merged


def _entry_problems(entry: TagMap, base: int) -> list[tuple[str, str]]:
    """Problems of one resolved entry, as (key, message) relative to the entry."""
    table = entry.table
    data_type = entry.type or ("bool" if table.is_bits else "uint16")
    if table.is_bits and data_type != "bool":
        return [("type", f"a {table.value} table holds single bits: type must be bool")]
    if not table.is_bits and data_type == "bool":
        return [("type", "a register holds 16 bits: use type = 'bit' with `bit` = 0..15")]
    problems = []
    if "bit" in entry.model_fields_set and data_type != "bit":
        problems.append(("bit", "only applies to type = 'bit'"))
    if base + entry.address + WIDTH[data_type] > 65536:
        problems.append(("address", "base + address runs past register 65535"))
    if entry.invalid is not None and data_type in INT_RANGE:
        lo, hi = INT_RANGE[data_type]
        if not lo <= entry.invalid <= hi:
            problems.append(("invalid", f"out of range for {data_type} ({lo}..{hi})"))
    if entry.scale == 0:
        problems.append(("scale", "must not be 0"))
    return problems


def resolve_points(
    settings: ModbusSettings,
    device: DeviceConfig,
    config: PlantConfig,
    schema_index: dict[tuple[str, str], int] | None = None,
    path: str = "",
) -> tuple[list[Point], list[tuple[str, str]]]:
    """Every (line, tag) of the device as a Point, and the config problems found.

    Keys of the points are `schema_index[(line, tag)]` when given, else their order.
    """
    problems: list[tuple[str, str]] = []
    points: list[Point] = []
    p = f"{path}.settings" if path else "settings"
    if not settings.map and not any(lm.map for lm in settings.lines.values()):
        # One line, not one per tag and line: the whole map is missing.
        return [], [
            (f"{p}.map", "missing: the modbus driver needs a tag map (see docs/drivers.md)")
        ]
    line_ids = config.device_lines(device)
    all_tags = {name for lid in line_ids for name in _line_tags(config, lid)}
    for name in settings.map:
        if name not in all_tags:
            problems.append((f"{p}.map.{name}", "no such tag on the lines of this device"))
    for lid in settings.lines:
        if lid not in line_ids:
            problems.append((f"{p}.lines.{lid}", f"line {lid!r} is not fed by this device"))
    for lid in line_ids:
        if lid not in settings.lines and len(line_ids) > 1:
            problems.append((f"{p}.lines", f"no entry for line {lid!r} (its unit or base)"))
            continue
        line_map = settings.lines.get(lid, LineMap())
        tags = _line_tags(config, lid)
        for name in line_map.map:
            if name not in tags:
                problems.append((f"{p}.lines.{lid}.map.{name}", f"line {lid!r} has no such tag"))
        for name in tags:
            point, errs = _resolve_one(settings, line_map, lid, name, p)
            problems.extend(errs)
            if point is not None:
                key = schema_index[(lid, name)] if schema_index else len(points)
                points.append(_with_key(point, key))
    return points, problems


def _line_tags(config: PlantConfig, line_id: str) -> list[str]:
    try:
        return list(config.line(line_id).tags)
    except KeyError:
        return []


def _resolve_one(
    settings: ModbusSettings, line_map: LineMap, lid: str, name: str, p: str
) -> tuple[Point | None, list[tuple[str, str]]]:
    template, patch = settings.map.get(name), line_map.map.get(name)
    # Problems point at the key the user wrote: the line's override if it has one.
    where = f"{p}.lines.{lid}.map.{name}" if patch is not None else f"{p}.map.{name}"
    if template is None and patch is None:
        return None, [(f"{p}.map", f"no register for tag {name!r} of line {lid!r}")]
    try:
        entry = TagMap.model_validate(_merge(template, patch))
    except ValidationError as err:
        return None, [(format_path((where, *e["loc"])), str(e["msg"])) for e in err.errors()]
    errs = _entry_problems(entry, line_map.base)
    if errs:
        return None, [(f"{where}.{key}", msg) for key, msg in errs]
    data_type: DataType = entry.type or ("bool" if entry.table.is_bits else "uint16")
    unit = settings.unit if line_map.unit is None else line_map.unit
    point = Point(
        key=0,
        unit=unit,
        table=entry.table,
        address=line_map.base + entry.address,
        data_type=data_type,
        order=entry.order or settings.order,
        bit=entry.bit,
        scale=entry.scale,
        offset=entry.offset,
        invalid=entry.invalid,
    )
    return point, []


def _with_key(point: Point, key: int) -> Point:
    return Point(
        key,
        point.unit,
        point.table,
        point.address,
        point.data_type,
        point.order,
        point.bit,
        point.scale,
        point.offset,
        point.invalid,
    )


# ---------------------------------------------------------------------------------------------
# The driver


@register("modbus")
class ModbusDriver(Driver):
    settings_model: ClassVar[type[DriverSettings]] = ModbusSettings
    settings: ModbusSettings

    def __init__(self, device: DeviceConfig, settings: DriverSettings, context: DriverContext):
        super().__init__(device, settings, context)
        assert isinstance(settings, ModbusSettings)
        schema = context.schema
        index = {(ref.line_id, ref.name): ref.index for ref in schema.refs}
        points, problems = resolve_points(settings, device, context.config, index)
        if problems:
            text = "; ".join(f"{path}: {msg}" for path, msg in problems)
            raise DriverError(f"device {device.name!r}: bad tag map: {text}")
        self.plan: list[ReadRequest] = plan_reads(points, max_gap=settings.max_gap)
        self._decoders = [RequestDecoder(r) for r in self.plan]
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()  # one request in flight per connection
        self.connects = 0
        self.exception_responses = 0

    # -- configuration -------------------------------------------------------------------------

    @classmethod
    def check(cls, device: DeviceConfig, config: PlantConfig, path: str) -> list[tuple[str, str]]:
        settings = ModbusSettings.model_validate(device.settings)
        return resolve_points(settings, device, config, path=path)[1]

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "endpoint": f"modbus://{s.host}:{s.port}",
            "requests_per_poll": len(self.plan),
            "registers_per_poll": sum(r.count for r in self.plan if not r.table.is_bits),
            "timeout": s.timeout,
            "retries": s.retries,
            "connects": self.connects,
            "exception_responses": self.exception_responses,
        }

    # -- connection ----------------------------------------------------------------------------

    def retry_delay(self, failures: int) -> float:
        # reconnect_delay doubling per failed attempt up to reconnect_delay_max; the poll
        # loop waits it (the driver itself never sleeps before dialling).
        s = self.settings
        return min(s.reconnect_delay * 2.0 ** max(failures - 1, 0), s.reconnect_delay_max)

    async def connect(self) -> None:
        await self.close()
        s = self.settings
        client = AsyncModbusTcpClient(
            s.host,
            port=s.port,
            name=self.device.name,
            timeout=s.timeout,
            retries=s.retries,
            reconnect_delay=0,  # 0 disables pymodbus' background reconnect: the poller owns it
            reconnect_delay_max=0,
        )
        ok = await client.connect()
        if not ok:
            client.close()
            raise DriverError(
                f"device {self.device.name!r}: cannot connect to {s.host}:{s.port} "
                f"(refused or no answer within {s.timeout:g} s)"
            )
        self._client = client
        self.connects += 1

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- reading -------------------------------------------------------------------------------

    async def read(self) -> Reading:
        client = self._client
        if client is None or not client.connected:
            self._client = None
            raise DriverError(f"device {self.device.name!r}: not connected")
        parts_idx, parts_val, parts_q, parts_t = [], [], [], []
        reasons: dict[int, str] = {}
        task = asyncio.current_task()
        async with self._lock:
            for request, decoder in zip(self.plan, self._decoders, strict=True):
                response = await self._execute(client, request)
                if task is not None and task.cancelling():
                    # Python 3.11's wait_for (inside pymodbus) drops a cancel that arrives
                    # with the response; honour it here or a stopping poll loop hangs.
                    raise asyncio.CancelledError
                now = time.time()
                parts_idx.append(decoder.keys)
                parts_t.append(np.full(len(decoder.keys), now))
                if response.isError():
                    self.exception_responses += 1
                    reason = exception_reason(int(getattr(response, "exception_code", 0)))
                    reasons.update(dict.fromkeys(decoder.keys.tolist(), reason))
                    parts_val.append(np.full(len(decoder.keys), np.nan))
                    parts_q.append(np.full(len(decoder.keys), Quality.BAD, dtype=np.uint8))
                    continue
                data = response.bits if request.table.is_bits else response.registers
                values = decoder.decode(data)
                parts_val.append(values)
                bad = np.isnan(values)
                parts_q.append(np.where(bad, Quality.BAD, Quality.GOOD).astype(np.uint8))
                for key in decoder.keys[bad].tolist():
                    reasons[key] = "device sent no value (invalid marker or NaN)"
        if not parts_idx:
            return Reading.build(np.empty(0, np.intp), np.empty(0), time.time())
        return Reading.build(
            np.concatenate(parts_idx),
            np.concatenate(parts_val),
            np.concatenate(parts_t),
            np.concatenate(parts_q),
            reasons,
        )

    async def _execute(self, client: AsyncModbusTcpClient, request: ReadRequest) -> ModbusPDU:
        fc = request.function_code
        call = {
            1: client.read_coils,
            2: client.read_discrete_inputs,
            3: client.read_holding_registers,
            4: client.read_input_registers,
        }[fc]
        try:
            response = await call(request.address, count=request.count, device_id=request.unit)
        except (ModbusException, OSError, TimeoutError) as err:
            # Timeout or lost connection: the device is gone, not just this request.
            await self.close()
            s = self.settings
            raise DriverError(
                f"device {self.device.name!r} ({s.host}:{s.port}): {request.describe()} "
                f"failed: {_short(err, s.timeout)}"
            ) from err
        return response


def _short(err: BaseException, timeout: float) -> str:
    text = str(err)
    if "No response" in text or isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    if "Not connected" in text or "not connected" in text:
        return "connection lost"
    return text or type(err).__name__
