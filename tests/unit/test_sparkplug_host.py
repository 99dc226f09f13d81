"""The host application's session (drivers.sparkplug.host), fed by an edge node session:
seq gaps and the reorder timeout, deaths, aliases, DATA before BIRTH."""

from __future__ import annotations

from drivers.sparkplug import spbcodec as sp
from drivers.sparkplug.edge import EdgeNode, MetricDef, Publish, Sample
from drivers.sparkplug.host import HostSession
from drivers.sparkplug.topics import Topic, parse_topic

DEFS = {"line1": [MetricDef("diameter", sp.DataType.DOUBLE), MetricDef("state", sp.DataType.INT32)]}


def _pair(reorder: float = 1.0) -> tuple[EdgeNode, HostSession]:
    edge = EdgeNode("plant", "edge", DEFS)
    edge.set_values("line1", {"diameter": Sample(12.0, 1), "state": Sample(2, 1)})
    host = HostSession("plant", ["edge"], reorder_timeout=reorder, rebirth_retry=5.0)
    return edge, host


def _feed(host: HostSession, pubs: list[Publish], now: float) -> list[str]:
    out: list[str] = []
    for p in pubs:
        topic = parse_topic(p.topic)
        assert isinstance(topic, Topic)
        out += host.receive(topic, p.payload, now)
    return out


def _change(edge: EdgeNode, value: float) -> list[Publish]:
    edge.set_values("line1", {"diameter": Sample(value, int(value))})
    return edge.changes(0)


def test_values_follow_births_and_data() -> None:
    edge, host = _pair()
    edge.connecting()
    assert _feed(host, edge.connected(0).publish, 0.0) == []
    mv, _ = host.value("edge", "line1", "diameter")
    assert mv is not None and mv.value == 12.0 and mv.quality == "good"
    _feed(host, _change(edge, 13.0), 0.1)
    mv, _ = host.value("edge", "line1", "diameter")
    assert mv is not None and mv.value == 13.0
    state, _ = host.value("edge", "line1", "state")
    assert state is not None and state.value == 2


def test_a_late_message_inside_the_reorder_timeout_cancels_the_timer() -> None:
    """[tck-id-operational-behavior-host-reordering-success]"""
    edge, host = _pair(reorder=1.0)
    edge.connecting()
    _feed(host, edge.connected(0).publish, 0.0)
    first, second = _change(edge, 13.0), _change(edge, 14.0)
    _feed(host, second, 0.1)  # seq 3 before seq 2
    assert host.nodes["edge"].missing == {2}
    assert host.poll(0.5) == []
    _feed(host, first, 0.6)
    assert host.nodes["edge"].missing == set() and host.nodes["edge"].gap_since is None
    assert host.poll(5.0) == []


def test_a_gap_not_filled_asks_for_one_rebirth() -> None:
    """[tck-id-operational-behavior-host-reordering-start] [tck-id-operational-behavior-host-reordering-rebirth]"""
    edge, host = _pair(reorder=1.0)
    edge.connecting()
    _feed(host, edge.connected(0).publish, 0.0)
    _change(edge, 13.0)  # lost
    _feed(host, _change(edge, 14.0), 0.1)
    assert host.poll(0.9) == []
    assert host.poll(1.1) == ["edge"]
    assert host.poll(10.0) == []  # the gap is forgotten once the request went out
    _feed(host, _change(edge, 15.0), 10.0)
    assert host.nodes["edge"].rebirth_requests == 1


def test_data_before_birth_and_unknown_alias_ask_for_a_rebirth_at_most_every_retry() -> None:
    edge, host = _pair()
    edge.connecting()
    edge.connected(0)  # the host missed the birth
    assert _feed(host, _change(edge, 13.0), 0.0) == ["edge"]
    assert _feed(host, _change(edge, 14.0), 1.0) == []  # within rebirth_retry
    assert _feed(host, _change(edge, 15.0), 6.0) == ["edge"]
    _feed(host, edge.on_command(None, sp.rebirth_request(0), 0).publish, 7.0)
    bogus = sp.new_payload(0, (edge.seq + 1) % 256)
    sp.add_metric(
        bogus, alias=999, datatype=sp.DataType.DOUBLE, value=1.0, timestamp=0, with_datatype=False
    )
    topic = Topic("plant", "DDATA", "edge", "line1")
    assert host.receive(topic, sp.encode(bogus), 20.0) == ["edge"]


def test_deaths_make_values_stale_and_an_old_ndeath_is_ignored() -> None:
    """[tck-id-operational-behavior-edge-node-termination-host-action-ddeath-devices-tags-stale]
    [tck-id-operational-behavior-edge-node-termination-host-action-ndeath-devices-tags-stale]"""
    edge, host = _pair()
    old_will = edge.connecting()
    _feed(host, edge.connected(0).publish, 0.0)
    _feed(host, edge.device_death("line1", 5), 0.1)
    mv, why = host.value("edge", "line1", "diameter")
    assert mv is not None and mv.quality == "stale" and "DDEATH" in why
    _feed(host, edge.device_alive("line1", 6), 0.2)
    assert host.value("edge", "line1", "diameter")[0].quality == "good"  # type: ignore[union-attr]
    # reconnect: the old connection's will arrives after the new birth, and is ignored
    edge.connecting()
    _feed(host, edge.connected(10).publish, 1.0)
    _feed(host, [old_will], 1.1)
    assert host.nodes["edge"].born and host.value("edge", "line1", "diameter")[0].quality == "good"  # type: ignore[union-attr]
    _feed(host, [edge.will()], 1.2)
    assert not host.nodes["edge"].born
    mv, why = host.value("edge", "line1", "diameter")
    assert mv is not None and mv.quality == "stale" and "NDEATH" in why


def test_quality_properties_are_read() -> None:
    edge, host = _pair()
    edge.connecting()
    _feed(host, edge.connected(0).publish, 0.0)
    edge.set_values("line1", {"diameter": Sample(12.0, 2, sp.SpQuality.GOOD, "uncertain")})
    _feed(host, edge.changes(2), 0.1)
    assert host.value("edge", "line1", "diameter")[0].quality == "uncertain"  # type: ignore[union-attr]
    edge.set_values("line1", {"diameter": Sample(None, 3, sp.SpQuality.BAD, "bad")})
    _feed(host, edge.changes(3), 0.2)
    mv = host.value("edge", "line1", "diameter")[0]
    assert mv is not None and mv.quality == "bad" and mv.value is None
