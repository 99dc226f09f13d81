"""Pure tests of the Modbus codec, read planner and tag map resolution (no sockets)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus_codec import (
    MAX_BITS,
    MAX_REGISTERS,
    WIDTH,
    DataType,
    Order,
    Point,
    Table,
    decode_response,
    decode_value,
    encode_value,
    exception_reason,
    plan_reads,
    to_engineering,
    to_raw,
)
from drivers.registry import device_problems
from scada.core.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# Decoding against known register contents (wire bytes written out by hand)

KNOWN: list[tuple[DataType, Order, list[int], int | float]] = [
    # 0x01020304: every byte distinct, so each order is unambiguous.
    ("int32", "ABCD", [0x0102, 0x0304], 0x01020304),
    ("int32", "CDAB", [0x0304, 0x0102], 0x01020304),
    ("int32", "BADC", [0x0201, 0x0403], 0x01020304),
    ("int32", "DCBA", [0x0403, 0x0201], 0x01020304),
    ("int32", "ABCD", [0xFFFF, 0xFFFE], -2),
    ("uint32", "ABCD", [0xDEAD, 0xBEEF], 0xDEADBEEF),
    ("uint32", "CDAB", [0xBEEF, 0xDEAD], 0xDEADBEEF),
    ("uint32", "BADC", [0xADDE, 0xEFBE], 0xDEADBEEF),
    ("uint32", "DCBA", [0xEFBE, 0xADDE], 0xDEADBEEF),
    ("int16", "ABCD", [0xFFFE], -2),
    ("int16", "CDAB", [0xFFFE], -2),
    ("int16", "BADC", [0xFEFF], -2),
    ("int16", "DCBA", [0xFEFF], -2),
    ("int16", "ABCD", [0x8000], -32768),
    ("uint16", "ABCD", [0x1234], 0x1234),
    ("uint16", "CDAB", [0x1234], 0x1234),
    ("uint16", "BADC", [0x3412], 0x1234),
    ("uint16", "DCBA", [0x3412], 0x1234),
    # 1.5 = 0x3FC00000
    ("float32", "ABCD", [0x3FC0, 0x0000], 1.5),
    ("float32", "CDAB", [0x0000, 0x3FC0], 1.5),
    ("float32", "BADC", [0xC03F, 0x0000], 1.5),
    ("float32", "DCBA", [0x0000, 0xC03F], 1.5),
    # -12.5 = 0xC1480000
    ("float32", "CDAB", [0x0000, 0xC148], -12.5),
    # pi as float64 = 0x400921FB54442D18
    ("float64", "ABCD", [0x4009, 0x21FB, 0x5444, 0x2D18], math.pi),
    ("float64", "CDAB", [0x2D18, 0x5444, 0x21FB, 0x4009], math.pi),
    ("float64", "BADC", [0x0940, 0xFB21, 0x4454, 0x182D], math.pi),
    ("float64", "DCBA", [0x182D, 0x4454, 0xFB21, 0x0940], math.pi),
]


@pytest.mark.parametrize(("data_type", "order", "registers", "value"), KNOWN)
def test_decode_known_registers(
    data_type: DataType, order: Order, registers: list[int], value: float
) -> None:
    assert decode_value(registers, data_type, order) == value


@pytest.mark.parametrize(("data_type", "order", "registers", "value"), KNOWN)
def test_encode_is_the_inverse(
    data_type: DataType, order: Order, registers: list[int], value: float
) -> None:
    assert encode_value(value, data_type, order) == registers


def test_float32_pi_rounds_as_ieee_single() -> None:
    regs = encode_value(math.pi, "float32", "ABCD")
    assert regs == [0x4049, 0x0FDB]
    assert decode_value(regs, "float32") == struct.unpack(">f", b"\x40\x49\x0f\xdb")[0]


@pytest.mark.parametrize(
    ("order", "register", "bits_set"),
    [
        ("ABCD", 0x8001, {0, 15}),
        ("CDAB", 0x8001, {0, 15}),
        # Byte-swapped orders swap the register's bytes before bits are counted.
        ("BADC", 0x8001, {7, 8}),
        ("DCBA", 0x0102, {0, 9}),
    ],
)
def test_bit_in_register(order: Order, register: int, bits_set: set[int]) -> None:
    got = {b for b in range(16) if decode_value([register], "bit", order, bit=b)}
    assert got == bits_set


def test_bool_and_wrong_width() -> None:
    assert decode_value([True], "bool") == 1
    assert decode_value([0], "bool") == 0
    with pytest.raises(ValueError, match="needs 2"):
        decode_value([1], "float32")
    with pytest.raises(ValueError, match="out of range"):
        encode_value(70000, "uint16")
    with pytest.raises(ValueError, match="single bit"):
        encode_value(1, "bit")


# ---------------------------------------------------------------------------------------------
# Scaling


def test_scale_and_offset() -> None:
    assert to_engineering(2499, 0.01) == pytest.approx(24.99)
    assert to_engineering(100, 0.5, -10.0) == 40.0
    assert to_raw(24.99, "uint16", 0.01) == 2499
    assert to_raw(40.0, "int16", 0.5, -10.0) == 100
    # Rounded, and clipped to the type's range rather than wrapped.
    assert to_raw(24.996, "uint16", 0.01) == 2500
    assert to_raw(-5.0, "uint16", 0.01) == 0
    assert to_raw(1e9, "int16", 0.1) == 32767
    assert to_raw(1.25, "float32", 0.5) == 2.5


def test_decode_response_scales_and_marks_invalid() -> None:
    points = [
        Point(10, 1, Table.INPUT, 0, "uint16", scale=0.01),
        Point(11, 1, Table.INPUT, 1, "int16", scale=0.1, offset=1.0, invalid=-32768),
        Point(12, 1, Table.INPUT, 2, "float32", order="CDAB"),
        Point(13, 1, Table.INPUT, 4, "uint16", invalid=65535),
    ]
    (request,) = plan_reads(points)
    nan32 = encode_value(float("nan"), "float32", "CDAB")
    values = decode_response(request, [2499, 0x8000, *nan32, 65535])
    assert values[0] == pytest.approx(24.99)
    assert np.isnan(values[1:]).all()
    values = decode_response(request, [2499, 0xFFF6, *encode_value(7.5, "float32", "CDAB"), 3])
    np.testing.assert_allclose(values, [24.99, 0.0, 7.5, 3.0])


def test_exception_reason_names_the_code() -> None:
    assert exception_reason(2) == "modbus exception 2 (illegal data address)"
    assert exception_reason(6) == "modbus exception 6 (server device busy)"
    assert exception_reason(99) == "modbus exception 99 (unknown)"


# ---------------------------------------------------------------------------------------------
# Planning


def _p(address: int, data_type: DataType = "uint16", *, table: Table = Table.HOLDING,
       unit: int = 1, key: int = 0) -> Point:  # fmt: skip
    return Point(key, unit, table, address, data_type)


def test_contiguous_points_make_one_request() -> None:
    plan = plan_reads([_p(0, "float32"), _p(2, "float32"), _p(4, "uint16"), _p(5, "int32")])
    assert [(r.address, r.count, len(r.points)) for r in plan] == [(0, 7, 4)]


@pytest.mark.parametrize(("gap", "requests"), [(0, 1), (8, 1), (9, 2)])
def test_merging_across_gaps(gap: int, requests: int) -> None:
    plan = plan_reads([_p(0, "float32"), _p(2 + gap, "float32")], max_gap=8)
    assert len(plan) == requests
    if requests == 1:
        assert plan[0].count == 4 + gap


def test_max_gap_is_configurable() -> None:
    points = [_p(0), _p(3)]
    assert len(plan_reads(points, max_gap=2)) == 1
    assert len(plan_reads(points, max_gap=1)) == 2


def test_125_register_limit() -> None:
    assert [r.count for r in plan_reads([_p(a) for a in range(125)])] == [125]
    assert [r.count for r in plan_reads([_p(a) for a in range(126)])] == [125, 1]
    # 70 float32 = 140 registers: a float never straddles two requests.
    plan = plan_reads([_p(2 * i, "float32", key=i) for i in range(70)])
    assert [r.count for r in plan] == [124, 16]
    assert [len(r.points) for r in plan] == [62, 8]
    assert plan[1].address == 124


def test_mixed_types_offsets() -> None:
    points = [_p(0, "float64", key=0), _p(4, "int16", key=1), _p(5, "float32", key=2)]
    (request,) = plan_reads(points)
    regs = [
        *encode_value(-1.25, "float64"),
        *encode_value(-7, "int16"),
        *encode_value(3.5, "float32"),
    ]
    np.testing.assert_array_equal(decode_response(request, regs), [-1.25, -7.0, 3.5])


def test_tables_and_units_never_mix() -> None:
    points = [
        _p(0, table=Table.HOLDING),
        _p(1, table=Table.INPUT),
        _p(0, "bool", table=Table.COIL),
        _p(1, "bool", table=Table.DISCRETE),
        _p(0, table=Table.HOLDING, unit=2),
    ]
    plan = plan_reads(points)
    assert sorted((r.unit, r.function_code) for r in plan) == [
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 3),
    ]


def test_bit_tables_use_the_2000_bit_limit() -> None:
    plan = plan_reads([_p(a, "bool", table=Table.COIL) for a in range(0, 2500, 10)])
    assert [r.count for r in plan] == [1991, 491]
    assert all(r.count <= MAX_BITS for r in plan)
    bits = [False] * 1991
    bits[10] = True
    values = decode_response(plan[0], bits)
    assert values[1] == 1.0 and values.sum() == 1.0


def test_several_bits_of_one_register_share_it() -> None:
    points = [Point(i, 1, Table.HOLDING, 7, "bit", bit=i) for i in range(3)]
    (request,) = plan_reads(points)
    assert (request.address, request.count) == (7, 1)
    np.testing.assert_array_equal(decode_response(request, [0b101]), [1.0, 0.0, 1.0])


def _fewest(points: list[Point], max_gap: int, limit: int) -> int:
    """Brute-force DP: fewest consecutive groups of the sorted points that each fit."""
    pts = sorted(points, key=lambda p: (p.address, p.end))
    best = [0] + [10**9] * len(pts)
    for j in range(1, len(pts) + 1):
        for i in range(j):
            group = pts[i:j]
            end, ok = group[0].end, True
            for p in group[1:]:
                ok = ok and p.address - end <= max_gap
                end = max(end, p.end)
            if ok and end - group[0].address <= limit:
                best[j] = min(best[j], best[i] + 1)
    return best[-1]


_types = st.sampled_from(["int16", "uint16", "int32", "float32", "float64"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), _types), min_size=1, max_size=25),
    st.integers(0, 12),
)
def test_plan_covers_every_point_within_limits_and_is_minimal(
    items: list[tuple[int, DataType]], max_gap: int
) -> None:
    points = [_p(a, t, key=i) for i, (a, t) in enumerate(items)]
    plan = plan_reads(points, max_gap=max_gap, max_registers=40)
    covered = sorted(p.key for r in plan for p in r.points)
    assert covered == list(range(len(points)))
    for r in plan:
        assert r.count <= 40
        for p in r.points:
            assert r.address <= p.address and p.end <= r.address + r.count
        # No unused stretch inside a request is longer than max_gap.
        used = np.zeros(r.count, dtype=bool)
        for p in r.points:
            used[p.address - r.address : p.end - r.address] = True
        run = longest = 0
        for u in used:
            run = 0 if u else run + 1
            longest = max(longest, run)
        assert longest <= max_gap
    assert len(plan) == _fewest(points, max_gap, 40)


def test_widths() -> None:
    assert WIDTH["float64"] == 4 and WIDTH["float32"] == 2 and WIDTH["int16"] == 1
    assert MAX_REGISTERS == 125


# ---------------------------------------------------------------------------------------------
# Tag map config: problems named by key path


def _modbus_config(settings_toml: str, *, extra_lines: str = "") -> str:
    return f"""
[[devices]]
name = "plc"
driver = "modbus"
[devices.settings]
{settings_toml}

[line_defaults.tags.diameter]
unit = "mm"
[line_defaults.tags.state]
kind = "state"
states = ["stopped", "running"]

[[lines]]
id = "1"
[[lines]]
id = "2"
{extra_lines}
"""


GOOD_MAP = """
lines = { "1" = { unit = 1 }, "2" = { unit = 2, map = { diameter = { address = 20 } } } }
map = { diameter = { table = "input", address = 10, type = "float32" }, state = { address = 15 } }
"""


def test_shipped_modbus_config_is_clean_and_matches_the_simulator() -> None:
    from simulators.modbus_server import INPUT_FIELDS

    config = load_config(ROOT / "config" / "modbus.toml")
    assert device_problems(config) == []
    template = config.devices[0].settings["map"]
    for field in INPUT_FIELDS:
        if field.name in template:
            entry = template[field.name]
            assert entry["table"] == "input"
            assert entry["address"] == field.address
            assert entry["type"] == field.data_type
            assert entry.get("scale", 1.0) == field.scale
            assert entry.get("invalid") == field.invalid
    assert config.devices[0].settings["order"] == "CDAB"


def test_good_map_resolves_with_line_override() -> None:
    from drivers.base import DriverContext
    from drivers.modbus import ModbusDriver
    from drivers.registry import create_driver
    from scada.core.tags import TagSchema

    config = parse_config(_modbus_config(GOOD_MAP))
    assert device_problems(config) == []
    driver = create_driver(config.devices[0], DriverContext(config, TagSchema(config.lines)))
    assert isinstance(driver, ModbusDriver)
    got = {(r.unit, r.table.value, p.address, p.data_type) for r in driver.plan for p in r.points}
    assert got == {
        (1, "input", 10, "float32"),
        (1, "holding", 15, "uint16"),
        (2, "input", 20, "float32"),
        (2, "holding", 15, "uint16"),
    }


LINE2 = "map = { diameter = { address = 20 } }"


@pytest.mark.parametrize(
    ("settings_toml", "path", "fragment"),
    [
        (
            GOOD_MAP.replace('type = "float32"', 'type = "float99"'),
            "devices[0].settings.map.diameter.type",
            "",
        ),
        (
            GOOD_MAP.replace("state = { address = 15 }", "state = { address = 15, typo = 1 }"),
            "devices[0].settings.map.state.typo",
            "unknown key",
        ),
        (
            GOOD_MAP.replace("state = {", "speed = { address = 1 }, state = {"),
            "devices[0].settings.map.speed",
            "no such tag",
        ),
        (
            GOOD_MAP.replace('"2" = {', '"9" = { unit = 9 }, "2" = {'),
            "devices[0].settings.lines.9",
            "not fed by this device",
        ),
        (
            GOOD_MAP.replace(LINE2, "map = { dia = { address = 20 } }"),
            "devices[0].settings.lines.2.map.dia",
            "no such tag",
        ),
        (
            GOOD_MAP.replace(LINE2, 'map = { diameter = { table = "coil" } }'),
            "devices[0].settings.lines.2.map.diameter.type",
            "must be bool",
        ),
        (
            GOOD_MAP.replace("state = { address = 15 }", 'state = { address = 15, type = "bool" }'),
            "devices[0].settings.map.state.type",
            "type = 'bit'",
        ),
        (
            GOOD_MAP.replace("state = { address = 15 }", "state = { address = 15, bit = 3 }"),
            "devices[0].settings.map.state.bit",
            "only applies",
        ),
        (
            GOOD_MAP.replace("state = { address = 15 }", "state = { address = 15, invalid = -1 }"),
            "devices[0].settings.map.state.invalid",
            "out of range",
        ),
        (
            GOOD_MAP.replace(", state = { address = 15 }", ""),
            "devices[0].settings.map",
            "no register for tag 'state'",
        ),
        (
            GOOD_MAP.replace('"1" = { unit = 1 }, ', ""),
            "devices[0].settings.lines",
            "no entry for line '1'",
        ),
        (GOOD_MAP + "\nreconnect_delay_max = 30", "devices[0].settings.reconnect_delay_max", ""),
    ],
)
def test_map_problems_have_key_paths(settings_toml: str, path: str, fragment: str) -> None:
    problems = device_problems(parse_config(_modbus_config(settings_toml)))
    assert any(p == path and fragment in msg for p, msg in problems), problems
