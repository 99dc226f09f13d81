"""The alarm engine: samples, operator actions and `now` in; AlarmEvents out. No I/O, no clock.

Two layers:
- Checks (vectorised): each kind of check (limits, rate of change, quality, comms) is a `_Bank`
  of numpy arrays with one slot per alarm definition. A bank turns this tick's raw condition
  into a debounced condition (on/off delays) and reports only the slots that flipped. With
  nothing changing a tick is a handful of array operations over all tags.
- Occurrences (plain Python, only for flipped slots and operator requests): the ISA-18.2 state
  machine. An alarm's state is the snapshot carried by its newest event (`_Alarm.last`), so
  rebuilding from the journal is "the newest event of each alarm wins".

Supersession: hihi supersedes hi and lolo supersedes lo on the same tag. When the greater
condition becomes active, the lesser alarm's open occurrence (whatever its state) ends with an
`escalated` event (state `normal`, note names the superseding alarm) right after the greater
alarm's `raised` event; acking that occurrence afterwards answers `unknown_alarm`. While the
greater condition stays active the lesser alarm raises nothing. When it clears and the lesser
condition still holds, the lesser alarm raises a new occurrence in the same tick.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scada.alarms.kpi import AlarmInfo
from scada.alarms.model import (
    ACTIVE_STATES,
    NO_OCCURRENCE,
    AlarmEvent,
    AlarmRequestError,
)
from scada.core.config import DEFAULT_SEVERITY, LimitsConfig, PlantConfig, TagConfig
from scada.core.tags import Quality, TagSchema

__all__ = ["AlarmDef", "AlarmEngine", "AlarmRequestError"]

LIMIT_LABELS = {"hihi": "high-high", "hi": "high", "lo": "low", "lolo": "low-low"}
SUPERSEDED_BY = {"hi": "hihi", "lo": "lolo"}
# Float sums of tick intervals (0.1 + 0.1 + ...) land a hair short of the delay.
_EPS = 1e-9
# Closed, acknowledged occurrences remembered so a late second ack answers
# already_acknowledged rather than unknown_alarm. Bounded: an ack that late is a stale UI.
_CLOSED_MEMORY = 100_000


@dataclass(frozen=True, slots=True)
class AlarmDef:
    """One configured alarm: the static part of every event it emits."""

    id: int
    name: str
    line_id: str | None
    tag: str | None
    tag_index: int  # position in the TagSchema, -1 for device alarms
    condition: str
    severity: str
    message: str
    limit: float | None
    suppressed: bool
    superseded_by: str | None = None  # hi -> its tag's hihi alarm name
    supersedes: str | None = None  # hihi -> its tag's hi alarm name


class _Bank:
    """Debounced conditions of one kind of check; slot i belongs to alarm def `def_ids[i]`."""

    def __init__(self, def_ids: list[int], on_delay: list[float], off_delay: list[float]) -> None:
        n = len(def_ids)
        self.def_ids = np.asarray(def_ids, dtype=np.intp)
        self.on_delay = np.asarray(on_delay, dtype=np.float64).reshape(n)
        self.off_delay = np.asarray(off_delay, dtype=np.float64).reshape(n)
        self.active = np.zeros(n, dtype=bool)
        self.pending = np.full(n, np.nan)  # since when raw has differed from active
        self._any_pending = False

    def step(self, now: float, raw: np.ndarray, trusted: np.ndarray | None) -> np.ndarray:
        """Apply this tick's raw condition; return the slots whose debounced state flipped.

        Untrusted slots (bad or stale input) keep their state and lose any running delay:
        garbage must neither raise nor clear an alarm.
        """
        differ = raw != self.active
        if trusted is not None:
            differ &= trusted
        if not differ.any():
            if self._any_pending:
                self.pending.fill(np.nan)
                self._any_pending = False
            return np.empty(0, dtype=np.intp)
        pending = self.pending
        pending[~differ] = np.nan
        pending[differ & np.isnan(pending)] = now
        delay = np.where(self.active, self.off_delay, self.on_delay)
        flip = differ & (now - pending + _EPS >= delay)
        self.active ^= flip
        pending[flip] = np.nan
        self._any_pending = bool((differ & ~flip).any())
        return np.flatnonzero(flip)


class _RateGroup:
    """Rate-of-change checks sharing one window length: |v(now) - v(now - window)| / dt."""

    def __init__(self, window: float, bank: _Bank, tag_idx: list[int], limit: list[float]):
        self.window = window
        self.bank = bank
        self.tag_idx = np.asarray(tag_idx, dtype=np.intp)
        self.limit = np.asarray(limit, dtype=np.float64)
        self.samples: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        self.rate = np.full(len(tag_idx), np.nan)

    def step(self, now: float, values: np.ndarray, trusted_tag: np.ndarray) -> np.ndarray:
        v = values[self.tag_idx]
        ok = trusted_tag[self.tag_idx]
        self.samples.append((now, v, ok))
        cutoff = now - self.window
        while len(self.samples) >= 2 and self.samples[1][0] <= cutoff + _EPS:
            self.samples.popleft()
        t0, v0, ok0 = self.samples[0]
        if t0 > cutoff + _EPS or now <= t0:
            # Less than one window of history (start, restart): no judgement yet.
            return self.bank.step(now, self.bank.active, None)
        with np.errstate(invalid="ignore"):
            self.rate = np.abs(v - v0) / (now - t0)
            raw = self.rate > self.limit
        return self.bank.step(now, raw, ok & ok0)


@dataclass(slots=True)
class _Alarm:
    defn: AlarmDef
    last: AlarmEvent  # snapshot after the newest event: this alarm's whole state


class AlarmEngine:
    def __init__(self, config: PlantConfig, schema: TagSchema, device_names: list[str]) -> None:
        self.config = config
        self.schema = schema
        self.device_names = list(device_names)
        self.defs: list[AlarmDef] = []
        self._build_defs()
        self._by_name = {d.name: d for d in self.defs}
        self._reset()

    # ------------------------------------------------------------------ definitions

    def _build_defs(self) -> None:
        limit_slots: tuple[list[int], list[float], list[float]] = ([], [], [])
        self._limit_tag: list[int] = []
        self._limit_value: list[float] = []
        self._limit_deadband: list[float] = []
        self._limit_sign: list[float] = []
        rate_specs: dict[float, list[tuple[int, int, float, float, float]]] = {}
        quality: tuple[list[int], list[int], list[float]] = ([], [], [])
        for ref in self.schema.refs:
            tag, path = ref.config, ref.path
            title = f"{self.config.line(ref.line_id).title}: {tag.description or ref.name}"
            if tag.kind == "analog" and tag.limits is not None:
                self._add_limits(
                    ref.index, ref.line_id, ref.name, path, title, tag, tag.limits, limit_slots
                )
            if tag.rate is not None:
                d = self._add(
                    ref.line_id,
                    ref.name,
                    ref.index,
                    f"{path}.rate",
                    "rate",
                    tag.rate.severity,
                    f"{title} changing too fast",
                    tag.rate.max_per_second,
                    tag.suppressed,
                )
                rate_specs.setdefault(tag.rate.window, []).append(
                    (
                        d.id,
                        ref.index,
                        tag.rate.max_per_second,
                        tag.rate.on_delay,
                        tag.rate.off_delay,
                    )
                )
            if tag.quality_delay is not None:
                d = self._add(
                    ref.line_id,
                    ref.name,
                    ref.index,
                    f"{path}.quality",
                    "quality",
                    tag.quality_severity,
                    f"{title} value bad or stale",
                    None,
                    tag.suppressed,
                )
                quality[0].append(d.id)
                quality[1].append(ref.index)
                quality[2].append(tag.quality_delay)
        comms = [
            self._add(
                None,
                None,
                -1,
                f"device.{name}.comms",
                "comms",
                "high",
                f"Device {name}: communication lost",
                None,
                False,
            ).id
            for name in self.device_names
        ]
        self._limit_bank = _Bank(*limit_slots)
        self._limit_tag_idx = np.asarray(self._limit_tag, dtype=np.intp)
        self._limit_arr = np.asarray(self._limit_value, dtype=np.float64)
        self._deadband_arr = np.asarray(self._limit_deadband, dtype=np.float64)
        self._sign_arr = np.asarray(self._limit_sign, dtype=np.float64)
        self._rate_groups = [
            _RateGroup(
                window,
                _Bank([s[0] for s in specs], [s[3] for s in specs], [s[4] for s in specs]),
                [s[1] for s in specs],
                [s[2] for s in specs],
            )
            for window, specs in sorted(rate_specs.items())
        ]
        self._quality_bank = _Bank(quality[0], quality[2], [0.0] * len(quality[0]))
        self._quality_tag_idx = np.asarray(quality[1], dtype=np.intp)
        self._comms_bank = _Bank(comms, [0.0] * len(comms), [0.0] * len(comms))
        # Where each def's debounced condition lives, for supersession and restore.
        self._slot: dict[int, tuple[_Bank, int]] = {}
        banks = [self._limit_bank, self._quality_bank, self._comms_bank]
        banks += [g.bank for g in self._rate_groups]
        for bank in banks:
            for slot, def_id in enumerate(bank.def_ids.tolist()):
                self._slot[def_id] = (bank, slot)

    def _add_limits(
        self,
        index: int,
        line_id: str,
        tag_name: str,
        path: str,
        title: str,
        tag: TagConfig,
        limits: LimitsConfig,
        slots: tuple[list[int], list[float], list[float]],
    ) -> None:
        present = {name for name, _ in limits.items()}
        for name, lim in limits.items():
            sup = SUPERSEDED_BY.get(name)
            sub = next((k for k, v in SUPERSEDED_BY.items() if v == name), None)
            d = self._add(
                line_id,
                tag_name,
                index,
                f"{path}.{name}",
                name,
                lim.severity or DEFAULT_SEVERITY[name],
                lim.message or f"{title} {LIMIT_LABELS[name]}",
                lim.value,
                tag.suppressed,
                superseded_by=f"{path}.{sup}" if sup in present else None,
                supersedes=f"{path}.{sub}" if sub in present else None,
            )
            slots[0].append(d.id)
            slots[1].append(lim.on_delay if lim.on_delay is not None else limits.on_delay)
            slots[2].append(lim.off_delay if lim.off_delay is not None else limits.off_delay)
            self._limit_tag.append(index)
            self._limit_value.append(lim.value)
            self._limit_deadband.append(_deadband(tag, limits, lim.deadband))
            self._limit_sign.append(1.0 if name in ("hi", "hihi") else -1.0)

    def _add(
        self,
        line_id: str | None,
        tag: str | None,
        tag_index: int,
        name: str,
        condition: str,
        severity: str,
        message: str,
        limit: float | None,
        suppressed: bool,
        *,
        superseded_by: str | None = None,
        supersedes: str | None = None,
    ) -> AlarmDef:
        d = AlarmDef(
            len(self.defs),
            name,
            line_id,
            tag,
            tag_index,
            condition,
            severity,
            message,
            limit,
            suppressed,
            superseded_by,
            supersedes,
        )
        self.defs.append(d)
        return d

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

    def definition(self, alarm: str) -> AlarmDef | None:
        return self._by_name.get(alarm)

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
        now = self._mono = stamp if mono is None else mono
        out: list[AlarmEvent] = []
        self._apply_fixups(stamp, out)
        self._expire_shelves(stamp, now, out)
        with np.errstate(invalid="ignore"):
            trusted_tag = (quality <= Quality.UNCERTAIN) & np.isfinite(values)
        flips: list[tuple[int, bool, float | None]] = []
        self._step_limits(now, values, trusted_tag, flips)
        for group in self._rate_groups:
            for slot in group.step(now, values, trusted_tag).tolist():
                rate = float(group.rate[slot])
                flips.append(
                    (
                        int(group.bank.def_ids[slot]),
                        bool(group.bank.active[slot]),
                        rate if math.isfinite(rate) else None,
                    )
                )
        bad = quality[self._quality_tag_idx] >= Quality.STALE
        self._collect(self._quality_bank, self._quality_bank.step(now, bad, None), values, flips)
        self._step_comms(now, device_ok, flips)
        for def_id, active, value in flips:
            a = self._alarms[def_id]
            if active:
                self._on_rise(a, stamp, value, values, out)
            else:
                self._on_fall(a, stamp, value, values, out)
        return out

    def _step_limits(
        self,
        now: float,
        values: np.ndarray,
        trusted_tag: np.ndarray,
        flips: list[tuple[int, bool, float | None]],
    ) -> None:
        bank = self._limit_bank
        v = values[self._limit_tag_idx]
        with np.errstate(invalid="ignore"):
            beyond = self._sign_arr * (v - self._limit_arr)
            # Raise beyond the limit; clear only once back inside by the deadband.
            raw = np.where(bank.active, beyond > -self._deadband_arr, beyond > 0.0)
        slots = bank.step(now, raw, trusted_tag[self._limit_tag_idx])
        self._collect(bank, slots, values, flips)

    def _step_comms(
        self, now: float, device_ok: dict[str, bool], flips: list[tuple[int, bool, float | None]]
    ) -> None:
        if not self.device_names:
            return
        raw = np.array([not device_ok.get(n, True) for n in self.device_names], dtype=bool)
        known = np.array([n in device_ok for n in self.device_names], dtype=bool)
        for slot in self._comms_bank.step(now, raw, known).tolist():
            flips.append(
                (int(self._comms_bank.def_ids[slot]), bool(self._comms_bank.active[slot]), None)
            )

    def _collect(
        self,
        bank: _Bank,
        slots: np.ndarray,
        values: np.ndarray,
        flips: list[tuple[int, bool, float | None]],
    ) -> None:
        for slot in slots.tolist():
            def_id = int(bank.def_ids[slot])
            flips.append((def_id, bool(bank.active[slot]), _tag_value(self.defs[def_id], values)))

    def _cond(self, alarm: str | None) -> bool:
        if alarm is None:
            return False
        bank, slot = self._slot[self._by_name[alarm].id]
        return bool(bank.active[slot])

    def _on_rise(
        self,
        a: _Alarm,
        now: float,
        value: float | None,
        values: np.ndarray,
        out: list[AlarmEvent],
    ) -> None:
        self._raise_if_due(a, now, value, out)
        if a.defn.supersedes is not None:
            lesser = self._alarm_by_name[a.defn.supersedes]
            if lesser.last.alarm_state != "normal":
                self._escalate(lesser, a, now, _tag_value(lesser.defn, values), out)

    def _on_fall(
        self,
        a: _Alarm,
        now: float,
        value: float | None,
        values: np.ndarray,
        out: list[AlarmEvent],
    ) -> None:
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
        self, a: _Alarm, now: float, value: float | None, out: list[AlarmEvent]
    ) -> None:
        if a.last.alarm_state in ACTIVE_STATES or self._cond(a.defn.superseded_by):
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
            cleared_at=None,
            acked_at=None,
            acked_by=None,
            comment=None,
        )

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
            if mono + _EPS >= until:
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
            kind = "suppressed" if a.defn.suppressed else "unsuppressed"
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
        self, a: _Alarm, kind: str, now: float, out: list[AlarmEvent], **changes: Any
    ) -> None:
        ev = self._next_event(a, kind, now, **changes)
        self._apply_one(a, ev)
        out.append(ev)

    def _next_event(self, a: _Alarm, kind: str, now: float, **changes: Any) -> AlarmEvent:
        """The alarm's snapshot after `kind`, without applying it (pure)."""
        prev = a.last
        base = prev
        if prev.alarm_state == "normal" and kind != "raised":
            base = _without_occurrence(prev)  # this event belongs to no occurrence
        fields: dict[str, Any] = {"user": None, "note": None, "severity": a.defn.severity}
        fields.update(changes)
        ev = dataclasses.replace(base, event_id=None, event=kind, at=now, **fields)
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
        for bank in {id(b): b for b, _ in self._slot.values()}.values():
            bank.active[:] = False
            bank.pending[:] = np.nan
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
            bank, slot = self._slot[a.defn.id]
            bank.active[slot] = a.last.alarm_state in ACTIVE_STATES
            if a.last.state != _wire_state(a.defn, a.last) and a.last.shelved_until is None:
                self._fixups.append(a)


def _deadband(tag: TagConfig, limits: LimitsConfig, own: float | None) -> float:
    if own is not None:
        return own
    if limits.deadband_percent is not None and tag.span is not None:
        return (tag.span[1] - tag.span[0]) * limits.deadband_percent / 100.0
    return limits.deadband


def _tag_value(d: AlarmDef, values: np.ndarray) -> float | None:
    if d.tag_index < 0:
        return None
    v = float(values[d.tag_index])
    return v if math.isfinite(v) else None


def _wire_state(d: AlarmDef, ev: AlarmEvent) -> str:
    if ev.shelved_until is not None:
        return "shelved"
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
    return dataclasses.replace(
        ev,
        occurrence_id=NO_OCCURRENCE,
        value=None,
        raised_at=None,
        cleared_at=None,
        acked_at=None,
        acked_by=None,
        comment=None,
    )
