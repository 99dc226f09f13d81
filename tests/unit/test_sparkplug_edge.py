"""The edge node session (drivers.sparkplug.edge), without a broker: births, aliases, seq,
bdSeq, report by exception, rebirth and the primary host's STATE."""

from __future__ import annotations

import itertools

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.edge import EdgeNode, EdgeState, MetricDef, Publish, Sample
from drivers.sparkplug.topics import state_payload

DEVICES = {
    "line1": [
        MetricDef(
            "diameter", sp.DataType.DOUBLE, {"engUnit": sp.Prop(sp.DataType.STRING, "mm")}, 0.01
        ),
        MetricDef("state", sp.DataType.INT32),
    ],
    "line2": [MetricDef("diameter", sp.DataType.DOUBLE)],
}


def state_of(node: EdgeNode) -> EdgeState:
    """The node's state, read afresh (an assert on `node.state` would narrow it for mypy)."""
    return node.state


def _node(**kw: object) -> EdgeNode:
    node = EdgeNode("plant", "edge", DEVICES, **kw)  # type: ignore[arg-type]
    for dev in ("line1", "line2"):
        node.set_values(dev, {"diameter": Sample(12.0, 1000)})
    node.set_values("line1", {"state": Sample(2, 1000)})
    return node


def _decoded(pubs: list[Publish]) -> list[tuple[str, sp.Payload]]:
    return [(p.topic.split("/", 2)[2], sp.decode(p.payload)) for p in pubs]


def test_birth_sequence() -> None:
    """[tck-id-topics-nbirth-seq-num] [tck-id-topics-nbirth-bdseq-included]
    [tck-id-topics-nbirth-rebirth-metric] [tck-id-payloads-dbirth-order]
    [tck-id-payloads-alias-birth-requirement] [tck-id-payloads-alias-uniqueness]
    [tck-id-topics-dbirth-metrics] [tck-id-payloads-metric-datatype-req]"""
    node = _node()
    will = node.connecting()
    assert will.topic == "spBv1.0/plant/NDEATH/edge" and will.qos == 1 and not will.retain
    out = node.connected(5000)
    msgs = _decoded(out.publish)
    assert [t for t, _ in msgs] == ["NBIRTH/edge", "DBIRTH/edge/line1", "DBIRTH/edge/line2"]
    assert all(p.qos == 0 and not p.retain for p in out.publish)
    nbirth = msgs[0][1]
    assert nbirth.seq == 0 and nbirth.timestamp == 5000
    by_name = {m.name: m for m in nbirth.metrics}
    assert sp.bdseq_of(nbirth) == sp.bdseq_of(sp.decode(will.payload)) == 0
    rebirth = by_name["Node Control/Rebirth"]
    assert rebirth.datatype == sp.DataType.BOOLEAN and rebirth.boolean_value is False
    assert not rebirth.HasField("alias")
    assert [p.seq for _, p in msgs[1:]] == [1, 2]
    aliases = [m.alias for _, p in msgs[1:] for m in p.metrics]
    assert len(aliases) == len(set(aliases)) == 3 and 0 not in aliases
    line1 = msgs[1][1].metrics
    assert [
        (m.name, m.datatype, m.double_value if m.name == "diameter" else m.int_value) for m in line1
    ] == [
        ("diameter", sp.DataType.DOUBLE, 12.0),
        ("state", sp.DataType.INT32, 2),
    ]
    assert sp.read_properties(line1[0].properties)["engUnit"] == "mm"
    assert node.state is EdgeState.ONLINE


def test_data_by_exception_with_deadband_by_alias_and_seq_wrap() -> None:
    """[tck-id-topics-ddata-payload] [tck-id-payloads-alias-data-cmd-requirement]
    [tck-id-payloads-metric-datatype-not-req] [tck-id-payloads-sequence-num-incrementing]"""
    node = _node()
    node.connecting()
    births = _decoded(node.connected(0).publish)
    alias = {m.name: m.alias for m in births[1][1].metrics}
    assert node.changes(1) == []  # nothing changed since the birth
    node.set_values("line1", {"diameter": Sample(12.005, 2000)})  # inside the 0.01 deadband
    assert node.changes(2) == []
    node.set_values("line1", {"diameter": Sample(12.02, 3000)})
    (msg,) = _decoded(node.changes(3))
    topic, p = msg
    assert topic == "DDATA/edge/line1" and p.seq == 3
    (m,) = p.metrics
    assert m.alias == alias["diameter"] and not m.name and not m.HasField("datatype")
    assert m.double_value == 12.02 and m.timestamp == 3000
    seqs = []
    for i in range(300):
        node.set_values("line2", {"diameter": Sample(float(i), i)})
        seqs += [p.seq for _, p in _decoded(node.changes(i))]
    assert seqs[:2] == [4, 5] and 255 in seqs
    assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(seqs))


def test_bad_value_is_null_and_quality_changes_carry_the_property() -> None:
    """[tck-id-operational-behavior-data-publish-dbirth-values]
    [tck-id-payloads-propertyset-quality-value-value]"""
    node = _node()
    node.connecting()
    node.connected(0)
    node.set_values("line1", {"diameter": Sample(None, 10, sp.SpQuality.BAD, "bad")})
    node.set_values("line2", {"diameter": Sample(12.0, 10, sp.SpQuality.STALE, "stale")})
    msgs = dict(_decoded(node.changes(10)))
    bad = msgs["DDATA/edge/line1"].metrics[0]
    assert bad.is_null and bad.WhichOneof("value") is None
    assert sp.read_properties(bad.properties)["Quality"] == 0
    stale = msgs["DDATA/edge/line2"].metrics[0]
    assert sp.read_properties(stale.properties) == {"Quality": 500, "scadaQuality": "stale"}
    assert stale.double_value == 12.0


def test_rebirth_keeps_bdseq_and_restarts_seq() -> None:
    """[tck-id-operational-behavior-data-commands-rebirth-action-2] -action-3"""
    node = _node()
    node.connecting()
    node.connected(0)
    node.set_values("line1", {"diameter": Sample(13.0, 1)})
    node.changes(1)
    out = node.on_command(None, sp.rebirth_request(2), 2)
    msgs = _decoded(out.publish)
    assert [t for t, _ in msgs] == ["NBIRTH/edge", "DBIRTH/edge/line1", "DBIRTH/edge/line2"]
    assert msgs[0][1].seq == 0 and sp.bdseq_of(msgs[0][1]) == 0
    assert msgs[1][1].metrics[0].double_value == 13.0
    # a new connect is a new bdSeq, wrapping after 255 [tck-id-topics-nbirth-bdseq-increment]
    bdseqs = [sp.bdseq_of(sp.decode(node.connecting().payload)) for _ in range(256)]
    assert bdseqs[:2] == [1, 2] and bdseqs[254:] == [255, 0]


def test_writes_are_handed_to_the_caller() -> None:
    node = _node()
    node.connecting()
    node.connected(0)
    cmd = sp.new_payload(5)
    sp.add_metric(cmd, name="diameter", datatype=sp.DataType.DOUBLE, value=11.0, timestamp=5)
    out = node.on_command("line1", sp.encode(cmd), 5)
    assert out.publish == [] and [(w.device, w.metric, w.value) for w in out.writes] == [
        ("line1", "diameter", 11.0)
    ]
    unknown = sp.new_payload(5)
    sp.add_metric(unknown, name="nope", datatype=sp.DataType.DOUBLE, value=1.0, timestamp=5)
    assert node.on_command("line1", sp.encode(unknown), 5).writes == []


def test_primary_host_gates_the_birth() -> None:
    """[tck-id-message-flow-edge-node-birth-publish-phid-wait] -wait-id -wait-online
    -wait-timestamp [tck-id-message-flow-edge-node-birth-publish-phid-offline]
    [tck-id-operational-behavior-edge-node-termination-host-offline-timestamp]"""
    node = _node(primary_host="scada")
    node.connecting()
    assert node.connected(0).publish == [] and state_of(node) is EdgeState.WAITING_HOST
    assert node.changes(1) == []
    assert node.on_state("other", state_payload(True, 100), 1).publish == []
    assert node.on_state("scada", state_payload(False, 100), 1).publish == []
    births = node.on_state("scada", state_payload(True, 200), 2).publish
    assert [p.topic.split("/")[2] for p in births] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    # an older offline STATE (a late will of an earlier session) changes nothing
    assert node.on_state("scada", state_payload(False, 150), 3).publish == []
    assert node.state is EdgeState.ONLINE
    out = node.on_state("scada", state_payload(False, 200), 4)
    assert out.disconnect and [p.topic for p in out.publish] == ["spBv1.0/plant/NDEATH/edge"]
    assert sp.bdseq_of(sp.decode(out.publish[0].payload)) == 0
    # reconnect: a new bdSeq, and again no birth until the host is back online
    node.connecting()
    assert node.connected(5).publish == []
    assert len(node.on_state("scada", state_payload(True, 300), 6).publish) == 3


def test_device_death_and_return() -> None:
    """[tck-id-operational-behavior-device-ddeath] [tck-id-payloads-ddeath-seq-inc]"""
    node = _node()
    node.connecting()
    node.connected(0)
    (death,) = _decoded(node.device_death("line2", 1))
    assert death[0] == "DDEATH/edge/line2" and death[1].seq == 3
    node.set_values("line2", {"diameter": Sample(1.0, 2)})
    assert node.changes(2) == []
    (birth,) = _decoded(node.device_alive("line2", 3))
    assert birth[0] == "DBIRTH/edge/line2" and birth[1].seq == 4
    assert birth[1].metrics[0].double_value == 1.0
