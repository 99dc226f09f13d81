"""Which committed alarm event goes to which target: pure functions, no I/O, no clock.

`route` turns one journal event (a wire dict) into outbox work: the targets to notify now
and the "unacknowledged for N minutes" timers to start, update or cancel. The feeder applies
that work in one outbox transaction together with its journal cursor.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from scada.core.timefmt import parse_time
from scada.notify.settings import PRIORITY_OF_SEVERITY, NotificationsConfig, RuleConfig

# A raised or cleared event of an alarm that is shelved or suppressed is not annunciated to
# the operator, so it is not sent anywhere either (unless a rule asks for that event kind).
NOT_ANNUNCIATED = ("shelved", "suppressed")
UNACK = "unacknowledged"


@dataclass(frozen=True, slots=True)
class Timer:
    """Notify `targets` if occurrence `occurrence_id` is still unacknowledged at `due_at`."""

    rule: str
    occurrence_id: int
    due_at: float
    minutes: float
    targets: tuple[str, ...]
    alarm: dict[str, Any]
    start: bool  # False: refresh the snapshot of an existing timer only


@dataclass(slots=True)
class Routing:
    """What one journal event asks of the outbox."""

    deliveries: dict[str, list[str]] = field(default_factory=dict)  # target -> rule names
    timers: list[Timer] = field(default_factory=list)  # start, or refresh the snapshot
    cancel: list[int] = field(default_factory=list)  # occurrences whose timers end


def priority_of(alarm: dict[str, Any]) -> int:
    value = alarm.get("priority")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return PRIORITY_OF_SEVERITY.get(str(alarm.get("severity")), 4)


def matches(rule: RuleConfig, alarm: dict[str, Any]) -> bool:
    """The rule's filters (not its events) accept this alarm."""
    if rule.priority and priority_of(alarm) not in rule.priority:
        return False
    if rule.severity and alarm.get("severity") not in rule.severity:
        return False
    if rule.lines and alarm.get("production_line_id") not in rule.lines:
        return False
    name = str(alarm.get("alarm", ""))
    return not rule.alarms or any(fnmatch.fnmatchcase(name, p) for p in rule.alarms)


def acknowledged_or_over(alarm: dict[str, Any]) -> bool:
    """The occurrence needs no reminder any more: acknowledged, back to normal, or taken
    out of the operator's view (shelved, suppressed)."""
    return (
        alarm.get("acked_at") is not None
        or alarm.get("alarm_state") == "normal"
        or alarm.get("state") in ("normal", *NOT_ANNUNCIATED)
    )


def route(config: NotificationsConfig, alarm: dict[str, Any]) -> Routing:
    out = Routing()
    kind = str(alarm.get("event"))
    occurrence = int(alarm.get("id") or 0)
    if acknowledged_or_over(alarm):
        out.cancel.append(occurrence)
    for i, rule in enumerate(config.rules):
        if not matches(rule, alarm):
            continue
        name = config.rule_name(i)
        if kind in rule.events and (kind in ("shelved", "suppressed") or not _hidden(alarm)):
            for target in rule.targets:
                out.deliveries.setdefault(target, []).append(name)
        if UNACK in rule.events and rule.unacknowledged_minutes and occurrence:
            timer = _timer(name, rule, alarm, occurrence, started=kind == "raised")
            if timer is not None and occurrence not in out.cancel:
                out.timers.append(timer)
    return out


def _hidden(alarm: dict[str, Any]) -> bool:
    return alarm.get("state") in NOT_ANNUNCIATED


def _timer(
    name: str, rule: RuleConfig, alarm: dict[str, Any], occurrence: int, *, started: bool
) -> Timer | None:
    """A raised event starts a timer; later events of the occurrence only refresh the
    snapshot of a timer that exists (the outbox knows which do)."""
    raised_at = alarm.get("raised_at")
    if raised_at is None:
        return None
    minutes = float(rule.unacknowledged_minutes or 0)
    return Timer(
        rule=name,
        occurrence_id=occurrence,
        due_at=parse_time(str(raised_at)) + minutes * 60.0,
        minutes=minutes,
        targets=tuple(rule.targets),
        alarm=alarm,
        start=started,
    )


def timer_event_id(instance: str, timer: Timer) -> str:
    return f"{instance}:unack:{timer.occurrence_id}:{timer.rule}"


def event_id(instance: str, journal_id: int) -> str:
    return f"{instance}:{journal_id}"
