"""The service as a Sparkplug B edge node (scada.sparkplug), on a real mosquitto, checked by an
independent subscriber (tests.sparkplug_probe decodes with the generated protobuf only)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from drivers.sparkplug.sparkplug_b_pb2 import Payload
from tests.conftest import ServerProcess, eventually_async, scaled
from tests.mosquitto import Mosquitto, mosquitto  # noqa: F401  (fixture)
from tests.sparkplug_probe import Probe, Received, value_of

TAGS = (
    "body_temperature_1",
    "body_temperature_2",
    "body_temperature_3",
    "body_temperature_4",
    "die_temperature",
    "diameter",
    "line_speed",
    "motor_current",
    "melt_pressure",
    "state",
)
DEVICES = [f"line{i}" for i in range(1, 9)]


def _sparkplug(broker: Mosquitto, **extra: Any) -> dict[str, Any]:
    return {
        "sparkplug": {
            "enabled": True,
            "edge_node": "scada",
            "broker": {"url": broker.url, **broker.credentials("scada")},
            **extra,
        }
    }


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, scaled(180)))


def _metric(p: Payload, name: str) -> Payload.Metric:
    found: Payload.Metric = next(m for m in p.metrics if m.name == name)
    return found


class Session:
    """What the probe saw of one edge node session: aliases from the births, values over time."""

    def __init__(self, births: list[Received]) -> None:
        self.alias: dict[int, tuple[str, str, int]] = {}
        self.history: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        for m in births:
            assert m.device is not None
            for metric in m.payload.metrics:
                self.alias[metric.alias] = (m.device, metric.name, metric.datatype)
                self.history[(m.device, metric.name)] = [
                    (metric.timestamp, value_of(metric, metric.datatype))
                ]

    def take(self, m: Received) -> list[tuple[str, Any, Any, bool]]:
        """Apply a DDATA; returns (name, previous, new, has properties) of each metric in it."""
        out: list[tuple[str, Any, Any, bool]] = []
        for metric in m.payload.metrics:
            device, name, datatype = self.alias[metric.alias]
            assert device == m.device and not metric.name  # by alias only
            hist = self.history[(device, name)]
            new = value_of(metric, datatype)
            out.append((name, hist[-1][1], new, metric.HasField("properties")))
            hist.append((metric.timestamp, new))
        return out

    def as_of(self, device: str, name: str, ts_ms: int) -> Any:
        value = None
        for t, v in self.history[(device, name)]:
            if t <= ts_ms:
                value = v
        return value


def test_births_values_seq_rebirth_and_kill(
    mosquitto: Mosquitto,  # noqa: F811
    server_factory: Callable[..., ServerProcess],
) -> None:
    """[tck-id-topics-nbirth-mqtt] [tck-id-topics-nbirth-seq-num] [tck-id-topics-nbirth-timestamp]
    [tck-id-topics-nbirth-bdseq-included] [tck-id-topics-nbirth-rebirth-metric]
    [tck-id-operational-behavior-data-commands-rebirth-name-aliases]
    [tck-id-payloads-dbirth-order] [tck-id-topics-dbirth-metric-reqs] [tck-id-topics-dbirth-metrics]
    [tck-id-payloads-alias-birth-requirement] [tck-id-payloads-alias-data-cmd-requirement]
    [tck-id-topics-ddata-payload] [tck-id-topics-ddata-mqtt] [tck-id-payloads-sequence-num-incrementing]
    [tck-id-operational-behavior-data-commands-rebirth-action-2] -action-3
    [tck-id-payloads-ndeath-bdseq] [tck-id-message-flow-edge-node-birth-publish-will-message-qos]"""
    server = server_factory(_sparkplug(mosquitto), start=False)

    async def body() -> None:
        async with Probe(mosquitto) as probe, httpx.AsyncClient(base_url=server.http) as http:
            await asyncio.to_thread(server.start)
            await eventually_async(lambda: len(probe.of("DBIRTH")) >= 8, timeout=30, what="births")
            nbirth_msg = probe.of("NBIRTH")[0]
            start = probe.messages.index(nbirth_msg)
            nbirth = nbirth_msg.payload
            assert nbirth_msg.topic == "spBv1.0/plant/NBIRTH/scada"
            assert nbirth_msg.qos == 0 and not nbirth_msg.retain
            assert nbirth.seq == 0 and nbirth.timestamp > 0
            bdseq = _metric(nbirth, "bdSeq").long_value
            rebirth = _metric(nbirth, "Node Control/Rebirth")
            assert rebirth.boolean_value is False and not rebirth.HasField("alias")
            births = probe.messages[start + 1 : start + 9]
            assert [m.kind for m in births] == ["DBIRTH"] * 8  # before any DATA
            assert sorted(m.device or "" for m in births) == DEVICES
            for m in births:
                names = {x.name for x in m.payload.metrics}
                assert set(TAGS) <= names, m.device
                assert {"Alarms/Active Count", "Alarms/diameter.hi/Active"} <= names
                dia = _metric(m.payload, "diameter")
                assert dia.datatype == 10 and dia.alias > 0
                props = dict(zip(dia.properties.keys, dia.properties.values, strict=True))
                assert props["engUnit"].string_value == "mm"
                assert {"engLow", "engHigh", "limitHi", "limitLo", "setpoint"} <= set(props)
                if m.device == "line1":  # the default plant's line 1: a 12 mm product
                    assert props["limitHi"].double_value == 12.2
                    assert props["engHigh"].double_value == 30.0
                assert _metric(m.payload, "state").string_value == "running"
            session = Session(births)
            aliases = list(session.alias)
            assert len(aliases) == len(set(aliases))  # unique across the node

            # values equal to the service's own /api/lines, as of each record's time: of an
            # answer whose tick the edge node published for every line (a busy loop may fold
            # two ticks into one DATA; then the next answer is taken)
            seen = start + 9
            changes: list[tuple[str, Any, Any, bool]] = []

            async def published_answer() -> list[dict[str, Any]] | None:
                nonlocal seen
                answer = (await http.get("/api/lines")).json()["lines"]
                records = [line["latest"] for line in answer]
                newest = max(_ms(r["timestamp"]) for r in records)
                await eventually_async(
                    lambda: any(
                        m.payload.timestamp > newest + 200 for m in probe.of("DDATA", seen)
                    ),
                    what="DATA after the /api/lines answer",
                )
                data = probe.of("DDATA", seen)
                seen = probe.messages.index(data[-1]) + 1
                for m in data:
                    changes.extend(session.take(m))
                stamps = {(dev, t) for (dev, _), hist in session.history.items() for t, _ in hist}
                each = all(
                    (f"line{r['production_line_id']}", _ms(r["timestamp"])) in stamps
                    for r in records
                )
                return records if each else None

            lines: list[dict[str, Any]] = await eventually_async(
                published_answer, timeout=60, what="an /api/lines answer of a published tick"
            )
            for record in lines:
                device, ts = f"line{record['production_line_id']}", _ms(record["timestamp"])
                temps = [session.as_of(device, f"body_temperature_{z}", ts) for z in (1, 2, 3, 4)]
                assert temps == record["body_temperatures"], device
                for tag in TAGS[4:]:
                    assert session.as_of(device, tag, ts) == record[tag], (device, tag)
            # only changed metrics in DATA (or a change of quality)
            assert changes and all(new != old or props for _, old, new, props in changes)

            # seq contiguous from the NBIRTH's 0, through 255 back to 0
            await eventually_async(
                lambda: len(probe.messages) - start > 300, timeout=60, what="300 messages"
            )
            seqs = [m.payload.seq for m in probe.messages[start:] if m.kind in ("DBIRTH", "DDATA")]
            assert seqs[0] == 1 and 0 in seqs[1:]
            assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(seqs))

            # rebirth on request: NBIRTH seq 0 with the same bdSeq, all DBIRTHs again
            mark = len(probe.messages)
            cmd = Payload(timestamp=int(time.time() * 1000))
            cmd.metrics.add(name="Node Control/Rebirth", datatype=11, boolean_value=True)
            await probe.publish("spBv1.0/plant/NCMD/scada", cmd.SerializeToString())
            await eventually_async(lambda: len(probe.of("DBIRTH", mark)) >= 8, what="rebirth")
            (again,) = probe.of("NBIRTH", mark)
            assert again.payload.seq == 0 and _metric(again.payload, "bdSeq").long_value == bdseq
            after = probe.messages.index(again)
            assert [m.kind for m in probe.messages[after + 1 : after + 9]] == ["DBIRTH"] * 8

            # kill -9: the broker publishes the will, with the NBIRTH's bdSeq
            await asyncio.to_thread(server.kill)
            await eventually_async(lambda: probe.of("NDEATH"), what="NDEATH after kill -9")
            (death,) = probe.of("NDEATH")
            assert death.qos == 1 and not death.retain and not death.payload.HasField("seq")
            assert [x.name for x in death.payload.metrics] == ["bdSeq"]
            assert death.payload.metrics[0].long_value == bdseq

    run(body())


def test_primary_host_state_gates_the_birth(
    mosquitto: Mosquitto,  # noqa: F811
    server_factory: Callable[..., ServerProcess],
) -> None:
    """[tck-id-message-flow-edge-node-birth-publish-phid-wait] -wait-online -wait-timestamp
    [tck-id-message-flow-edge-node-birth-publish-phid-offline]
    [tck-id-operational-behavior-edge-node-birth-sequence-wait]"""
    server = server_factory(_sparkplug(mosquitto, primary_host="ignition"), start=False)
    state = "spBv1.0/STATE/ignition"

    async def body() -> None:
        async with Probe(mosquitto) as probe, httpx.AsyncClient(base_url=server.http) as http:
            await probe.publish(state, _state(False, 1000), qos=1, retain=True)
            await asyncio.to_thread(server.start)
            await eventually_async(
                lambda: "as sparkplug-plant-scada" in mosquitto.log(), what="edge node connected"
            )
            # a second of ticks with the node connected and the host offline: no birth
            first = (await http.get("/api/lines")).json()["lines"][0]["latest"]["timestamp"]
            await eventually_async(
                lambda: _later(http, first, 1000), what="a second of plant ticks"
            )
            assert probe.of("NBIRTH") == [] and probe.of("DDATA") == []

            await probe.publish(state, _state(True, 2000), qos=1, retain=True)
            await eventually_async(lambda: len(probe.of("DBIRTH")) == 8, what="births")
            bdseq = _metric(probe.of("NBIRTH")[0].payload, "bdSeq").long_value

            # an offline STATE older than the online one changes nothing
            await probe.publish(state, _state(False, 1500), qos=1, retain=True)
            mark = len(probe.messages)
            await eventually_async(lambda: len(probe.of("DDATA", mark)) > 8, what="data goes on")
            assert probe.of("NDEATH") == []

            # the host goes offline: NDEATH (same bdSeq), then no birth until it is back
            await probe.publish(state, _state(False, 3000), qos=1, retain=True)
            await eventually_async(lambda: probe.of("NDEATH"), what="NDEATH")
            (death,) = probe.of("NDEATH")
            assert death.payload.metrics[0].long_value == bdseq
            mark = len(probe.messages)
            await probe.publish(state, _state(True, 4000), qos=1, retain=True)
            await eventually_async(lambda: probe.of("NBIRTH", mark), what="birth again")
            (again,) = probe.of("NBIRTH", mark)
            assert _metric(again.payload, "bdSeq").long_value == (bdseq + 1) % 256
            stopped_at = probe.messages.index(death)
            between = probe.messages[stopped_at + 1 : probe.messages.index(again)]
            assert [m.kind for m in between if m.kind != "STATE"] == []

    run(body())


def _state(online: bool, ts: int) -> bytes:
    return json.dumps({"online": online, "timestamp": ts}).encode()


def _ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def _later(http: httpx.AsyncClient, first: str, ms: int) -> bool:
    now = (await http.get("/api/lines")).json()["lines"][0]["latest"]["timestamp"]
    return _ms(now) - _ms(first) > ms


def test_dcmd_acknowledges_an_alarm_only_as_an_allowed_user_and_audited(
    mosquitto: Mosquitto,  # noqa: F811
    server_factory: Callable[..., ServerProcess],
) -> None:
    """[tck-id-operational-behavior-data-commands-dcmd-verb]
    [tck-id-operational-behavior-data-commands-dcmd-metric-name] -metric-value: a DCMD write is
    refused unless [sparkplug.writes] allows the metric and its user's role allows the action."""
    writes = {"user": "mes", "allow": ["Alarms/*/Acknowledged"]}
    overrides = {**_sparkplug(mosquitto, writes=writes), "auth": {"anonymous_role": "engineer"}}
    server = server_factory(overrides, start=False)
    topic = "spBv1.0/plant/DCMD/scada/line2"

    def dcmd(name: str, **value: Any) -> bytes:
        cmd = Payload(timestamp=int(time.time() * 1000))
        cmd.metrics.add(name=name, **value)
        return bytes(cmd.SerializeToString())

    async def body() -> None:
        async with Probe(mosquitto) as probe, httpx.AsyncClient(base_url=server.http) as http:
            await asyncio.to_thread(server.start)
            await eventually_async(lambda: len(probe.of("DBIRTH")) >= 8, timeout=30, what="births")
            # line 2's diameter steps between hi and hihi: line2.diameter.hi is raised
            step = {"line": "2", "kind": "step", "tag": "diameter", "offset": 0.3}
            assert (await http.post("/api/simulator/faults", json=step)).status_code == 201

            async def alarm() -> dict[str, Any] | None:
                current = (await http.get("/api/alarms")).json()["alarms"]
                return next((a for a in current if a["alarm"] == "line2.diameter.hi"), None)

            raised = await eventually_async(alarm, timeout=30, what="line2.diameter.hi raised")
            assert raised["state"] == "unacked_active"

            # not an allowed metric; then the right one, but user mes does not exist yet
            await probe.publish(topic, dcmd("diameter", datatype=10, double_value=1.0))
            ack = dcmd("Alarms/diameter.hi/Acknowledged", datatype=11, boolean_value=True)
            await probe.publish(topic, ack)
            token = await asyncio.to_thread(server.token, "admin")
            auth = {"Authorization": f"Bearer {token}"}

            async def audited(result: str) -> list[dict[str, Any]]:
                page = (await http.get("/api/audit", headers=auth)).json()["records"]
                return [r for r in page if r["action"] == "sparkplug_ack" and r["result"] == result]

            async def refused() -> bool:
                return await _metric_value(http, "scada_sparkplug_writes_refused_total") == 2

            await eventually_async(refused, what="both writes refused")
            # audited; the second refusal is folded into the first's count (a flood of
            # refused DCMDs writes one record per window, as for any refusal)
            (forbidden,) = await audited("forbidden")
            assert forbidden["target"] == "line2/diameter" and forbidden["user"] == "mes"
            assert (await alarm() or {}).get("state") == "unacked_active"

            # an operator named mes: the same write acknowledges the alarm, audited as mes
            await asyncio.to_thread(
                server.cli, "users", "add", "mes", "--role", "operator", "--password-stdin",
                stdin="a long enough password 1\n",
            )  # fmt: skip
            await probe.publish(topic, ack)
            done = await eventually_async(
                lambda: _acked_by(alarm, "mes"), what="acknowledged over DCMD"
            )
            assert done["state"] == "acked_active"
            (ok,) = await eventually_async(lambda: audited("ok"), what="the audit record")
            assert ok["user"] == "mes" and ok["address"] == "sparkplug"
            assert ok["detail"] == "line2.diameter.hi"
            # and the edge node reports it: Acknowledged true in line 2's DATA
            births = [m for m in probe.of("DBIRTH") if m.device == "line2"]
            alias = _metric(births[-1].payload, "Alarms/diameter.hi/Acknowledged").alias
            await eventually_async(
                lambda: any(
                    x.alias == alias and x.boolean_value
                    for m in probe.of("DDATA")
                    if m.device == "line2"
                    for x in m.payload.metrics
                ),
                what="Acknowledged true in DDATA",
            )

    run(body())


async def _metric_value(http: httpx.AsyncClient, name: str) -> float | None:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def _acked_by(alarm: Callable[[], Any], user: str) -> dict[str, Any] | None:
    found = await alarm()
    return found if found is not None and found.get("acked_by") == user else None
