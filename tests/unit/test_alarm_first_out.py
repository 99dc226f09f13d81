"""Issue #21: first-out survives an escalation and is never taken by a raise the operator is
not shown; every event of an occurrence carries the value it was raised at."""

from __future__ import annotations

import dataclasses

from scada.alarms.engine import AlarmEngine
from scada.alarms.model import AlarmEvent
from scada.core.config import PlantConfig
from tests.unit.conftest_alarms import Rig, plant


def two_tag_plant(window: float = 5.0) -> PlantConfig:
    return plant(
        {
            "diameter": {
                "setpoint": 12.0,
                "span": [0.0, 30.0],
                "limits": {"hihi": 12.4, "hi": 12.2, "lo": 11.8, "lolo": 11.6},
            },
            "line_speed": {"setpoint": 25.0, "limits": {"lo": 5.0}},
        },
        first_out_window=window,
    )


def raised(events: list[AlarmEvent]) -> list[tuple[str, bool]]:
    return [(e.alarm, e.first_out) for e in events if e.event == "raised"]


def test_an_escalation_inside_the_window_keeps_the_first_out_mark() -> None:
    rig = Rig(two_tag_plant())
    rig.run(1.0)
    rig.set("diameter", 11.7)
    first = rig.tick()
    assert raised(first) == [("line1.diameter.lo", True)]
    rig.run(1.0)
    rig.set("diameter", 11.5)  # low -> low-low two seconds later: inside the window
    events = rig.tick()
    assert [(e.alarm, e.event) for e in events] == [
        ("line1.diameter.lolo", "raised"),
        ("line1.diameter.lo", "escalated"),
    ]
    assert events[0].first_out is True
    # The line's only active alarm is the escalation, and it is first-out.
    active = [e for e in rig.engine.current() if e.alarm_state != "normal"]
    assert [(e.alarm, e.first_out) for e in active] == [("line1.diameter.lolo", True)]


def test_an_escalation_of_an_alarm_that_was_not_first_out_is_not_first_out() -> None:
    rig = Rig(two_tag_plant())
    rig.run(1.0)
    rig.set("line_speed", 1.0)
    assert raised(rig.tick()) == [("line1.line_speed.lo", True)]
    rig.set("diameter", 12.3)
    assert raised(rig.tick()) == [("line1.diameter.hi", False)]
    rig.run(10.0)  # past the window: the window alone would mark the escalation
    rig.set("diameter", 12.5)
    assert raised(rig.tick()) == [("line1.diameter.hihi", False)]
    marks = {e.alarm: e.first_out for e in rig.engine.current() if e.alarm_state != "normal"}
    assert marks == {"line1.line_speed.lo": True, "line1.diameter.hihi": False}


def test_a_raise_while_shelved_neither_is_first_out_nor_takes_the_mark() -> None:
    rig = Rig(two_tag_plant())
    rig.run(1.0)
    rig.shelve("line1.diameter.hi", 30, "ann", "sensor swap", rig.now)
    rig.set("diameter", 12.3)
    (shelved,) = [e for e in rig.tick() if e.event == "raised"]
    assert (shelved.state, shelved.first_out) == ("shelved", False)
    rig.run(1.0)
    rig.set("line_speed", 1.0)  # the first alarm the operator sees on the line
    assert raised(rig.tick()) == [("line1.line_speed.lo", True)]


def test_a_raise_while_out_of_service_does_not_take_the_mark() -> None:
    rig_config = plant(
        {
            "diameter": {
                "setpoint": 12.0,
                "span": [0.0, 30.0],
                "limits": {"hi": 12.2},
                "suppressed": True,
            },
            "line_speed": {"setpoint": 25.0, "limits": {"lo": 5.0}},
        },
        first_out_window=5.0,
    )
    rig = Rig(rig_config)
    rig.run(1.0)
    rig.set("diameter", 12.3)
    (oos,) = [e for e in rig.tick() if e.event == "raised"]
    assert (oos.state, oos.first_out) == ("suppressed", False)
    rig.set("line_speed", 1.0)
    assert raised(rig.tick()) == [("line1.line_speed.lo", True)]


def test_every_event_of_an_occurrence_carries_the_value_at_raise() -> None:
    rig = Rig(two_tag_plant())
    rig.run(1.0)
    rig.set("diameter", 12.31)
    (up,) = rig.tick()
    assert (up.event, up.value, up.raised_value) == ("raised", 12.31, 12.31)
    assert up.to_wire()["raised_value"] == 12.31
    rig.set("diameter", 12.02)
    (down,) = rig.tick()
    assert (down.event, down.state, down.value, down.raised_value) == (
        "cleared",
        "unacked_cleared",
        12.02,
        12.31,
    )
    (ack,) = rig.ack(up.occurrence_id)
    assert (ack.event, ack.raised_value) == ("acknowledged", 12.31)
    # A new occurrence has its own value at raise; an event of no occurrence has none.
    rig.shelve("line1.diameter.hi", 30, "ann", "check", rig.now)
    assert rig.engine.state_of("line1.diameter.hi").raised_value is None

    # Restored from the journal's events (a restart or a cluster standby taking over):
    # the snapshot still says what the occurrence was raised at.
    rig2 = Rig(two_tag_plant())
    rig2.set("diameter", 12.28)
    rig2.run(0.5)
    rig2.set("diameter", 12.05)
    log = rig2.run(0.5)
    restored = AlarmEngine(rig2.config, rig2.schema, ["sim"])
    restored.restore([dataclasses.replace(e) for e in rig2.log])
    snap = restored.state_of("line1.diameter.hi")
    assert (snap.state, snap.value, snap.raised_value) == ("unacked_cleared", 12.05, 12.28)
    assert [e.event for e in log] == ["cleared"]
