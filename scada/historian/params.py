"""Query-string parsing for /api/history: every refusal names its parameter."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from scada.core.timefmt import TimeParameterError, time_param

MAX_TAGS = 32
MAX_SPAN_DAYS = 3650 * 1.1  # a little beyond the longest default retention
FUTURE_SLACK_MS = 86_400_000
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class BadParameter(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class HistoryRequest:
    tags: list[str]
    from_ms: int
    to_ms: int
    points: int
    format: str


def parse_instant(name: str, text: str, now_ms: int) -> int:
    text = text.strip()
    if text == "now":
        return now_ms
    m = _RELATIVE.match(text)
    if m:
        return now_ms - round(float(m.group(1)) * _UNIT_MS[m.group(2)])
    try:
        instant = time_param(name, text)
    except TimeParameterError:
        raise BadParameter(
            name, f"{name} must be ISO 8601, `now` or relative like -15m, -8h, -7d (1970-9999)"
        ) from None
    if instant is None:
        raise BadParameter(name, f"{name} is empty")
    return round(instant * 1000)


def parse_request(
    query: dict[str, str], *, max_points: int, now_ms: int | None = None
) -> HistoryRequest:
    now = round(time.time() * 1000) if now_ms is None else now_ms
    raw_tags = query.get("tags", "")
    tags = [t.strip() for t in raw_tags.split(",") if t.strip()]
    if not tags:
        raise BadParameter("tags", "tags is required: a comma list like line1.diameter")
    if len(tags) > MAX_TAGS:
        raise BadParameter("tags", f"at most {MAX_TAGS} tags per request")
    if len(set(tags)) != len(tags):
        raise BadParameter("tags", "a tag is listed twice")
    from_ms = parse_instant("from", query.get("from", "-1h"), now)
    to_ms = parse_instant("to", query.get("to", "now"), now)
    if from_ms >= to_ms:
        raise BadParameter("from", "from must be before to")
    if from_ms < 0:
        raise BadParameter("from", "from is before 1970")
    if to_ms > now + FUTURE_SLACK_MS:
        raise BadParameter("to", "to is more than a day in the future")
    if to_ms - from_ms > MAX_SPAN_DAYS * 86_400_000:
        raise BadParameter("from", f"the range is longer than {MAX_SPAN_DAYS:g} days")
    raw_points = query.get("points", "1000")
    try:
        points = int(raw_points)
    except ValueError:
        raise BadParameter("points", "points must be an integer") from None
    if not 1 <= points <= max_points:
        raise BadParameter("points", f"points must be between 1 and {max_points}")
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadParameter("format", "format must be json or csv")
    return HistoryRequest(tags, from_ms, to_ms, points, fmt)
