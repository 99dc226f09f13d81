"""Stateful property test: random samples, operator actions, restarts and time steps.

Invariants checked after every step: states stay legal and every transition is one the
ISA-18.2 model allows (so an ack only ever applies to an unacked occurrence), journal ids
strictly increase, and an engine rebuilt from the journal has exactly the live current state.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.model import ISA_STATES, WIRE_STATES, AlarmEvent, AlarmRequestError
from scada.core.tags import Quality
from tests.unit.conftest_alarms import Rig, plant

LIMITS = {"hihi": 12.4, "hi": 12.2, "lo": 11.8, "lolo": 11.6, "deadband": 0.05,
          "on_delay": 0.2, "off_delay": 0.1}  # fmt: skip
CONFIG = plant(
    {
        "d": {
            "setpoint": 12.0,
            "limits": LIMITS,
            "quality_delay": 0.5,
            "rate": {"max_per_second": 2.0, "window": 0.5},
        },
        "s": {"setpoint": 12.0, "limits": {"hi": 12.2}, "suppressed": True},
    },
    require_comment=["critical"],
    max_shelve_minutes=2,
)
NAMES = AlarmEngine(CONFIG, Rig(CONFIG).schema, ["sim"]).names()
VALUES = [11.5, 11.65, 11.75, 11.78, 11.83, 12.0, 12.17, 12.21, 12.3, 12.45, 13.0, math.nan]
QUALITIES = [Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.STALE, Quality.BAD]

# (alarm_state before, event) -> alarm_state after. Anything else is illegal.
TRANSITIONS = {
    ("normal", "raised"): "unacked_active",
    ("unacked_cleared", "raised"): "unacked_active",
    ("unacked_active", "acknowledged"): "acked_active",
    ("unacked_cleared", "acknowledged"): "normal",
    ("unacked_active", "cleared"): "unacked_cleared",
    ("acked_active", "cleared"): "normal",
    ("unacked_active", "escalated"): "normal",
    ("acked_active", "escalated"): "normal",
    ("unacked_cleared", "escalated"): "normal",
}
UNCHANGED = ("shelved", "unshelved", "suppressed", "unsuppressed")


class AlarmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "journal.sqlite"
        self.journal = Journal(self.path, retention_days=90, retention_events=1000)
        self.rig = Rig(CONFIG)
        self.last_id = 0
        self.last_occurrence = 0
        self.isa: dict[str, str] = dict.fromkeys(NAMES, "normal")
        # When the engine first saw tag d's current sample (delays count from there).
        self.d_since: float | None = None

    def teardown(self) -> None:
        self.journal.close()
        self.tmp.cleanup()

    # ------------------------------------------------------------------ bookkeeping

    def commit(self, events: list[AlarmEvent]) -> None:
        self.journal.append(events)
        for ev in events:
            assert ev.event_id == self.last_id + 1, "journal ids strictly increase, no gaps"
            self.last_id = ev.event_id
            before = self.isa[ev.alarm]
            if ev.event == "suppressed" and ev.suppressed_by and ev.alarm_state == "normal":
                # Designed suppression of a condition: listed, no occurrence (an
                # unacked_cleared one ends, as a new raise would replace it).
                assert before in ("normal", "unacked_cleared") and ev.occurrence_id == 0, ev
            elif ev.event in UNCHANGED:
                assert ev.alarm_state == before, ev
            else:
                assert TRANSITIONS.get((before, ev.event)) == ev.alarm_state, (before, ev)
            if ev.event == "raised":
                assert ev.occurrence_id > self.last_occurrence
                self.last_occurrence = ev.occurrence_id
            self.isa[ev.alarm] = ev.alarm_state

    # ------------------------------------------------------------------ rules

    @rule(tag=st.sampled_from(["d", "s"]), value=st.sampled_from(VALUES),
          quality=st.sampled_from(QUALITIES))  # fmt: skip
    def set_sample(self, tag: str, value: float, quality: Quality) -> None:
        self.rig.set(tag, value, quality=quality)
        if tag == "d":
            self.d_since = None

    @rule(ok=st.booleans())
    def set_device(self, ok: bool) -> None:
        self.rig.devices["sim"] = ok

    @rule(dt=st.sampled_from([0.05, 0.1, 0.1, 0.3, 0.6, 45.0]), ticks=st.integers(1, 4))
    def advance(self, dt: float, ticks: int) -> None:
        for _ in range(ticks):
            self.commit(self.rig.tick(dt))
            if self.d_since is None:
                self.d_since = self.rig.now

    @rule(data=st.data(), comment=st.sampled_from(["", "seen"]))
    def ack(self, data: st.DataObject, comment: str) -> None:
        # Open occurrences (a shelved alarm can show a closed one: its alarm_state is normal).
        snapshot = {
            e.occurrence_id: e for e in self.rig.engine.current() if e.alarm_state != "normal"
        }
        occurrence = data.draw(st.sampled_from([*snapshot, 0, self.last_occurrence, 10_000]))
        try:
            events = self.rig.acknowledge(occurrence, "ann", comment, self.rig.now)
        except AlarmRequestError as err:
            target = snapshot.get(occurrence)
            if target is None:
                assert err.code in ("unknown_alarm", "already_acknowledged")
            elif target.alarm_state == "acked_active":
                assert err.code == "already_acknowledged"
            else:
                assert err.code == "comment_required"
                assert target.severity == "critical" and not comment
            return
        target = snapshot[occurrence]
        assert target.alarm_state in ("unacked_active", "unacked_cleared")
        self.commit(events)

    @rule(alarm=st.sampled_from(NAMES), minutes=st.sampled_from([0, 0.5, 1, 3]),
          comment=st.sampled_from(["", "maintenance"]))  # fmt: skip
    def shelve(self, alarm: str, minutes: float, comment: str) -> None:
        try:
            events = self.rig.shelve(alarm, minutes, "ann", comment, self.rig.now)
        except AlarmRequestError as err:
            assert err.code in ("invalid", "comment_required")
            return
        assert 0 < minutes <= 2 and comment and not alarm.startswith("line1.s.")
        self.commit(events)

    @rule(alarm=st.sampled_from(NAMES))
    def unshelve(self, alarm: str) -> None:
        try:
            events = self.rig.unshelve(alarm, "bob", "", self.rig.now)
        except AlarmRequestError as err:
            assert err.code == "invalid"
            return
        self.commit(events)

    @precondition(lambda self: self.last_id > 0)
    @rule()
    def restart(self) -> None:
        """Carry on with an engine rebuilt from the journal, as after a crash."""
        # The server's path: only each alarm's newest event plus a few recent ones.
        engine = AlarmEngine(CONFIG, self.rig.schema, ["sim"])
        engine.restore(self.journal.restore_events(recent=3),
                       next_occurrence_id=self.journal.max_occurrence_id() + 1)  # fmt: skip
        assert engine.current() == self.rig.engine.current()
        self.rig.engine = engine
        self.d_since = None  # rate history starts afresh after a restart

    # ------------------------------------------------------------------ invariants

    def restored(self) -> AlarmEngine:
        engine = AlarmEngine(CONFIG, self.rig.schema, ["sim"])
        engine.restore(self.journal.all_events(),
                       next_occurrence_id=self.journal.max_occurrence_id() + 1)  # fmt: skip
        return engine

    @invariant()
    def states_are_legal(self) -> None:
        for name in NAMES:
            ev = self.rig.engine.state_of(name)
            assert ev.state in WIRE_STATES and ev.alarm_state in ISA_STATES
            # Shelving ends by itself: nothing is still shelved past its end.
            assert ev.shelved_until is None or ev.shelved_until > self.rig.now
            assert (ev.state == "shelved") == (ev.shelved_until is not None)
            assert ev.alarm_state == self.isa[name]
            if ev.alarm_state == "normal" and ev.state != "shelved":
                # Designed suppression lists a present condition without an occurrence.
                assert ev.state == ("suppressed" if ev.suppressed_by else "normal")
            if ev.alarm_state in ("acked_active",) or (
                ev.alarm_state == "normal" and ev.acked_at is not None
            ):
                assert ev.acked_by == "ann"
        # Supersession: hi and hihi are never both active.
        for lesser, greater in (("hi", "hihi"), ("lo", "lolo")):
            states = {self.rig.engine.state_of(f"line1.d.{n}").alarm_state
                      for n in (lesser, greater)}  # fmt: skip
            assert not states <= {"unacked_active", "acked_active"}

    @invariant()
    def settled_values_have_the_right_alarms(self) -> None:
        """An oracle for tag d once its sample has been steady longer than every delay."""
        i = self.rig.schema.index("1", "d")
        if self.d_since is None or self.rig.now - self.d_since < 1.0:
            return
        if self.rig.quality[i] != Quality.GOOD:
            return
        expect = {12.0: set(), 12.3: {"hi"}, 12.45: {"hihi"}, 11.5: {"lolo"}, 11.75: {"lo"}}
        value = float(self.rig.values[i])
        if value not in expect:
            return
        active = {
            n for n in ("hihi", "hi", "lo", "lolo", "rate", "quality")
            if self.rig.engine.state_of(f"line1.d.{n}").alarm_state in ("unacked_active",
                                                                        "acked_active")
        }  # fmt: skip
        assert active == expect[value]

    @invariant()
    def journal_rebuild_equals_live_state(self) -> None:
        assert self.journal.newest_id() == self.last_id
        engine = self.restored()
        assert engine.current() == self.rig.engine.current()
        assert engine.next_occurrence_id == self.rig.engine.next_occurrence_id

    @invariant()
    def values_are_json_safe(self) -> None:
        for ev in self.rig.engine.current():
            assert ev.value is None or np.isfinite(ev.value)


AlarmMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("ALARM_EXAMPLES", "60")), stateful_step_count=40, deadline=None
)
test_alarm_state_machine = AlarmMachine.TestCase
