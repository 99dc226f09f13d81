"""Issue #14: designed suppression, first-out, frozen value, state and deviation alarms."""

from __future__ import annotations

from typing import Any

from scada.alarms.engine import AlarmEngine
from scada.core.tags import Quality
from tests.unit.conftest_alarms import Rig, brief, plant

STATES = ["stopped", "starting", "running", "fault"]
STOPPED, RUNNING, FAULT = 0.0, 2.0, 3.0


def line_plant(lines: int = 1, **alarms: Any) -> Any:
    tags: dict[str, dict[str, Any]] = {
        "diameter": {
            "setpoint": 12.0,
            "span": [0.0, 30.0],
            "limits": {"hi": 12.2, "lo": 11.8},
            "quality_delay": 1.0,
            "frozen": {"min_change": 0.001, "seconds": 5.0},
            "deviation": {"absolute": 0.1, "on_delay": 1.0},
        },
        "line_speed": {
            "setpoint": 25.0,
            "limits": {"lo": 5.0},
            "quality_delay": 1.0,
            "suppress_when": ["stopped"],
        },
        "state": {
            "kind": "state",
            "states": STATES,
            "alarm_states": {"fault": "critical"},
            "quality_delay": 1.0,
        },
    }
    return plant(tags, lines=lines, **alarms)


def running_rig(lines: int = 1, **alarms: Any) -> Rig:
    rig = Rig(line_plant(lines, **alarms))
    for line in range(1, lines + 1):
        rig.set("state", RUNNING, line=str(line))
    return rig


def wiggle(rig: Rig, seconds: float, line: str = "1") -> None:
    """Run with a live (moving) diameter so the frozen check stays quiet."""
    for i in range(round(seconds / 0.1)):
        rig.set("diameter", 12.0 + (0.01 if i % 2 else 0.0), line=line)
        rig.tick()


def test_a_dead_device_raises_one_alarm_and_journals_the_quality_alarms_suppressed() -> None:
    rig = running_rig(lines=2)
    wiggle(rig, 1.0)
    rig.devices["sim"] = False
    rig.quality[:] = Quality.BAD
    events = rig.run(2.0)
    raised = [e for e in events if e.event == "raised"]
    assert [e.alarm for e in raised] == ["device.sim.comms"]
    assert raised[0].first_out is True and raised[0].state == "unacked_active"
    silent = [e for e in events if e.event == "suppressed"]
    # Every tag of both lines has a quality alarm: 3 tags x 2 lines.
    assert len(silent) == 6
    assert {(e.state, e.alarm_state, e.suppressed_by, e.occurrence_id) for e in silent} == {
        ("suppressed", "normal", "device.sim.comms", 0)
    }
    listed = {e.alarm: e.state for e in rig.engine.current()}
    assert listed["device.sim.comms"] == "unacked_active"
    assert sorted(s for s in listed.values()) == ["suppressed"] * 6 + ["unacked_active"]

    # Comms return with one tag still bad: that tag's quality alarm alone is raised.
    rig.devices["sim"] = True
    rig.quality[:] = Quality.GOOD
    rig.quality[rig.schema.index("2", "diameter")] = Quality.BAD
    events = rig.tick()
    assert [(e.alarm, e.event, e.state) for e in events if e.event == "raised"] == [
        ("line2.diameter.quality", "raised", "unacked_active")
    ]
    assert sorted((e.alarm, e.event) for e in events if e.event != "raised") == sorted(
        [("device.sim.comms", "cleared")]
        + [(f"line{n}.{t}.quality", "unsuppressed") for n in (1, 2) for t in
           ("diameter", "line_speed", "state") if (n, t) != (2, "diameter")]
    )  # fmt: skip
    assert {e.alarm for e in rig.engine.current()} == {
        "device.sim.comms",  # cleared, waiting for its acknowledgement
        "line2.diameter.quality",
    }


def test_an_annunciated_alarm_is_suppressed_and_released_with_its_state_kept() -> None:
    rig = running_rig()
    rig.set("diameter", 12.0, quality=Quality.BAD)
    wiggle_free = rig.run(1.5)
    (raised,) = [e for e in wiggle_free if e.event == "raised"]
    assert raised.alarm == "line1.diameter.quality"
    rig.devices["sim"] = False
    (sup,) = [e for e in rig.tick() if e.event == "suppressed"]
    assert (sup.occurrence_id, sup.state, sup.alarm_state) == (
        raised.occurrence_id,
        "suppressed",
        "unacked_active",
    )
    rig.devices["sim"] = True
    (unsup,) = [e for e in rig.tick() if e.event == "unsuppressed"]
    assert (unsup.occurrence_id, unsup.state, unsup.suppressed_by) == (
        raised.occurrence_id,
        "unacked_active",
        None,
    )


def test_a_stopped_line_raises_no_low_speed_alarm_when_configured() -> None:
    rig = running_rig()
    rig.set("state", STOPPED)
    rig.set("line_speed", 0.0)
    events = rig.run(2.0)
    assert brief(events) == [("line1.line_speed.lo", "suppressed", "suppressed")]
    assert events[0].suppressed_by == "line1.state.stopped"
    # Restarting with the speed still low: the alarm is raised once the line runs.
    rig.set("state", RUNNING)
    (ev,) = rig.tick()
    assert (ev.alarm, ev.event, ev.state) == ("line1.line_speed.lo", "raised", "unacked_active")
    assert ev.note == "line1.state.stopped ended; the condition is still present"
    rig.set("line_speed", 25.0)
    assert [e.event for e in rig.tick()] == ["cleared"]
    # Stopped, and the speed comes back before the line runs: nothing is left listed.
    rig.ack(ev.occurrence_id)
    rig.set("state", STOPPED)
    rig.set("line_speed", 0.0)
    assert [e.event for e in rig.tick()] == ["suppressed"]
    rig.set("line_speed", 25.0)
    assert [e.event for e in rig.tick()] == ["unsuppressed"]
    assert rig.engine.current() == []


def test_a_line_entering_fault_raises_the_state_alarm() -> None:
    rig = running_rig()
    rig.set("state", FAULT)
    (ev,) = rig.tick()
    assert (ev.alarm, ev.condition, ev.severity, ev.state) == (
        "line1.state.fault",
        "state",
        "critical",
        "unacked_active",
    )
    assert ev.to_wire()["priority"] == 1
    rig.set("state", RUNNING)
    assert brief(rig.tick()) == [("line1.state.fault", "cleared", "unacked_cleared")]


def test_a_frozen_value_raises_only_while_the_line_runs() -> None:
    rig = running_rig()
    rig.set("diameter", 12.05)
    assert rig.run(4.9) == []
    (ev,) = rig.run(0.2)
    assert (ev.alarm, ev.event, ev.condition) == ("line1.diameter.frozen", "raised", "frozen")
    rig.set("diameter", 12.06)  # moves by more than min_change: clears at once
    assert brief(rig.tick()) == [("line1.diameter.frozen", "cleared", "unacked_cleared")]
    rig.set("state", STOPPED)
    assert rig.run(10.0) == []  # a stopped line's value may rest


def test_deviation_from_setpoint_with_delay() -> None:
    rig = running_rig()
    rig.set("diameter", 12.15)  # 0.15 off, within hi 12.2
    assert rig.run(0.9) == []
    (ev,) = rig.run(0.2)
    assert (ev.alarm, ev.limit, ev.value) == ("line1.diameter.deviation", 0.1, 12.15)
    rig.set("diameter", 12.05)
    assert [e.event for e in rig.tick()] == ["cleared"]


def test_first_out_marks_the_alarm_that_opens_a_burst_on_its_line() -> None:
    rig = running_rig(lines=2, first_out_window=5.0)
    rig.set("state", FAULT)
    (first,) = rig.tick()
    rig.set("line_speed", 1.0)
    (second,) = rig.run(0.2)
    rig.set("state", FAULT, line="2")  # another line: its own burst
    (other,) = rig.tick()
    assert [(e.alarm, e.first_out) for e in (first, second, other)] == [
        ("line1.state.fault", True),
        ("line1.line_speed.lo", False),
        ("line2.state.fault", True),
    ]
    assert first.to_wire()["first_out"] is True
    rig.set("state", RUNNING)
    rig.set("line_speed", 25.0)
    wiggle(rig, 6.0)
    rig.set("line_speed", 1.0)  # alone after a quiet window: first-out again
    (again,) = [e for e in rig.tick() if e.event == "raised"]
    assert again.first_out is True


def test_restore_keeps_designed_suppression() -> None:
    rig = running_rig()
    rig.devices["sim"] = False
    rig.quality[:] = Quality.BAD
    rig.run(1.5)
    fresh = AlarmEngine(rig.config, rig.schema, ["sim"])
    fresh.restore(rig.log)
    assert fresh.current() == rig.engine.current()
    # Still down after the restart: nothing new; back up: the silent ones go away.
    assert fresh.evaluate(rig.now + 0.1, rig.values, rig.quality, rig.devices) == []
    rig.quality[:] = Quality.GOOD
    events = fresh.evaluate(rig.now + 0.2, rig.values, rig.quality, {"sim": True})
    assert sorted(e.event for e in events) == ["cleared"] + ["unsuppressed"] * 3


def test_a_line_quality_alarm_stands_for_its_tags_when_configured() -> None:
    config = line_plant(lines=2)
    raw = config.model_dump()
    raw["lines"][0]["quality_alarm"] = True  # line 1 only
    rig = Rig(type(config).model_validate(raw))
    rig.set("state", RUNNING)
    rig.set("state", RUNNING, line="2")
    for tag in ("diameter", "line_speed", "state"):  # line 1's source goes silent
        rig.set(tag, 0.0, quality=Quality.BAD)
    rig.set("diameter", 12.0, line="2", quality=Quality.BAD)  # one bad gauge on line 2
    events = rig.run(1.5)
    raised = [e.alarm for e in events if e.event == "raised"]
    assert raised == ["line1.quality", "line2.diameter.quality"]
    silent = {e.alarm: e.suppressed_by for e in events if e.event == "suppressed"}
    assert silent == {f"line1.{t}.quality": "line1.quality" for t in ("diameter", "line_speed",
                                                                       "state")}  # fmt: skip
    # One tag of line 1 comes back: the line alarm clears, the still-bad tags raise alone.
    rig.set("state", RUNNING, quality=Quality.GOOD)
    events = rig.tick()
    assert [(e.alarm, e.event) for e in events if e.event in ("raised", "cleared")] == [
        ("line1.quality", "cleared"),
        ("line1.diameter.quality", "raised"),
        ("line1.line_speed.quality", "raised"),
    ]
