"""The alarm engine: samples, operator actions and `now` in; AlarmEvents out. No I/O, no clock.

Three parts: `definitions` (what is configured), `checks` (vectorised conditions, debounced on
the monotonic clock) and, here, the ISA-18.2 state machine of occurrences (plain Python, only
for flipped conditions and operator requests). An alarm's state is the snapshot carried by its
newest event (`_Alarm.last`), so rebuilding from the journal is "the newest event of each alarm
wins".

Supersession: hihi supersedes hi and lolo supersedes lo on the same tag. When the greater
condition becomes active, the lesser alarm's open occurrence (whatever its state) ends with an
`escalated` event (state `normal`, note names the superseding alarm) right after the greater
alarm's `raised` event; acking that occurrence afterwards answers `unknown_alarm`. While the
greater condition stays active the lesser alarm raises nothing. When it clears and the lesser
condition still holds, the lesser alarm raises a new occurrence in the same tick.

Designed suppression (ISA-18.2 state-based / by dependency): while one of an alarm's
`suppressors` is active (its device's comms alarm, its line in a `suppress_when` state), a
condition that becomes active is journaled as a `suppressed` event with no occurrence (state
`suppressed`, `suppressed_by` naming the cause: listed, not annunciated, nothing to
acknowledge); an occurrence already open gets a `suppressed` event and keeps its ISA state.
When the suppression ends, a condition still present raises a new occurrence (annunciated
now), an open occurrence gets `unsuppressed`, and a silent one whose condition went away
is removed with `unsuppressed`.

First-out: an annunciated raise with no other annunciated raise on its line (device alarms:
their own scope) within `alarms.first_out_window` seconds before it is marked `first_out`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scada.alarms.checks import EPS, Checks, Flip
from scada.alarms.definitions import AlarmDef, build
from scada.alarms.kpi import AlarmInfo
from scada.alarms.model import (
    ACTIVE_STATES,
    NO_OCCURRENCE,
    AlarmEvent,
    AlarmRequestError,
    EventKind,
)
from scada.core.config import PlantConfig
from scada.core.tags import TagSchema

__all__ = ["AlarmDef", "AlarmEngine", "AlarmRequestError"]

# Closed, acknowledged occurrences remembered so a late second ack answers
# already_acknowledged rather than unknown_alarm. Bounded: an ack that late is a stale UI.
_CLOSED_MEMORY = 100_000
_ROOT_CAUSES = ("comms", "state")  # processed first in a tick: they suppress others
# The fields of an event that belongs to no occurrence.
_NO_OCCURRENCE: dict[str, Any] = {
    "occurrence_id": NO_OCCURRENCE,
    "raised_at": None,
    "cleared_at": None,
    "acked_at": None,
    "acked_by": None,
    "comment": None,
    "first_out": False,
    "raised_value": None,
}


@dataclass(slots=True)
class _Alarm:
    defn: AlarmDef
    last: AlarmEvent  # snapshot after the newest event: this alarm's whole state


class AlarmEngine:
    def __init__(self, config: PlantConfig, schema: TagSchema, device_names: list[str]) -> None:
        self.config = config
        self.schema = schema
        self.device_names = list(device_names)
        self.definitions = build(config, schema, self.device_names)
        self.defs: list[AlarmDef] = self.definitions.defs
        self._by_name = {d.name: d for d in self.defs}
        self._checks = Checks(self.definitions, self.device_names)
        self._suppressible = [d for d in self.defs if d.suppressors]
        wanted = {name for d in self._suppressible for name in d.suppressors}
        # Line-state conditions some alarm is suppressed by: (name, state tag index, value).
        self._state_conditions = [
            (f"line{line}.state.{state}", index, float(k))
            for line, (index, states) in self.definitions.line_states.items()
            for k, state in enumerate(states)
            if f"line{line}.state.{state}" in wanted
        ]
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self._alarms = [_Alarm(d, _blank(d)) for d in self.defs]
        self._alarm_by_name = {a.defn.name: a for a in self._alarms}
        self._open: dict[int, _Alarm] = {}  # occurrence id -> alarm, for every open occurrence
        self._closed_acked: OrderedDict[int, None] = OrderedDict()
        # Alarm name -> monotonic end of its shelf (None: not known yet, after a restore or
        # before the shelve is applied; set at the next evaluate from the wall end time).
        self._shelved: dict[str, float | None] = {}
        self._mono = 0.0  # the monotonic time of the latest evaluate or request
        self._next_occurrence = 1
        self._fixups: list[_Alarm] = []  # restored alarms whose suppression changed in config
        # Designed suppression in force per suppressible def id, and the active conditions
        # it was computed from (None: recompute at the next tick).
        self._supp: dict[int, str | None] = dict.fromkeys(d.id for d in self._suppressible)
        self._conditions: frozenset[str] | None = None
        self._last_raise: dict[str, float] = {}  # line id ("" for devices) -> mono

    @property
    def next_occurrence_id(self) -> int:
        return self._next_occurrence

    def names(self) -> list[str]:
        return [d.name for d in self.defs]

    def kpi_info(self) -> dict[str, AlarmInfo]:
        """Per alarm, what the KPIs' suggestions need (condition, unit, span width)."""
        out: dict[str, AlarmInfo] = {}
        for d in self.defs:
            tag = self.schema.refs[d.tag_index].config if d.tag_index >= 0 else None
            span = None if tag is None or tag.span is None else tag.span[1] - tag.span[0]
            out[d.name] = AlarmInfo(d.condition, tag.unit if tag else "", span)
        return out

    def state_of(self, alarm: str) -> AlarmEvent:
        """Snapshot of one alarm (its newest event, or a blank normal one)."""
        return dataclasses.replace(self._alarm_by_name[alarm].last)

    def current(self) -> list[AlarmEvent]:
        """Every alarm whose state is not normal, in configuration order."""
        return [dataclasses.replace(a.last) for a in self._alarms if a.last.state != "normal"]

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        now: float,
        values: np.ndarray,
        quality: np.ndarray,
        device_ok: dict[str, bool],
        *,
        mono: float | None = None,
    ) -> list[AlarmEvent]:
        """One tick: all tags at once. Returns the events of this tick, in order.

        `now` (wall clock) only stamps events; every delay, window and expiry is measured
        on `mono` (monotonic; defaults to `now` for callers with one steady clock).
        """
        stamp = now
        mono = self._mono = stamp if mono is None else mono
        out: list[AlarmEvent] = []
        self._apply_fixups(stamp, out)
        self._expire_shelves(stamp, mono, out)
        flips = self._checks.step(mono, values, quality, device_ok)
        for flip in flips:
            if self._is_root(self.defs[flip[0]]):
                self._on_flip(flip, stamp, values, out)
        conditions = self._active_conditions(values)
        if conditions != self._conditions:
            self._conditions = conditions
            self._resuppress(conditions, stamp, values, out)
        for flip in flips:
            if not self._is_root(self.defs[flip[0]]):
                self._on_flip(flip, stamp, values, out)
        return out

    @staticmethod
    def _is_root(d: AlarmDef) -> bool:
        """Device, line-quality and line-state alarms: what may suppress the others."""
        return d.condition in _ROOT_CAUSES or (d.condition == "quality" and d.tag is None)

    def _on_flip(self, flip: Flip, stamp: float, values: np.ndarray, out: list[AlarmEvent]) -> None:
        def_id, active, value = flip
        a = self._alarms[def_id]
        if active:
            self._on_rise(a, stamp, value, values, out)
        else:
            self._on_fall(a, stamp, value, values, out)

    def _cond(self, alarm: str | None) -> bool:
        return alarm is not None and self._checks.active(self._by_name[alarm].id)

    # ------------------------------------------------------------------ designed suppression

    def _active_conditions(self, values: np.ndarray) -> frozenset[str]:
        """Every suppressing condition active now: device comms, line states."""
        names = [f"device.{n}.comms" for n in self._checks.comms_active()]
        names += [self.defs[i].name for i in self._checks.line_quality_active()]
        names += [n for n, index, value in self._state_conditions if values[index] == value]
        return frozenset(names)

    def _resuppress(
        self, conditions: frozenset[str], stamp: float, values: np.ndarray, out: list[AlarmEvent]
    ) -> None:
        for d in self._suppressible:
            new = next((s for s in d.suppressors if s in conditions), None)
            old = self._supp[d.id]
            if new == old:
                continue
            self._supp[d.id] = new
            a = self._alarms[d.id]
            if new is not None:
                if a.last.alarm_state != "normal" or a.last.suppressed_by is not None:
                    self._emit(a, "suppressed", stamp, out, suppressed_by=new,
                               note=f"suppressed by {new}")  # fmt: skip
            elif self._checks.active(d.id) and a.last.alarm_state not in ACTIVE_STATES:
                note = f"{old} ended; the condition is still present"
                self._raise_if_due(a, stamp, _tag_value(d, values), out, note=note)
            elif a.last.suppressed_by is not None:
                self._emit(a, "unsuppressed", stamp, out, suppressed_by=None,
                           note=f"{old} ended")  # fmt: skip

    # ------------------------------------------------------------------ occurrences

    def _on_rise(
        self,
        a: _Alarm,
        now: float,
        value: float | None,
        values: np.ndarray,
        out: list[AlarmEvent],
    ) -> None:
        lesser = None if a.defn.supersedes is None else self._alarm_by_name[a.defn.supersedes]
        # An escalation is the lesser occurrence getting worse, not a new burst: it carries
        # that occurrence's first-out mark (the lesser occurrence ends just below).
        escalating = lesser is not None and lesser.last.alarm_state != "normal"
        self._raise_if_due(
            a, now, value, out, first_out=lesser.last.first_out if lesser and escalating else None
        )
        if lesser is not None:
            if lesser.last.alarm_state != "normal":
                self._escalate(lesser, a, now, _tag_value(lesser.defn, values), out)
            elif lesser.last.suppressed_by is not None:  # listed silently: the greater stands
                self._emit(lesser, "unsuppressed", now, out, suppressed_by=None,
                           note=f"superseded by {a.defn.name}")  # fmt: skip

    def _on_fall(
        self,
        a: _Alarm,
        now: float,
        value: float | None,
        values: np.ndarray,
        out: list[AlarmEvent],
    ) -> None:
        if a.last.alarm_state == "normal" and a.last.suppressed_by is not None:
            self._emit(a, "unsuppressed", now, out, value=value, suppressed_by=None,
                       note="the condition went away while suppressed")  # fmt: skip
        if a.last.alarm_state in ACTIVE_STATES:
            acked = a.last.alarm_state == "acked_active"
            self._emit(
                a,
                "cleared",
                now,
                out,
                value=value,
                cleared_at=now,
                alarm_state="normal" if acked else "unacked_cleared",
            )
        if a.defn.supersedes is not None:
            lesser = self._alarm_by_name[a.defn.supersedes]
            if self._cond(lesser.defn.name):
                self._raise_if_due(lesser, now, _tag_value(lesser.defn, values), out)

    def _raise_if_due(
        self,
        a: _Alarm,
        now: float,
        value: float | None,
        out: list[AlarmEvent],
        note: str | None = None,
        first_out: bool | None = None,
    ) -> None:
        """Raise a new occurrence unless one is active, superseded or suppressed by design.

        `first_out`: the mark an escalation inherits (None: the first-out window decides).
        """
        if a.last.alarm_state in ACTIVE_STATES or self._cond(a.defn.superseded_by):
            return
        by = self._supp.get(a.defn.id)
        if by is not None:
            if a.last.suppressed_by != by or a.last.alarm_state != "normal":
                # Journaled and listed, not annunciated: no occurrence to acknowledge.
                # (An unacked_cleared occurrence ends here, as a new raise would replace it.)
                self._emit(
                    a,
                    "suppressed",
                    now,
                    out,
                    **_NO_OCCURRENCE,
                    suppressed_by=by,
                    value=value,
                    alarm_state="normal",
                    note=f"condition present, suppressed by {by}",
                )
            return
        # An unacked_cleared occurrence of the same alarm is replaced by the new one.
        occurrence = self._next_occurrence
        self._next_occurrence += 1
        self._emit(
            a,
            "raised",
            now,
            out,
            occurrence_id=occurrence,
            alarm_state="unacked_active",
            value=value,
            raised_at=now,
            raised_value=value,
            cleared_at=None,
            acked_at=None,
            acked_by=None,
            comment=None,
            suppressed_by=None,
            first_out=self._first_out(a, first_out),
            note=note,
        )

    def _first_out(self, a: _Alarm, inherited: bool | None) -> bool:
        """Opens a burst on its line: no other annunciated raise there within the window.

        A raise the operator is not shown (out of service, shelved) is never first-out and
        does not count for the window: it cannot take the mark from the next real alarm.
        """
        if a.defn.suppressed or a.last.shelved_until is not None:
            return False
        scope = a.defn.line_id or ""
        last = self._last_raise.get(scope)
        self._last_raise[scope] = self._mono
        if inherited is not None:
            return inherited
        return last is None or self._mono - last > self.config.alarms.first_out_window + EPS

    def _escalate(
        self,
        lesser: _Alarm,
        greater: _Alarm,
        now: float,
        value: float | None,
        out: list[AlarmEvent],
    ) -> None:
        self._emit(
            lesser,
            "escalated",
            now,
            out,
            alarm_state="normal",
            value=value,
            note=f"superseded by {greater.defn.name} (occurrence {greater.last.occurrence_id})",
        )

    def _expire_shelves(self, stamp: float, mono: float, out: list[AlarmEvent]) -> None:
        for name, until in list(self._shelved.items()):
            if until is None:
                # Restored (or just applied) shelf: what remains of it, from now on.
                wall_end = self._alarm_by_name[name].last.shelved_until or stamp
                self._shelved[name] = until = mono + max(0.0, wall_end - stamp)
            if mono + EPS >= until:
                self._emit(
                    self._alarm_by_name[name],
                    "unshelved",
                    stamp,
                    out,
                    note="shelving expired",
                    shelved_until=None,
                    shelved_by=None,
                    shelve_comment=None,
                )

    def _apply_fixups(self, now: float, out: list[AlarmEvent]) -> None:
        for a in self._fixups:
            kind: EventKind = "suppressed" if a.defn.suppressed else "unsuppressed"
            self._emit(a, kind, now, out, note="out-of-service setting changed in config")
        self._fixups = []

    # ------------------------------------------------------------------ operator requests

    def acknowledge(
        self, occurrence_id: int, user: str, comment: str, now: float
    ) -> list[AlarmEvent]:
        a = self._open.get(occurrence_id)
        if a is None:
            if occurrence_id in self._closed_acked:
                raise AlarmRequestError(
                    "already_acknowledged", f"occurrence {occurrence_id} is already acknowledged"
                )
            raise AlarmRequestError(
                "unknown_alarm", f"no open alarm occurrence {occurrence_id} (unknown or superseded)"
            )
        if a.last.alarm_state == "acked_active":
            raise AlarmRequestError(
                "already_acknowledged",
                f"{a.defn.name} occurrence {occurrence_id} is already acknowledged",
            )
        comment = comment.strip()
        if a.defn.severity in self.config.alarms.require_comment and not comment:
            raise AlarmRequestError(
                "comment_required", f"acknowledging a {a.defn.severity} alarm needs a comment"
            )
        new_state = "acked_active" if a.last.alarm_state == "unacked_active" else "normal"
        ev = self._next_event(
            a,
            "acknowledged",
            now,
            alarm_state=new_state,
            acked_at=now,
            acked_by=user,
            comment=comment or None,
            user=user,
            note=comment or None,
        )
        return [ev]

    def shelve(
        self,
        alarm: str,
        minutes: float,
        user: str,
        comment: str,
        now: float,
        *,
        mono: float | None = None,
    ) -> list[AlarmEvent]:
        """Plan a shelve; `mono` (default `now`) is when the shelf's minutes start."""
        a = self._request_target(alarm)
        self._mono = now if mono is None else mono
        limit = self.config.alarms.max_shelve_minutes
        if not (
            isinstance(minutes, int | float) and math.isfinite(minutes) and 0 < minutes <= limit
        ):
            raise AlarmRequestError("invalid", f"minutes must be above 0 and at most {limit}")
        if a.defn.suppressed:
            raise AlarmRequestError("invalid", f"{alarm} is out of service in the configuration")
        comment = comment.strip()
        if not comment:
            raise AlarmRequestError("comment_required", "shelving needs a comment (the reason)")
        ev = self._next_event(
            a,
            "shelved",
            now,
            shelved_until=now + minutes * 60.0,
            shelved_by=user,
            shelve_comment=comment,
            user=user,
            note=comment,
        )
        return [ev]

    def unshelve(self, alarm: str, user: str, comment: str, now: float) -> list[AlarmEvent]:
        a = self._request_target(alarm)
        if a.last.shelved_until is None:
            raise AlarmRequestError("invalid", f"{alarm} is not shelved")
        ev = self._next_event(
            a,
            "unshelved",
            now,
            shelved_until=None,
            shelved_by=None,
            shelve_comment=None,
            user=user,
            note=comment.strip() or None,
        )
        return [ev]

    def _request_target(self, alarm: str) -> _Alarm:
        a = self._alarm_by_name.get(alarm)
        if a is None:
            raise AlarmRequestError("unknown_alarm", f"no alarm named {alarm!r}")
        return a

    # ------------------------------------------------------------------ event bookkeeping

    def _emit(
        self, a: _Alarm, kind: EventKind, now: float, out: list[AlarmEvent], **changes: Any
    ) -> None:
        ev = self._next_event(a, kind, now, **changes)
        self._apply_one(a, ev)
        out.append(ev)

    def _next_event(self, a: _Alarm, kind: EventKind, now: float, **changes: Any) -> AlarmEvent:
        """The alarm's snapshot after `kind`, without applying it (pure)."""
        prev = a.last
        base = prev
        if prev.alarm_state == "normal" and kind != "raised":
            base = _without_occurrence(prev)  # this event belongs to no occurrence
        fields: dict[str, Any] = {"user": None, "note": None, "severity": a.defn.severity}
        fields.update(changes)
        ev = dataclasses.replace(base, event_id=None, event=kind, at=now, **fields)
        if ev.alarm_state == "normal" and kind in ("acknowledged", "cleared", "escalated"):
            ev.suppressed_by = None  # only a present condition stays listed as suppressed
        ev.state = _wire_state(a.defn, ev)
        return ev

    def _apply_one(self, a: _Alarm, ev: AlarmEvent) -> None:
        prev = a.last
        self._account(a, prev, ev)
        a.last = ev

    def apply(self, events: Iterable[AlarmEvent]) -> None:
        """Make an operator request's events (see acknowledge/shelve/unshelve) the state.

        Called only once they are committed: a request whose commit failed changes nothing.
        """
        for ev in events:
            self._apply_one(self._alarm_by_name[ev.alarm], ev)

    def _account(self, a: _Alarm, prev: AlarmEvent, ev: AlarmEvent) -> None:
        """Keep the occurrence and shelving indexes in step with the alarm's new snapshot."""
        if prev.alarm_state != "normal":
            closed = ev.alarm_state == "normal" or ev.occurrence_id != prev.occurrence_id
            if closed:
                self._open.pop(prev.occurrence_id, None)
            # Closed by an ack (or a clear after one): a second ack is already_acknowledged.
            # Closed by supersession or replacement: unknown_alarm.
            by_ack = ev.event in ("acknowledged", "cleared") and ev.acked_at is not None
            if closed and by_ack and ev.occurrence_id == prev.occurrence_id:
                self._remember_acked(prev.occurrence_id)
        if ev.alarm_state != "normal":
            self._open[ev.occurrence_id] = a
        if ev.shelved_until is None:
            self._shelved.pop(a.defn.name, None)
        elif ev.event == "shelved":
            # The shelf lasts its minutes on the monotonic clock from the request.
            self._shelved[a.defn.name] = self._mono + (ev.shelved_until - ev.at)
        else:
            self._shelved.setdefault(a.defn.name, None)

    def _remember_acked(self, occurrence_id: int) -> None:
        self._closed_acked[occurrence_id] = None
        if len(self._closed_acked) > _CLOSED_MEMORY:
            self._closed_acked.popitem(last=False)

    # ------------------------------------------------------------------ restore

    def restore(
        self, events: Iterable[AlarmEvent], *, next_occurrence_id: int | None = None
    ) -> None:
        """Rebuild every alarm's state from journal events (oldest first).

        The newest event of each alarm is its state. Running on/off delays and rate history
        are not journaled: they start afresh, which can only delay a change, never invent one.
        `next_occurrence_id` covers occurrences whose events were all pruned.
        """
        self._reset()
        self._checks.reset()
        highest = 0
        for ev in events:
            highest = max(highest, ev.occurrence_id)
            a = self._alarm_by_name.get(ev.alarm)
            if a is None:
                continue  # alarm no longer configured
            prev = a.last
            a.last = dataclasses.replace(ev)
            self._account(a, prev, a.last)
        self._next_occurrence = max(highest + 1, next_occurrence_id or 1)
        # Shelves restart from their wall end time at the first tick (no monotonic record).
        self._shelved = dict.fromkeys(self._shelved)
        for a in self._alarms:
            silent = a.last.alarm_state == "normal" and a.last.suppressed_by is not None
            self._checks.set_active(a.defn.id, a.last.alarm_state in ACTIVE_STATES or silent)
            if a.defn.id in self._supp:
                self._supp[a.defn.id] = a.last.suppressed_by
            if a.last.state != _wire_state(a.defn, a.last) and a.last.shelved_until is None:
                self._fixups.append(a)


def _tag_value(d: AlarmDef, values: np.ndarray) -> float | None:
    if d.tag_index < 0:
        return None
    v = float(values[d.tag_index])
    return v if math.isfinite(v) else None


def _wire_state(d: AlarmDef, ev: AlarmEvent) -> str:
    if ev.shelved_until is not None:
        return "shelved"
    if ev.suppressed_by is not None:
        return "suppressed"
    if ev.alarm_state == "normal":
        return "normal"
    if d.suppressed:
        return "suppressed"
    return ev.alarm_state


def _blank(d: AlarmDef) -> AlarmEvent:
    return AlarmEvent(
        event_id=None,
        occurrence_id=NO_OCCURRENCE,
        alarm=d.name,
        production_line_id=d.line_id,
        tag=d.tag,
        condition=d.condition,
        severity=d.severity,
        event="cleared",
        state="normal",
        message=d.message,
        value=None,
        limit=d.limit,
        at=0.0,
    )


def _without_occurrence(ev: AlarmEvent) -> AlarmEvent:
    return dataclasses.replace(ev, value=None, **_NO_OCCURRENCE)
