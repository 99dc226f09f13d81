"""Modbus register codec and read planner: pure functions, no I/O, no clock.

Data types and orders
---------------------
A register is 16 bits, sent big-endian on the wire. Values wider than one register span
consecutive registers; how their bytes are arranged is the *order*, named by where the bytes
A B C D of a big-endian 32-bit value end up (A = most significant byte):

    ABCD  big-endian words, big-endian bytes (Modbus "standard")
    CDAB  word swap: low word first (common on Schneider, Siemens S7 defaults, many meters)
    BADC  byte swap inside each register
    DCBA  fully little-endian

Word order reverses the registers, byte order swaps the two bytes of each register, for any
width (16, 32 or 64 bits). For 16-bit values only the byte swap matters (ABCD = CDAB).

`bit` reads one bit (0 = least significant) of a 16-bit register after the byte order is
applied; `bool` is a coil or discrete input.

Engineering value = raw * scale + offset; a raw value equal to `invalid` (or a non-finite
float) means "no value" and decodes to NaN.

Planning
--------
`plan_reads` groups points by (unit id, table) and sorts them by address, then packs them
greedily into requests of at most 125 registers (2000 bits for coils and discrete inputs),
reading across gaps of at most `max_gap` unused registers. Greedy packing in address order
gives the fewest requests for these constraints (any request can be shifted to start where
the greedy one does without needing more).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import groupby
from typing import Literal

import numpy as np

MAX_REGISTERS = 125  # per read request (Modbus spec, function codes 3 and 4)
MAX_BITS = 2000  # per read request (function codes 1 and 2)
DEFAULT_MAX_GAP = 8

DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool", "bit"]
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
ORDERS: tuple[str, ...] = Order.__args__  # type: ignore[attr-defined]


class Table(StrEnum):
    COIL = "coil"  # function code 1, read/write bits
    DISCRETE = "discrete"  # function code 2, read-only bits
    HOLDING = "holding"  # function code 3, read/write registers
    INPUT = "input"  # function code 4, read-only registers

    @property
    def function_code(self) -> int:
        return _FUNCTION_CODES[self]

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


_FUNCTION_CODES = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}

# Registers each type occupies (bools occupy one bit of a bit table).
WIDTH: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
    "bool": 1,
    "bit": 1,
}
_STRUCT: dict[str, struct.Struct] = {
    "int16": struct.Struct(">h"),
    "uint16": struct.Struct(">H"),
    "int32": struct.Struct(">i"),
    "uint32": struct.Struct(">I"),
    "float32": struct.Struct(">f"),
    "float64": struct.Struct(">d"),
    "bit": struct.Struct(">H"),
}
INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "bit": (0, 1),
    "bool": (0, 1),
}

# Modbus exception codes and their names, for the reason shown on a bad tag.
EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_reason(code: int) -> str:
    """`modbus exception 2 (illegal data address)`."""
    return f"modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


# ---------------------------------------------------------------------------------------------
# Byte orders


def wire_permutation(order: Order, n_bytes: int) -> tuple[int, ...]:
    """Positions in the wire bytes of the big-endian value's bytes 0..n-1.

    Wire byte i is register i // 2, high byte first. The returned tuple `p` satisfies
    `big_endian[k] == wire[p[k]]`; the permutation is its own inverse for every order.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; one of {', '.join(ORDERS)}")
    words = n_bytes // 2
    out = []
    for k in range(n_bytes):
        word, byte = divmod(k, 2)
        if order in ("CDAB", "DCBA"):
            word = words - 1 - word
        if order in ("BADC", "DCBA"):
            byte = 1 - byte
        out.append(2 * word + byte)
    return tuple(out)


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


def bytes_to_registers(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


# ---------------------------------------------------------------------------------------------
# Single values


def decode_value(
    registers: Sequence[int], data_type: DataType, order: Order = "ABCD", bit: int = 0
) -> int | float:
    """The raw value in `registers` (exactly the type's width), before scaling."""
    if data_type == "bool":
        return int(bool(registers[0]))
    width = WIDTH[data_type]
    if len(registers) != width:
        raise ValueError(f"{data_type} needs {width} register(s), got {len(registers)}")
    wire = registers_to_bytes(registers)
    perm = wire_permutation(order, 2 * width)
    raw: int | float = _STRUCT[data_type].unpack(bytes(wire[i] for i in perm))[0]
    if data_type == "bit":
        return (int(raw) >> bit) & 1
    return raw


def encode_value(value: int | float, data_type: DataType, order: Order = "ABCD") -> list[int]:
    """Registers holding the raw `value` (ints must be in range; use `to_raw` to scale)."""
    if data_type in ("bool", "bit"):
        raise ValueError(f"{data_type} is a single bit: set it in its register or coil")
    width = WIDTH[data_type]
    if data_type in INT_RANGE:
        lo, hi = INT_RANGE[data_type]
        if not lo <= int(value) <= hi:
            raise ValueError(f"{value} out of range for {data_type}")
        value = int(value)
    big = _STRUCT[data_type].pack(value)
    perm = wire_permutation(order, 2 * width)
    return bytes_to_registers(bytes(big[i] for i in perm))


def to_engineering(raw: int | float, scale: float = 1.0, offset: float = 0.0) -> float:
    return float(raw) * scale + offset


def to_raw(
    value: float, data_type: DataType, scale: float = 1.0, offset: float = 0.0
) -> int | float:
    """Inverse of `to_engineering`: rounded and clipped to the type's range for integers."""
    raw = (value - offset) / scale
    if data_type in ("float32", "float64"):
        return raw
    lo, hi = INT_RANGE[data_type]
    if not math.isfinite(raw):
        raise ValueError(f"cannot encode {value} as {data_type}")
    return int(min(max(round(raw), lo), hi))


# ---------------------------------------------------------------------------------------------
# Points and read plans


@dataclass(frozen=True, slots=True)
class Point:
    """Where one value lives and how it is encoded. `key` is the caller's (a schema index)."""

    key: int
    unit: int
    table: Table
    address: int
    data_type: DataType
    order: Order = "ABCD"
    bit: int = 0
    scale: float = 1.0
    offset: float = 0.0
    invalid: int | None = None  # raw value that means "no value" (a PLC's sentinel)

    @property
    def width(self) -> int:
        return WIDTH[self.data_type]

    @property
    def end(self) -> int:
        return self.address + self.width


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: `count` registers (or bits) from `address`; each point at `address` offset."""

    unit: int
    table: Table
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def function_code(self) -> int:
        return self.table.function_code

    def describe(self) -> str:
        return f"unit {self.unit} {self.table.value} {self.address}+{self.count}"


def plan_reads(
    points: Iterable[Point],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    max_bit_gap: int | None = None,
) -> list[ReadRequest]:
    """The fewest requests covering every point, per (unit, table), in a stable order.

    Bit tables read across gaps of `max_bit_gap` bits (default 16 × max_gap: a bit costs
    far less on the wire than a register).
    """
    bit_gap = 16 * max_gap if max_bit_gap is None else max_bit_gap
    ordered = sorted(points, key=lambda p: (p.unit, p.table.function_code, p.address, p.end))
    out: list[ReadRequest] = []
    for (unit, _fc), group in groupby(ordered, key=lambda p: (p.unit, p.table.function_code)):
        items = list(group)
        table = items[0].table
        limit = max_bits if table.is_bits else max_registers
        gap = bit_gap if table.is_bits else max_gap
        out.extend(_pack(unit, table, items, limit, gap))
    return out


def _pack(unit: int, table: Table, items: list[Point], limit: int, gap: int) -> list[ReadRequest]:
    requests: list[ReadRequest] = []
    start, end, members = items[0].address, items[0].end, [items[0]]
    if items[0].width > limit:
        raise ValueError(f"point at {start} is wider than a request")
    for p in items[1:]:
        new_end = max(end, p.end)
        if p.address - end <= gap and new_end - start <= limit:
            end = new_end
            members.append(p)
            continue
        requests.append(ReadRequest(unit, table, start, end - start, tuple(members)))
        start, end, members = p.address, p.end, [p]
    requests.append(ReadRequest(unit, table, start, end - start, tuple(members)))
    return requests


# ---------------------------------------------------------------------------------------------
# Decoding a whole response


@dataclass(frozen=True, slots=True)
class _Slot:
    """A point compiled for fast decoding from a request's wire bytes."""

    unpack: struct.Struct | None  # None: a bit of a coil/discrete response
    gather: tuple[int, ...]  # wire byte positions in big-endian order (or the bit offset)
    bit: int
    is_bit_in_register: bool
    scale: float
    offset: float
    invalid: int | None


class RequestDecoder:
    """Decodes the registers (or bits) of one planned request into engineering values.

    Compiled once per request at start; `decode` then does only slicing and unpacking.
    """

    def __init__(self, request: ReadRequest) -> None:
        self.request = request
        self.keys = np.array([p.key for p in request.points], dtype=np.intp)
        self._slots = [self._compile(p) for p in request.points]

    def _compile(self, p: Point) -> _Slot:
        rel = p.address - self.request.address
        if self.request.table.is_bits:
            return _Slot(None, (rel,), 0, False, p.scale, p.offset, p.invalid)
        n = 2 * p.width
        perm = wire_permutation(p.order, n)
        gather = tuple(2 * rel + i for i in perm)
        return _Slot(
            _STRUCT[p.data_type], gather, p.bit, p.data_type == "bit", p.scale, p.offset, p.invalid
        )

    def decode(self, data: Sequence[int] | Sequence[bool]) -> np.ndarray:
        """Values (float64, NaN for no value) of the request's points, in `points` order."""
        out = np.empty(len(self._slots), dtype=np.float64)
        if self.request.table.is_bits:
            for i, s in enumerate(self._slots):
                raw = int(bool(data[s.gather[0]]))
                out[i] = math.nan if raw == s.invalid else raw * s.scale + s.offset
            return out
        wire = registers_to_bytes(data[: self.request.count])
        for i, s in enumerate(self._slots):
            assert s.unpack is not None
            raw = s.unpack.unpack(bytes([wire[j] for j in s.gather]))[0]
            if s.is_bit_in_register:
                raw = (raw >> s.bit) & 1
            if raw == s.invalid or (isinstance(raw, float) and not math.isfinite(raw)):
                out[i] = math.nan
            else:
                out[i] = raw * s.scale + s.offset
        return out


def decode_response(request: ReadRequest, data: Sequence[int] | Sequence[bool]) -> np.ndarray:
    """One-off decode of a response (tests, tools); drivers keep a RequestDecoder."""
    return RequestDecoder(request).decode(data)
