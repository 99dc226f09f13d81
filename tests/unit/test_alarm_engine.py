"""The alarm engine driven by synthetic sample sequences and a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from scada.alarms.engine import AlarmEngine
from scada.alarms.model import AlarmRequestError
from scada.core.tags import Quality
from tests.unit.conftest_alarms import T0, Rig, brief, diameter_plant, plant

D = "line1.diameter"


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize(
    ("value", "condition", "severity", "limit"),
    [
        (12.3, "hi", "high", 12.2),
        (11.7, "lo", "high", 11.8),
        (11.5, "lolo", "critical", 11.6),
        (12.5, "hihi", "critical", 12.4),
    ],
)
def test_each_limit_raises_with_its_severity_and_limit(
    value: float, condition: str, severity: str, limit: float
) -> None:
    rig = Rig(diameter_plant())
    assert rig.tick() == []
    rig.set("diameter", value)
    events = rig.tick()
    raised = [e for e in events if e.event == "raised"]
    assert [e.alarm for e in raised] == [f"{D}.{condition}"]
    ev = raised[0]
    assert (ev.condition, ev.severity, ev.limit, ev.value) == (condition, severity, limit, value)
    assert (ev.state, ev.alarm_state, ev.production_line_id, ev.tag) == (
        "unacked_active",
        "unacked_active",
        "1",
        "diameter",
    )
    assert ev.raised_at == rig.now and ev.at == rig.now and ev.occurrence_id == 1


def test_value_exactly_on_the_limit_is_not_beyond_it() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.2)
    assert rig.run(1.0) == []


def test_limit_options_override_and_default() -> None:
    config = diameter_plant(hi={"value": 12.2, "severity": "low", "message": "too fat"})
    rig = Rig(config)
    rig.set("diameter", 12.3)
    (ev,) = rig.tick()
    assert (ev.severity, ev.message) == ("low", "too fat")


# ------------------------------------------------------------------ deadband


def test_hovering_inside_the_deadband_does_not_chatter() -> None:
    rig = Rig(diameter_plant(deadband=0.05))
    for value in [12.21, 12.19, 12.21, 12.16, 12.22, 12.18, 12.21] * 5:
        rig.set("diameter", value)
        rig.tick()
    assert brief(rig.log) == [(f"{D}.hi", "raised", "unacked_active")]
    rig.set("diameter", 12.14)  # back inside the limit by more than the deadband
    assert brief(rig.tick()) == [(f"{D}.hi", "cleared", "unacked_cleared")]


def test_without_deadband_the_same_hovering_chatters() -> None:
    # The control for the test above: proves the sequence does cross the limit.
    rig = Rig(diameter_plant(deadband=0.0))
    for value in [12.21, 12.19] * 3:
        rig.set("diameter", value)
        rig.tick()
    assert [e.event for e in rig.log] == ["raised", "cleared"] * 3


def test_deadband_percent_of_span() -> None:
    # 1 % of a 0..30 span = 0.3: 12.0 is inside hi (12.2) by 0.2 only.
    rig = Rig(diameter_plant(deadband_percent=1.0))
    rig.set("diameter", 12.3)
    rig.tick()
    rig.set("diameter", 12.0)
    assert rig.run(1.0) == []
    rig.set("diameter", 11.89)
    assert [e.event for e in rig.tick()] == ["cleared"]


def test_per_limit_deadband_beats_the_tag_deadband() -> None:
    rig = Rig(diameter_plant(deadband=1.0, hi={"value": 12.2, "deadband": 0.0}))
    rig.set("diameter", 12.3)
    rig.tick()
    rig.set("diameter", 12.1)
    assert [e.event for e in rig.tick()] == ["cleared"]


def test_low_limit_deadband_is_mirrored() -> None:
    rig = Rig(diameter_plant(deadband=0.05))
    rig.set("diameter", 11.7)
    rig.tick()
    rig.set("diameter", 11.83)  # above lo, but not by the deadband
    assert rig.tick() == []
    rig.set("diameter", 11.86)
    assert brief(rig.tick()) == [(f"{D}.lo", "cleared", "unacked_cleared")]


# ------------------------------------------------------------------ delays


def test_on_delay_ignores_short_excursions_and_raises_after_the_delay() -> None:
    rig = Rig(diameter_plant(on_delay=1.0))
    rig.set("diameter", 12.3)
    assert rig.run(0.9) == []
    rig.set("diameter", 12.0)
    assert rig.run(0.5) == []
    rig.set("diameter", 12.3)
    first_seen = rig.now + 0.1
    assert rig.run(1.0) == []  # the delay restarted at first_seen
    (ev,) = rig.tick()
    assert ev.event == "raised"
    assert ev.at == pytest.approx(first_seen + 1.0)


def test_off_delay_holds_the_alarm_until_normal_long_enough() -> None:
    rig = Rig(diameter_plant(off_delay=2.0))
    rig.set("diameter", 12.3)
    rig.tick()
    rig.set("diameter", 12.0)
    assert rig.run(1.0) == []
    rig.set("diameter", 12.3)  # back in alarm: off-delay restarts, no new occurrence
    assert rig.run(0.5) == []
    rig.set("diameter", 12.0)
    assert rig.run(2.0) == []  # normal since the first of these ticks, for 1.9 s
    assert [e.event for e in rig.tick()] == ["cleared"]


# ------------------------------------------------------------------ rate of change


def rate_plant() -> Rig:
    tags = {"temp": {"setpoint": 100.0, "rate": {"max_per_second": 1.0, "window": 2.0}}}
    return Rig(plant(tags))


def test_rate_of_change_raises_and_clears() -> None:
    rig = rate_plant()
    rig.run(3.0)  # history fills at a steady value
    v = 100.0
    for _ in range(30):  # +0.2 per 0.1 s = 2 units/s
        v += 0.2
        rig.set("temp", v)
        rig.tick()
    raised = [e for e in rig.log if e.event == "raised"]
    assert [e.alarm for e in raised] == ["line1.temp.rate"]
    assert raised[0].condition == "rate" and raised[0].limit == 1.0
    assert raised[0].value is not None and raised[0].value > 1.0
    events = rig.run(2.5)  # steady again: rate over the window falls to 0
    assert [e.event for e in events] == ["cleared"]


def test_slow_ramp_below_the_rate_limit_stays_quiet() -> None:
    rig = rate_plant()
    v = 100.0
    for _ in range(100):  # 0.5 units/s
        v += 0.05
        rig.set("temp", v)
        rig.tick()
    assert rig.log == []


def test_rate_needs_a_full_window_of_history() -> None:
    rig = rate_plant()
    rig.tick()  # the first sample, at 100
    rig.set("temp", 150.0)  # a huge step, but less than a window of history: no judgement
    assert rig.run(1.9) == []
    assert [e.event for e in rig.tick()] == ["raised"]


# ------------------------------------------------------------------ quality and comms


def test_quality_alarm_after_its_delay() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", np.nan, quality=Quality.BAD)
    assert rig.run(2.0) == []  # bad since the first of these ticks, for 1.9 s
    (ev,) = rig.tick()
    assert (ev.alarm, ev.condition, ev.severity, ev.value) == (
        f"{D}.quality",
        "quality",
        "high",
        None,
    )
    rig.set("diameter", 12.0, quality=Quality.GOOD)
    assert brief(rig.tick()) == [(f"{D}.quality", "cleared", "unacked_cleared")]


def test_stale_counts_as_bad_and_uncertain_does_not() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.0, quality=Quality.UNCERTAIN)
    assert rig.run(3.0) == []
    rig.set("diameter", 12.0, quality=Quality.STALE)
    assert [e.alarm for e in rig.run(3.0)] == [f"{D}.quality"]


def test_bad_values_neither_raise_nor_clear_limit_alarms() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.3)
    rig.tick()
    assert rig.state(f"{D}.hi") == "unacked_active"
    rig.set("diameter", 0.0, quality=Quality.BAD)  # garbage far below every limit
    events = rig.run(1.0)
    assert [e.alarm for e in events] == []
    assert rig.state(f"{D}.hi") == "unacked_active"
    rig.set("diameter", np.nan, quality=Quality.GOOD)  # NaN is no value either
    assert rig.run(0.5) == []
    rig.set("diameter", 99.0, quality=Quality.STALE)
    assert [e.alarm for e in rig.run(0.5)] == []
    rig.set("diameter", 12.0, quality=Quality.GOOD)
    assert [(e.alarm, e.event) for e in rig.tick()] == [(f"{D}.hi", "cleared")]


def test_comms_alarm_per_device() -> None:
    rig = Rig(diameter_plant(), devices=("plc1", "plc2"))
    rig.devices["plc2"] = False
    (ev,) = rig.tick()
    assert (ev.alarm, ev.condition, ev.production_line_id, ev.tag) == (
        "device.plc2.comms",
        "comms",
        None,
        None,
    )
    del rig.devices["plc2"]  # unknown this tick: no change either way
    assert rig.tick() == []
    rig.devices["plc2"] = True
    assert brief(rig.tick()) == [("device.plc2.comms", "cleared", "unacked_cleared")]


# ------------------------------------------------------------------ states and acks


def test_return_to_normal_unacknowledged_stays_visible_until_acked() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.3)
    (raised,) = rig.tick()
    rig.set("diameter", 12.0)
    (cleared,) = rig.tick()
    assert cleared.state == "unacked_cleared" and cleared.cleared_at == rig.now
    assert cleared.occurrence_id == raised.occurrence_id
    assert [e.alarm for e in rig.engine.current()] == [f"{D}.hi"]
    (acked,) = rig.ack(raised.occurrence_id, "checked gauge", user="bob")
    assert (acked.event, acked.state, acked.acked_by, acked.comment) == (
        "acknowledged",
        "normal",
        "bob",
        "checked gauge",
    )
    assert rig.engine.current() == []
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(raised.occurrence_id)
    assert err.value.code == "already_acknowledged"


def test_ack_while_active_then_clear_goes_normal() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.3)
    (raised,) = rig.tick()
    (acked,) = rig.ack(raised.occurrence_id)
    assert acked.state == "acked_active"
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(raised.occurrence_id)
    assert err.value.code == "already_acknowledged"
    rig.set("diameter", 12.0)
    (cleared,) = rig.tick()
    assert (cleared.event, cleared.state, cleared.acked_by) == ("cleared", "normal", "ann")
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(raised.occurrence_id)
    assert err.value.code == "already_acknowledged"


def test_each_activation_is_a_new_occurrence() -> None:
    rig = Rig(diameter_plant())
    ids = []
    for _ in range(3):
        rig.set("diameter", 12.3)
        ids.append(rig.tick()[0].occurrence_id)
        rig.set("diameter", 12.0)
        rig.tick()
    assert ids == [1, 2, 3]
    # Occurrences 1 and 2 were replaced unacknowledged: only 3 can be acked.
    assert [e.occurrence_id for e in rig.engine.current()] == [3]
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(1)
    assert err.value.code == "unknown_alarm"


def test_unknown_occurrence_and_required_comment() -> None:
    rig = Rig(diameter_plant())
    rig.engine.config = rig.config.model_copy(
        update={"alarms": rig.config.alarms.model_copy(update={"require_comment": ["critical"]})}
    )
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(999)
    assert err.value.code == "unknown_alarm"
    rig.set("diameter", 12.5)
    events = rig.tick()
    hihi = next(e for e in events if e.alarm == f"{D}.hihi")
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(hihi.occurrence_id, comment="   ")
    assert err.value.code == "comment_required"
    assert rig.state(f"{D}.hihi") == "unacked_active"
    assert [e.event for e in rig.ack(hihi.occurrence_id, comment="ok")] == ["acknowledged"]


# ------------------------------------------------------------------ supersession


def test_hihi_supersedes_hi_and_hands_back_when_it_clears() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.3)
    (hi1,) = rig.tick()
    rig.set("diameter", 12.5)
    events = rig.tick()
    assert brief(events) == [
        (f"{D}.hihi", "raised", "unacked_active"),
        (f"{D}.hi", "escalated", "normal"),
    ]
    hihi, escalated = events
    assert escalated.occurrence_id == hi1.occurrence_id
    assert escalated.note is not None and f"{D}.hihi" in escalated.note
    assert [e.alarm for e in rig.engine.current()] == [f"{D}.hihi"]
    with pytest.raises(AlarmRequestError) as err:
        rig.ack(hi1.occurrence_id)
    assert err.value.code == "unknown_alarm"
    # hi's history is still there in the event log.
    assert [e.event for e in rig.log if e.alarm == f"{D}.hi"] == ["raised", "escalated"]
    rig.set("diameter", 12.3)  # below hihi, still above hi
    events = rig.tick()
    assert brief(events) == [
        (f"{D}.hihi", "cleared", "unacked_cleared"),
        (f"{D}.hi", "raised", "unacked_active"),
    ]
    assert events[1].occurrence_id not in (hi1.occurrence_id, hihi.occurrence_id)


def test_jump_straight_to_hihi_raises_only_hihi() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.5)
    assert brief(rig.tick()) == [(f"{D}.hihi", "raised", "unacked_active")]
    rig.set("diameter", 12.0)
    assert brief(rig.tick()) == [(f"{D}.hihi", "cleared", "unacked_cleared")]


def test_lolo_supersedes_lo() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 11.7)
    rig.tick()
    rig.set("diameter", 11.5)
    assert [(e.alarm, e.event) for e in rig.tick()] == [
        (f"{D}.lolo", "raised"),
        (f"{D}.lo", "escalated"),
    ]


# ------------------------------------------------------------------ shelving and suppression


def test_shelving_hides_but_still_evaluates_and_expires_by_itself() -> None:
    rig = Rig(diameter_plant())
    (shelved,) = rig.shelve(f"{D}.hi", 1, "ann", "gauge being cleaned", rig.now)
    assert (shelved.event, shelved.state, shelved.shelved_by) == ("shelved", "shelved", "ann")
    assert shelved.shelved_until == pytest.approx(rig.now + 60)
    assert shelved.occurrence_id == 0  # shelved while normal: no occurrence
    rig.set("diameter", 12.3)
    (raised,) = rig.tick()
    assert (raised.event, raised.state, raised.alarm_state) == (
        "raised",
        "shelved",
        "unacked_active",
    )
    assert [e.state for e in rig.engine.current()] == ["shelved"]
    rig.run(59.0)
    (expired,) = [e for e in rig.run(1.0) if e.event == "unshelved"]
    assert (expired.state, expired.user, expired.shelved_until) == ("unacked_active", None, None)
    assert rig.tick() == []


def test_unshelve_by_operator() -> None:
    rig = Rig(diameter_plant())
    rig.shelve(f"{D}.hi", 10, "ann", "why", rig.now)
    (ev,) = rig.unshelve(f"{D}.hi", "bob", "done", rig.now)
    assert (ev.event, ev.state, ev.user, ev.note) == ("unshelved", "normal", "bob", "done")
    assert rig.engine.current() == []


@pytest.mark.parametrize(
    ("alarm", "minutes", "comment", "code"),
    [
        ("line1.nothing.hi", 10, "x", "unknown_alarm"),
        (f"{D}.hi", 0, "x", "invalid"),
        (f"{D}.hi", -5, "x", "invalid"),
        (f"{D}.hi", 481, "x", "invalid"),
        (f"{D}.hi", float("nan"), "x", "invalid"),
        (f"{D}.hi", 10, "  ", "comment_required"),
    ],
)
def test_shelve_refusals(alarm: str, minutes: float, comment: str, code: str) -> None:
    rig = Rig(diameter_plant())
    with pytest.raises(AlarmRequestError) as err:
        rig.shelve(alarm, minutes, "ann", comment, rig.now)
    assert err.value.code == code
    assert rig.engine.current() == []


def test_unshelve_refusals() -> None:
    rig = Rig(diameter_plant())
    for alarm, code in [(f"{D}.hi", "invalid"), ("nope", "unknown_alarm")]:
        with pytest.raises(AlarmRequestError) as err:
            rig.unshelve(alarm, "ann", "", rig.now)
        assert err.value.code == code


def suppressed_rig() -> Rig:
    spec = {"hi": 12.2}
    return Rig(plant({"diameter": {"setpoint": 12.0, "limits": spec, "suppressed": True}}))


def test_out_of_service_tag_is_evaluated_and_journaled_as_suppressed() -> None:
    rig = suppressed_rig()
    rig.set("diameter", 12.3)
    (ev,) = rig.tick()
    assert (ev.event, ev.state, ev.alarm_state) == ("raised", "suppressed", "unacked_active")
    assert [e.state for e in rig.engine.current()] == ["suppressed"]
    rig.set("diameter", 12.0)
    rig.tick()
    rig.ack(ev.occurrence_id)
    assert rig.engine.current() == []
    with pytest.raises(AlarmRequestError) as err:
        rig.shelve(f"{D}.hi", 10, "ann", "x", rig.now)
    assert err.value.code == "invalid"


# ------------------------------------------------------------------ restore


def test_restore_rebuilds_state_and_continues_occurrence_ids() -> None:
    rig = Rig(diameter_plant(), devices=("sim",))
    rig.set("diameter", 12.3)
    rig.tick()
    rig.set("diameter", 12.5)
    rig.tick()
    hihi = rig.engine.state_of(f"{D}.hihi")
    rig.ack(hihi.occurrence_id)
    rig.devices["sim"] = False
    rig.tick()
    rig.log += rig.shelve("device.sim.comms", 30, "ann", "maintenance", rig.now)

    fresh = AlarmEngine(rig.config, rig.schema, ["sim"])
    fresh.restore(rig.log)
    assert fresh.current() == rig.engine.current()
    assert fresh.next_occurrence_id == rig.engine.next_occurrence_id
    with pytest.raises(AlarmRequestError) as err:
        fresh.acknowledge(hihi.occurrence_id, "x", "x", rig.now)
    assert err.value.code == "already_acknowledged"
    # State survives in behaviour too: the value still beyond hihi raises nothing new,
    # and a clear clears the restored occurrence.
    assert fresh.evaluate(rig.now + 0.1, rig.values, rig.quality, rig.devices) == []
    rig.set("diameter", 12.0)
    events = fresh.evaluate(rig.now + 0.2, rig.values, rig.quality, rig.devices)
    assert brief(events) == [(f"{D}.hihi", "cleared", "normal")]


def test_restore_honours_a_later_occurrence_counter() -> None:
    rig = Rig(diameter_plant())
    fresh = AlarmEngine(rig.config, rig.schema, ["sim"])
    fresh.restore([], next_occurrence_id=42)
    rig.set("diameter", 12.3)
    (ev,) = fresh.evaluate(T0 + 1, rig.values, rig.quality, rig.devices)
    assert ev.occurrence_id == 42


def test_restore_announces_a_changed_out_of_service_setting() -> None:
    live = Rig(diameter_plant(hihi=None, lo=None, lolo=None))
    live.set("diameter", 12.3)
    live.tick()
    later = suppressed_rig()
    later.set("diameter", 12.3)
    later.engine.restore(live.log)
    (ev,) = later.tick()
    assert (ev.alarm, ev.event, ev.state) == (f"{D}.hi", "suppressed", "suppressed")


# ------------------------------------------------------------------ wire form


def test_to_wire_uses_iso_milliseconds_and_keeps_nulls() -> None:
    rig = Rig(diameter_plant())
    rig.set("diameter", 12.3)
    (ev,) = rig.tick()
    wire = ev.to_wire()
    assert wire["raised_at"] == "2026-11-22T10:00:00.100Z"
    assert wire["cleared_at"] is None and wire["acked_by"] is None
    assert wire["id"] == ev.occurrence_id and wire["event"] == "raised"
    assert wire["event_id"] is None  # set by the journal
    expected = {"id", "alarm", "production_line_id", "tag", "condition", "severity", "message",
                "value", "limit", "state", "raised_at", "cleared_at", "acked_at", "acked_by",
                "comment", "event_id", "event"}  # fmt: skip
    assert expected <= set(wire)
