"""Scenario files: faults scheduled over simulated time.

```toml
[[events]]
at = 30            # seconds after the simulator starts
line = "3"
kind = "diameter_drift"
rate = 0.01
duration = 60      # optional: the fault clears itself
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from scada.core.errors import ConfigError, FaultError
from simulators.faults import FaultRequest, parse_fault


@dataclass(frozen=True)
class ScheduledFault:
    at: float
    request: FaultRequest


def load_scenario(path: str | Path, line_ids: list[str]) -> list[ScheduledFault]:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text("utf-8"))
    except OSError as err:
        raise ConfigError(str(p), [("<file>", f"cannot read: {err.strerror or err}")]) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(p), [("<toml>", str(err))]) from err
    return parse_scenario(raw, line_ids, source=str(p))


def parse_scenario(
    raw: dict[str, object], line_ids: list[str], *, source: str
) -> list[ScheduledFault]:
    problems: list[tuple[str, str]] = []
    unknown = set(raw) - {"events", "description"}
    problems += [(key, "unknown key") for key in sorted(unknown)]
    events = raw.get("events", [])
    if not isinstance(events, list):
        raise ConfigError(source, [("events", "must be an array of tables [[events]]")])
    out: list[ScheduledFault] = []
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            problems.append((f"events[{i}]", "must be a table"))
            continue
        body = dict(event)
        at = body.pop("at", None)
        if not isinstance(at, int | float) or isinstance(at, bool) or at < 0:
            problems.append((f"events[{i}].at", "must be a number of seconds >= 0"))
            continue
        try:
            request = parse_fault(body)
        except FaultError as err:
            problems.append((f"events[{i}]", str(err)))
            continue
        if request.line is not None and request.line not in line_ids:
            problems.append((f"events[{i}].line", f"no line with id {request.line!r}"))
            continue
        out.append(ScheduledFault(float(at), request))
    if problems:
        raise ConfigError(source, problems)
    return sorted(out, key=lambda s: s.at)
