"""Sparkplug B payloads: building and reading metrics of the protobuf `Payload`.

Pure: bytes in, values out. Only the scalar data types carry plant values here (integers,
floats, booleans, strings, DateTime); datasets, templates and arrays decode, and read as "no
value" (docs/sparkplug.md, what is not supported).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError

from drivers.sparkplug.sparkplug_b_pb2 import Payload
from drivers.sparkplug.topics import PayloadError

__all__ = ["Payload", "PayloadError"]

Metric = Payload.Metric
PropertySet = Payload.PropertySet

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
QUALITY = "Quality"  # the one property key the specification names (6.4.8)


class DataType(IntEnum):
    """The DataType enum of sparkplug_b.proto (the scalar part used here)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


class SpQuality(IntEnum):
    """Values of the Quality property: [tck-id-payloads-propertyset-quality-value-value]."""

    BAD = 0
    GOOD = 192
    STALE = 500


_SIGNED = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UNSIGNED = {DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}
_LONG = {DataType.INT64, DataType.UINT64, DataType.DATETIME}
_STRINGS = {DataType.STRING, DataType.TEXT}

Value = float | int | bool | str


def _check_int(value: int, datatype: DataType) -> int:
    bits = _SIGNED.get(datatype) or _UNSIGNED.get(datatype) or 64
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if datatype in _SIGNED else (0, 2**bits - 1)
    if not lo <= value <= hi:
        raise PayloadError(f"{value} is out of range for {datatype.name}")
    return value


def set_value(target: Metric | Payload.PropertyValue, datatype: DataType, value: Value) -> None:
    """Put `value` in the oneof field `datatype` uses. Signed integers travel as their two's
    complement in the unsigned field, as the specification's examples and Tahu do."""
    if datatype in _SIGNED or datatype in _UNSIGNED or datatype == DataType.DATETIME:
        if isinstance(value, float) and not value.is_integer():
            raise PayloadError(f"{value} is not an integer ({datatype.name})")
        number = _check_int(int(value), datatype)
        bits = 64 if datatype in _LONG else 32
        raw = number & (2**bits - 1)
        if datatype in _LONG:
            target.long_value = raw
        else:
            target.int_value = raw
    elif datatype == DataType.FLOAT:
        target.float_value = float(value)
    elif datatype == DataType.DOUBLE:
        target.double_value = float(value)
    elif datatype == DataType.BOOLEAN:
        target.boolean_value = bool(value)
    elif datatype in _STRINGS:
        target.string_value = str(value)
    else:
        raise PayloadError(f"data type {int(datatype)} carries no scalar value")


def get_value(source: Metric | Payload.PropertyValue, datatype: int) -> Value | None:
    """The value of a metric or property as Python, None when null or not a scalar type."""
    if source.is_null:
        return None
    which = source.WhichOneof("value")
    if which is None:
        return None
    raw = getattr(source, which)
    try:
        dt = DataType(datatype)
    except ValueError:
        return None
    if dt in _SIGNED:
        bits = 64 if dt == DataType.INT64 else 32
        n = int(raw) & ((1 << bits) - 1)
        return n - (1 << bits) if n >= 1 << (bits - 1) else n
    if dt in _UNSIGNED or dt == DataType.DATETIME:
        return int(raw)
    if dt in (DataType.FLOAT, DataType.DOUBLE):
        return float(raw)
    if dt == DataType.BOOLEAN:
        return bool(raw)
    if dt in _STRINGS:
        return str(raw)
    return None


def as_number(value: Value | None) -> float:
    """A metric value as the tag store's float64 (NaN for none or text)."""
    if value is None or isinstance(value, str):
        return math.nan
    return float(value)


@dataclass(frozen=True, slots=True)
class Prop:
    """One property of a PropertySet: its data type and value (None: is_null)."""

    datatype: DataType
    value: Value | None


def property_set(props: Mapping[str, Prop]) -> PropertySet:
    """keys and values arrays of the same length: [tck-id-payloads-propertyset-keys-array-size]."""
    out = PropertySet()
    for key, prop in props.items():
        out.keys.append(key)
        pv = out.values.add()
        pv.type = int(prop.datatype)
        if prop.value is None:
            pv.is_null = True
        else:
            set_value(pv, prop.datatype, prop.value)
    return out


def read_properties(ps: PropertySet) -> dict[str, Value | None]:
    if len(ps.keys) != len(ps.values):
        raise PayloadError("a property set with more keys than values, or fewer")
    return {k: get_value(v, v.type) for k, v in zip(ps.keys, ps.values, strict=True)}


def quality_property(quality: SpQuality) -> Prop:
    """[tck-id-payloads-propertyset-quality-value-type]: an Int32 property."""
    return Prop(DataType.INT32, int(quality))


def add_metric(
    payload: Payload,
    *,
    datatype: DataType,
    value: Value | None,
    timestamp: int,
    name: str | None = None,
    alias: int | None = None,
    with_datatype: bool = True,
    properties: Mapping[str, Prop] | None = None,
) -> Metric:
    """Append a metric; value None is sent as is_null with no value
    ([tck-id-operational-behavior-data-publish-dbirth-values])."""
    m: Metric = payload.metrics.add()
    if name is not None:
        m.name = name
    if alias is not None:
        m.alias = alias
    m.timestamp = timestamp
    if with_datatype:
        m.datatype = int(datatype)
    if value is None:
        m.is_null = True
    else:
        set_value(m, datatype, value)
    if properties:
        m.properties.CopyFrom(property_set(properties))
    return m


def new_payload(timestamp: int, seq: int | None = None) -> Payload:
    p = Payload()
    p.timestamp = timestamp
    if seq is not None:
        p.seq = seq
    return p


def encode(payload: Payload) -> bytes:
    return bytes(payload.SerializeToString())


def decode(data: bytes) -> Payload:
    p = Payload()
    try:
        p.ParseFromString(data)
    except (DecodeError, ValueError) as err:
        raise PayloadError(f"not a Sparkplug B payload: {err}") from err
    return p


def metric_named(payload: Payload, name: str) -> Metric | None:
    return next((m for m in payload.metrics if m.name == name), None)


def bdseq_of(payload: Payload) -> int | None:
    """The bdSeq metric's value of an NBIRTH or NDEATH ([tck-id-payloads-nbirth-bdseq])."""
    m = metric_named(payload, BDSEQ)
    if m is None:
        return None
    value = get_value(m, m.datatype or DataType.INT64)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def ndeath(bdseq: int) -> bytes:
    """An NDEATH: only the bdSeq metric (Int64), no seq ([tck-id-topics-ndeath-payload],
    [tck-id-topics-ndeath-seq]). Its timestamp is that of the CONNECT, which hosts ignore."""
    p = Payload()
    add_metric(p, name=BDSEQ, datatype=DataType.INT64, value=bdseq, timestamp=0)
    p.metrics[0].ClearField("timestamp")
    return encode(p)


def rebirth_request(timestamp: int) -> bytes:
    """An NCMD asking for a rebirth: 'Node Control/Rebirth' = true, no seq
    ([tck-id-operational-behavior-data-commands-ncmd-rebirth-name], -value, [tck-id-payloads-ncmd-seq])."""
    p = new_payload(timestamp)
    add_metric(p, name=REBIRTH, datatype=DataType.BOOLEAN, value=True, timestamp=timestamp)
    return encode(p)


def metrics_by_key(metrics: Iterable[Metric]) -> dict[str, Metric]:
    return {m.name: m for m in metrics if m.name}
