"""Alarm events: the model lives in `scada.core.alarmevent` (the gateway role reads alarm
events from the bus without importing the alarm engine); re-exported here for the engine."""

from scada.core.alarmevent import (
    ACTIVE_STATES,
    EVENT_KINDS,
    ISA_STATES,
    NO_OCCURRENCE,
    PRIORITY,
    SEVERITY_RANK,
    WIRE_STATES,
    AlarmEvent,
    AlarmRequestError,
    Condition,
    EventKind,
    IsaState,
    WireState,
)
from scada.core.timefmt import iso_ms, iso_or_none

__all__ = [
    "ACTIVE_STATES",
    "EVENT_KINDS",
    "ISA_STATES",
    "NO_OCCURRENCE",
    "PRIORITY",
    "SEVERITY_RANK",
    "WIRE_STATES",
    "AlarmEvent",
    "AlarmRequestError",
    "Condition",
    "EventKind",
    "IsaState",
    "WireState",
    "iso_ms",
    "iso_or_none",
]
