"""Alarm events: what the engine emits, the journal stores and clients receive.

Every event is a full snapshot of its alarm right after the event, so the newest event of an
alarm is enough to rebuild that alarm's state on restart (the journal relies on this to prune).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final, Literal

from scada.core.errors import Refused
from scada.core.timefmt import iso_ms, iso_or_none

Condition = Literal[
    "hihi", "hi", "lo", "lolo", "rate", "quality", "comms", "frozen", "state", "deviation"
]
EventKind = Literal[
    "raised",
    "acknowledged",
    "cleared",
    "shelved",
    "unshelved",
    "suppressed",
    "unsuppressed",
    "escalated",
]
# ISA-18.2 state of the alarm's occurrence, regardless of shelving and suppression.
IsaState = Literal["normal", "unacked_active", "acked_active", "unacked_cleared"]
# What a client shows: the ISA state, unless an operator shelved it or config took it out of
# service (then the occurrence still runs underneath, see `alarm_state`).
WireState = Literal[
    "normal", "unacked_active", "acked_active", "unacked_cleared", "shelved", "suppressed"
]

ISA_STATES: Final = ("normal", "unacked_active", "acked_active", "unacked_cleared")
WIRE_STATES: Final = (*ISA_STATES, "shelved", "suppressed")
EVENT_KINDS: Final = (
    "raised",
    "acknowledged",
    "cleared",
    "shelved",
    "unshelved",
    "suppressed",
    "unsuppressed",
    "escalated",
)
ACTIVE_STATES: Final = ("unacked_active", "acked_active")
SEVERITY_RANK: Final = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# ISA-18.2 priority of a severity: 1 is the most urgent.
PRIORITY: Final = {"critical": 1, "high": 2, "medium": 3, "low": 4}
NO_OCCURRENCE: Final = 0  # occurrence_id of an event on an alarm with no open occurrence


class AlarmRequestError(Refused):
    """An operator request was refused. `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


@dataclass(slots=True)
class AlarmEvent:
    event_id: int | None
    occurrence_id: int
    alarm: str
    production_line_id: str | None
    tag: str | None
    condition: str
    severity: str
    event: str
    state: str  # wire state after the event
    message: str
    value: float | None
    limit: float | None
    at: float
    raised_at: float | None = None
    cleared_at: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    comment: str | None = None  # the occurrence's acknowledgement comment
    user: str | None = None  # who caused this event (None: the engine itself)
    note: str | None = None  # comment given with this event's operator action
    shelved_until: float | None = None
    shelved_by: str | None = None
    shelve_comment: str | None = None
    alarm_state: str = "normal"  # ISA state underneath shelving/suppression
    # Designed suppression in force: the condition suppressing this alarm (an alarm name,
    # e.g. device.plc.comms, or a line state condition, e.g. line1.state.stopped).
    suppressed_by: str | None = None
    first_out: bool = False  # this occurrence opened a burst on its line
    # The value the occurrence was raised at: carried unchanged by every later event of the
    # occurrence (`value` is the value at this event, e.g. at the clear).
    raised_value: float | None = None
    # Cluster: the ingest node that recorded it, and whether it reached the cluster's record
    # after events that happened later (recorded by a node cut off from the bus, forwarded
    # when it could reach it again): history only, never the alarm's current state.
    node: str | None = None
    late: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The PROTOCOL `Alarm` object plus `event_id`, `event` and extension fields."""
        return {
            "id": self.occurrence_id,
            "alarm": self.alarm,
            "production_line_id": self.production_line_id,
            "tag": self.tag,
            "condition": self.condition,
            "severity": self.severity,
            "message": self.message,
            "value": self.value,
            "limit": self.limit,
            "state": self.state,
            "raised_at": iso_or_none(self.raised_at),
            "cleared_at": iso_or_none(self.cleared_at),
            "acked_at": iso_or_none(self.acked_at),
            "acked_by": self.acked_by,
            "comment": self.comment,
            "event_id": self.event_id,
            "event": self.event,
            "at": iso_ms(self.at),
            "user": self.user,
            "note": self.note,
            "alarm_state": self.alarm_state,
            "shelved_until": iso_or_none(self.shelved_until),
            "shelved_by": self.shelved_by,
            "shelve_comment": self.shelve_comment,
            "suppressed_by": self.suppressed_by,
            "first_out": self.first_out,
            "raised_value": self.raised_value,
            "priority": PRIORITY.get(self.severity, 4),
            "node": self.node,
            "late": self.late,
        }

    def to_record(self) -> dict[str, Any]:
        """Every field, times as epoch floats: the journal's storage form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AlarmEvent:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})
