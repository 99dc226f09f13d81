"""Sparkplug B payload codec and topic namespace (drivers.sparkplug.spbcodec, .topics)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.sparkplug_b_pb2 import Payload
from drivers.sparkplug.topics import (
    StateTopic,
    Topic,
    device_topic,
    id_problem,
    node_topic,
    parse_state,
    parse_topic,
    state_payload,
    state_topic,
)

INT_TYPES = [
    (sp.DataType.INT8, -(2**7), 2**7 - 1),
    (sp.DataType.INT16, -(2**15), 2**15 - 1),
    (sp.DataType.INT32, -(2**31), 2**31 - 1),
    (sp.DataType.INT64, -(2**63), 2**63 - 1),
    (sp.DataType.UINT8, 0, 2**8 - 1),
    (sp.DataType.UINT16, 0, 2**16 - 1),
    (sp.DataType.UINT32, 0, 2**32 - 1),
    (sp.DataType.UINT64, 0, 2**64 - 1),
]


def _roundtrip(datatype: sp.DataType, value: sp.Value | None) -> sp.Value | None:
    p = sp.new_payload(1, seq=0)
    sp.add_metric(p, name="m", alias=1, datatype=datatype, value=value, timestamp=2)
    m = sp.decode(sp.encode(p)).metrics[0]
    return sp.get_value(m, m.datatype)


@pytest.mark.parametrize(("datatype", "lo", "hi"), INT_TYPES)
def test_integer_types_round_trip_at_their_limits(datatype: sp.DataType, lo: int, hi: int) -> None:
    assert _roundtrip(datatype, lo) == lo
    assert _roundtrip(datatype, hi) == hi
    with pytest.raises(sp.PayloadError, match="out of range"):
        _roundtrip(datatype, hi + 1)
    with pytest.raises(sp.PayloadError, match="out of range"):
        _roundtrip(datatype, lo - 1)


def test_signed_integers_travel_as_twos_complement_in_the_unsigned_field() -> None:
    p = sp.new_payload(1)
    m = sp.add_metric(p, name="m", datatype=sp.DataType.INT32, value=-1, timestamp=1)
    assert m.int_value == 2**32 - 1
    m = sp.add_metric(p, name="n", datatype=sp.DataType.INT64, value=-2, timestamp=1)
    assert m.long_value == 2**64 - 2


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_doubles_are_exact(value: float) -> None:
    assert _roundtrip(sp.DataType.DOUBLE, value) == value


def test_other_scalars_round_trip() -> None:
    assert _roundtrip(sp.DataType.FLOAT, 1.5) == 1.5
    assert _roundtrip(sp.DataType.BOOLEAN, True) is True
    assert _roundtrip(sp.DataType.STRING, "läuft") == "läuft"
    assert _roundtrip(sp.DataType.DATETIME, 1_700_000_000_000) == 1_700_000_000_000


def test_null_value_has_is_null_and_no_value() -> None:
    """[tck-id-operational-behavior-data-publish-dbirth-values]"""
    p = sp.new_payload(1)
    m = sp.add_metric(p, name="m", datatype=sp.DataType.DOUBLE, value=None, timestamp=1)
    assert m.is_null and m.WhichOneof("value") is None
    assert sp.get_value(m, m.datatype) is None
    assert math.isnan(sp.as_number(None))


def test_a_fraction_is_no_integer() -> None:
    with pytest.raises(sp.PayloadError, match="not an integer"):
        _roundtrip(sp.DataType.INT32, 1.5)


def test_properties_keep_keys_and_values_paired_and_quality_is_int32() -> None:
    """[tck-id-payloads-propertyset-keys-array-size] [tck-id-payloads-propertyset-quality-value-type]
    [tck-id-payloads-propertyset-quality-value-value]"""
    props = {
        "engUnit": sp.Prop(sp.DataType.STRING, "mm"),
        "engLow": sp.Prop(sp.DataType.DOUBLE, 0.0),
        "Quality": sp.quality_property(sp.SpQuality.STALE),
        "missing": sp.Prop(sp.DataType.DOUBLE, None),
    }
    ps = sp.property_set(props)
    assert len(ps.keys) == len(ps.values) == 4
    quality = ps.values[list(ps.keys).index("Quality")]
    assert quality.type == 3 and quality.int_value == 500
    assert sp.read_properties(ps) == {
        "engUnit": "mm",
        "engLow": 0.0,
        "Quality": 500,
        "missing": None,
    }
    broken = sp.property_set(props)
    del broken.values[-1]
    with pytest.raises(sp.PayloadError, match="keys"):
        sp.read_properties(broken)


def test_ndeath_carries_only_bdseq_and_no_seq() -> None:
    """[tck-id-topics-ndeath-payload] [tck-id-topics-ndeath-seq]
    [tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq] (Int64)"""
    p = Payload()
    p.ParseFromString(sp.ndeath(7))
    assert [m.name for m in p.metrics] == ["bdSeq"]
    assert p.metrics[0].datatype == sp.DataType.INT64
    assert not p.HasField("seq")
    assert sp.bdseq_of(p) == 7


def test_rebirth_request_is_a_true_boolean_without_seq() -> None:
    """[tck-id-operational-behavior-data-commands-ncmd-rebirth-name] -value [tck-id-payloads-ncmd-seq]
    [tck-id-payloads-ncmd-timestamp]"""
    p = sp.decode(sp.rebirth_request(123))
    assert not p.HasField("seq") and p.timestamp == 123
    (m,) = p.metrics
    assert m.name == "Node Control/Rebirth" and m.datatype == sp.DataType.BOOLEAN
    assert m.boolean_value is True


def test_garbage_is_a_payload_error() -> None:
    with pytest.raises(sp.PayloadError, match="not a Sparkplug B payload"):
        sp.decode(b"\xff\xff\xff")


def test_topics() -> None:
    """[tck-id-topic-structure] [tck-id-topics-nbirth-topic] [tck-id-topics-dbirth-topic]
    [tck-id-topics-ddata-topic] [tck-id-host-topic-phid-birth-topic]"""
    assert node_topic("plant", "NBIRTH", "edge") == "spBv1.0/plant/NBIRTH/edge"
    assert device_topic("plant", "DDATA", "edge", "line1") == "spBv1.0/plant/DDATA/edge/line1"
    assert state_topic("scada") == "spBv1.0/STATE/scada"
    assert parse_topic("spBv1.0/plant/DDATA/edge/line1") == Topic("plant", "DDATA", "edge", "line1")
    assert parse_topic("spBv1.0/plant/NCMD/edge") == Topic("plant", "NCMD", "edge")
    assert parse_topic("spBv1.0/STATE/scada") == StateTopic("scada")
    # device id only with device message types, and always with them
    # [tck-id-topic-structure-namespace-device-id-non-associated-message-types]
    assert parse_topic("spBv1.0/plant/NDATA/edge/line1") is None
    assert parse_topic("spBv1.0/plant/DDATA/edge") is None
    assert parse_topic("spAv1.0/plant/NDATA/edge") is None
    assert parse_topic("spBv1.0/plant/XDATA/edge") is None


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "a#", "a\nb"])
def test_reserved_characters_are_refused_in_ids(bad: str) -> None:
    """[tck-id-topic-structure-namespace-valid-group-id] -valid-edge-node-id -valid-device-id"""
    assert id_problem(bad) is not None
    assert id_problem("Line 1 (Süd)") is None


def test_state_payload() -> None:
    """[tck-id-host-topic-phid-birth-payload] [tck-id-host-topic-phid-death-payload]"""
    assert state_payload(True, 5) == b'{"online":true,"timestamp":5}'
    assert parse_state(state_payload(False, 9)) == (False, 9)
    for bad in (b"nope", b"[]", b'{"online":1,"timestamp":1}', b'{"online":true}'):
        with pytest.raises(sp.PayloadError):
            parse_state(bad)
