"""Helpers for the alarm tests (imported explicitly; not a pytest conftest)."""

from __future__ import annotations

from typing import Any

import numpy as np

from scada.alarms.engine import AlarmEngine
from scada.alarms.model import AlarmEvent
from scada.core.config import PlantConfig, config_from_dict
from scada.core.tags import Quality, TagSchema

T0 = 1_795_341_600.0  # 2026-11-22T10:00:00Z


def plant(tags: dict[str, dict[str, Any]], *, lines: int = 1, **alarms: Any) -> PlantConfig:
    """A plant of `lines` identical lines with the given tags."""
    raw: dict[str, Any] = {
        "alarms": {"require_comment": [], **alarms},
        "line_defaults": {"tags": tags},
        "lines": [{"id": str(i + 1)} for i in range(lines)],
    }
    return config_from_dict(raw)


def diameter_plant(**limits: Any) -> PlantConfig:
    spec = {"hihi": 12.4, "hi": 12.2, "lo": 11.8, "lolo": 11.6, **limits}
    return plant(
        {"diameter": {"setpoint": 12.0, "span": [0.0, 30.0], "limits": spec, "quality_delay": 2.0}}
    )


class Rig:
    """An engine plus the tag arrays it reads, driven by a fake clock."""

    def __init__(self, config: PlantConfig, devices: tuple[str, ...] = ("sim",)) -> None:
        self.config = config
        self.schema = TagSchema(config.lines)
        self.engine = AlarmEngine(config, self.schema, list(devices))
        self.values = np.zeros(self.schema.size)
        for ref in self.schema.refs:
            self.values[ref.index] = ref.config.setpoint or 0.0
        self.quality = np.full(self.schema.size, Quality.GOOD, dtype=np.uint8)
        self.devices = dict.fromkeys(devices, True)
        self.now = T0
        self.log: list[AlarmEvent] = []

    def set(self, tag: str, value: float, line: str = "1", quality: Quality | None = None) -> None:
        i = self.schema.index(line, tag)
        self.values[i] = value
        if quality is not None:
            self.quality[i] = quality

    def tick(self, dt: float = 0.1) -> list[AlarmEvent]:
        self.now = round(self.now + dt, 6)
        events = self.engine.evaluate(self.now, self.values, self.quality, self.devices)
        self.log.extend(events)
        return events

    def run(self, seconds: float, dt: float = 0.1) -> list[AlarmEvent]:
        out: list[AlarmEvent] = []
        for _ in range(round(seconds / dt)):
            out.extend(self.tick(dt))
        return out

    def ack(self, occurrence: int, comment: str = "seen", user: str = "ann") -> list[AlarmEvent]:
        events = self.acknowledge(occurrence, user, comment, self.now)
        self.log.extend(events)
        return events

    # Operator requests as the service makes them: planned, then applied (once committed).
    def acknowledge(self, occurrence: int, user: str, comment: str, now: float) -> list[AlarmEvent]:
        return self._applied(self.engine.acknowledge(occurrence, user, comment, now))

    def shelve(
        self, alarm: str, minutes: float, user: str, comment: str, now: float
    ) -> list[AlarmEvent]:
        return self._applied(self.engine.shelve(alarm, minutes, user, comment, now))

    def unshelve(self, alarm: str, user: str, comment: str, now: float) -> list[AlarmEvent]:
        return self._applied(self.engine.unshelve(alarm, user, comment, now))

    def _applied(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        self.engine.apply(events)
        return events

    def state(self, alarm: str) -> str:
        return self.engine.state_of(alarm).state


def brief(events: list[AlarmEvent]) -> list[tuple[str, str, str]]:
    return [(e.alarm, e.event, e.state) for e in events]
