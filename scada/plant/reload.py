"""Config reload at run time: alarm limits, setpoints and display settings, not structure.

What a running plant can take without a restart: everything inside a tag's table (limits,
deadbands, delays, setpoints, units, decimals), `stale_after`, and the `[alarms]` section but
its journal settings. Lines, tags, devices, `[server]` and `[auth]` are wired into sockets,
drivers and arrays at start; a file that changes them is refused with the list of sections,
and nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.registry import device_problems
from scada.alarms.engine import AlarmEngine
from scada.core.config import PlantConfig, load_config
from scada.core.errors import ConfigError, Refused
from scada.core.tags import TagSchema
from scada.plant.runtime import Runtime


class ReloadRefused(Refused):
    """A reload refused, with the problems found (the one refusal type, plus `problems`)."""

    def __init__(self, status: int, error: str, message: str, problems: list[str]) -> None:
        super().__init__(error, message, status)
        self.error, self.problems = error, problems


def _structure(config: PlantConfig) -> list[tuple[str, list[tuple[str, str, str | None]]]]:
    return [
        (line.id, [(n, t.kind, t.group) for n, t in line.tags.items()]) for line in config.lines
    ]


def restart_needed(old: PlantConfig, new: PlantConfig) -> list[str]:
    """The parts of `new` that differ from `old` and cannot change while running."""
    out = []
    if _structure(old) != _structure(new):
        out.append("lines/tags (ids, tag names, kinds or groups)")
    if [d.model_dump() for d in old.devices] != [d.model_dump() for d in new.devices]:
        out.append("devices")
    for section in ("server", "auth", "simulator", "historian", "notifications"):
        if getattr(old, section) != getattr(new, section):
            out.append(section)
    journal = ("journal_path", "retention_days", "retention_events")
    if any(getattr(old.alarms, k) != getattr(new.alarms, k) for k in journal):
        out.append("alarms journal settings")
    return out


def changed_tags(old: PlantConfig, new: PlantConfig) -> list[str]:
    out = []
    for a, b in zip(old.lines, new.lines, strict=True):
        if a.stale_after != b.stale_after:
            out.append(f"line{a.id}.stale_after")
        out.extend(f"line{a.id}.{name}" for name, tag in a.tags.items() if b.tags[name] != tag)
    return out


async def reload(runtime: Runtime, path: str | Path | None) -> dict[str, Any]:
    """Validate the file and apply what can change live; raises ReloadRefused otherwise."""
    try:
        new = load_config(path)
    except ConfigError as err:
        raise ReloadRefused(
            400, "invalid_config", str(err).splitlines()[0], [f"{p}: {r}" for p, r in err.problems]
        ) from err
    problems = device_problems(new)
    if problems:
        raise ReloadRefused(
            400, "invalid_config", "driver settings are invalid", [f"{p}: {r}" for p, r in problems]
        )
    old = runtime.config
    blocked = restart_needed(old, new)
    if blocked:
        raise ReloadRefused(
            409, "restart_required", "these changes need a restart: " + ", ".join(blocked), blocked
        )
    tags = changed_tags(old, new)
    alarm_settings = old.alarms != new.alarms
    schema = TagSchema(new.lines)  # same positions: the structure is unchanged
    if runtime.alarms is not None:
        engine = AlarmEngine(new, schema, [d.name for d in new.devices])
        await runtime.alarms.reconfigure(engine)
    runtime.apply_config(new, schema)
    return {"changed_tags": tags, "alarm_settings_changed": alarm_settings}
