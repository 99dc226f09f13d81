"""Sparkplug settings: every problem named by its key path (check-config), writes decided
before anything is applied."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.registry import device_problems
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import Write
from scada.core.config import DeviceConfig, load_config
from scada.sparkplug.edgeconfig import WriteSettings, sparkplug_problems
from scada.sparkplug.writes import EdgeWrites


def _plant(**extra: Any) -> Any:
    return load_config(None).model_copy(update=extra)


def test_broker_settings_refuse_what_would_leak_or_cannot_work() -> None:
    with pytest.raises(ValueError, match="mqtts://"):
        BrokerSettings(url="mqtt://broker.plant:1883", username="u", password="p")
    BrokerSettings(url="mqtt://127.0.0.1:1883", username="u", password="p")  # this machine
    BrokerSettings(url="mqtts://broker.plant", username="u", password="p")
    for bad, why in [
        ({"url": "http://x"}, "mqtt://host"),
        ({"password": "p"}, "needs a username"),
        ({"username": "u", "password": "p", "password_env": "X"}, "not both"),
        ({"client_cert": "/c"}, "go together"),
        ({"ca_file": "/c"}, "need an mqtts"),
    ]:
        with pytest.raises(ValueError, match=why):
            BrokerSettings.model_validate(bad)
    assert BrokerSettings(url="mqtts://b.plant").port == 8883


def test_edge_section_problems_have_key_paths() -> None:
    plant = _plant(
        sparkplug={
            "enabled": True,
            "edge_node": "a/b",
            "lines": ["1", "9"],
            "deadband": {"nope": 1.0, "line2.diameter": 0.01},
            "publish_interval_ms": 50,
            "broker": {"username": "u", "password_env": "SCADA_TEST_UNSET_VARIABLE"},
            "surprise": 1,
        }
    )
    problems = dict(sparkplug_problems(plant))
    assert "sparkplug.edge_node" in problems and "sparkplug.surprise" in problems
    plant = _plant(
        sparkplug={
            "enabled": True,
            "lines": ["1", "9"],
            "deadband": {"nope": 1.0, "line2.diameter": 0.01},
            "publish_interval_ms": 50,
            "broker": {"username": "u", "password_env": "SCADA_TEST_UNSET_VARIABLE"},
        }
    )
    problems = dict(sparkplug_problems(plant))
    assert set(problems) == {
        "sparkplug.lines[1]",
        "sparkplug.deadband.nope",
        "sparkplug.publish_interval_ms",
        "sparkplug.broker.password_env",
    }
    assert sparkplug_problems(plant, environment=False)[-1][0] != "sparkplug.broker.password_env"
    assert sparkplug_problems(_plant()) == []  # off by default, nothing to say


def test_driver_map_problems_have_key_paths() -> None:
    device = DeviceConfig(
        name="mqtt",
        driver="sparkplug",
        lines=["1", "2"],
        settings={
            "map": {"nope": "x"},
            "lines": {"2": {"edge_node": "e", "map": {"also_nope": "y"}}, "7": {}},
        },
    )
    problems = dict(device_problems(_plant(devices=[device])))
    assert set(problems) == {
        "devices[0].settings.map.nope",
        "devices[0].settings.lines.7",
        "devices[0].settings.edge_node",  # line 1 has no edge node
        "devices[0].settings.lines.2.map.also_nope",
    }
    bad_id = DeviceConfig(name="m", driver="sparkplug", settings={"group": "a+b"})
    assert "devices[0].settings.group" in dict(device_problems(_plant(devices=[bad_id])))


class Gate:
    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.records: list[tuple[str, str, str]] = []

    async def authorize(self, user: str, action: str, target: str) -> str | None:
        self.records.append((target, "requested" if self.refuse is None else self.refuse, ""))
        return self.refuse

    async def outcome(self, user: str, action: str, target: str, result: str, detail: str) -> None:
        self.records.append((target, result, detail))


def test_writes_are_decided_before_anything_is_applied() -> None:
    acked: list[tuple[int, str]] = []

    async def ack(occurrence: int, user: str, comment: str) -> None:
        acked.append((occurrence, user))

    current = [{"alarm": "line2.diameter.hi", "id": 7}]
    allow = WriteSettings(user="mes", allow=["Alarms/*/Acknowledged"])
    gate = Gate()
    writes = EdgeWrites(allow, gate, lambda: current, ack)
    ack_write = Write("line2", "Alarms/diameter.hi/Acknowledged", True)
    asyncio.run(
        writes.apply(
            [
                Write("line2", "diameter", 1.0),  # not allowed
                Write("line2", "Alarms/diameter.hi/Acknowledged", False),  # not an ack
                Write(None, "Alarms/diameter.hi/Acknowledged", True),  # a node metric
                Write("line3", "Alarms/diameter.hi/Acknowledged", True),  # not raised there
                ack_write,
            ]
        )
    )
    assert acked == [(7, "mes")]
    assert writes.applied == 1 and writes.refused == 4
    assert [r[1] for r in gate.records] == [
        "forbidden",
        "forbidden",
        "forbidden",
        "requested",
        "failed",
        "requested",
        "ok",
    ]
    # no [sparkplug.writes], or a role that does not allow it: nothing applied
    off = EdgeWrites(None, Gate(), lambda: current, ack)
    asyncio.run(off.apply([ack_write]))
    refusing = EdgeWrites(allow, Gate("forbidden"), lambda: current, ack)
    asyncio.run(refusing.apply([ack_write]))
    assert acked == [(7, "mes")] and off.refused == refusing.refused == 1
