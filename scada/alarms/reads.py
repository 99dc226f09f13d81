"""The heavy alarm reads as module-level functions on the journal's path.

They run in a heavy-read worker process (scada.core.offload), or in a thread when there is no
pool, and return what the route sends: KPI figures, the wire dicts of one history page, the
encoded bytes of one export page. Only that compact result crosses back to the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from scada.alarms import export, kpi
from scada.alarms.flood import FloodDetector
from scada.alarms.journal import query_history, query_range, read_connection
from scada.alarms.model import AlarmEvent


def kpi_figures(
    path: Path,
    start: float,
    end: float,
    current: Sequence[AlarmEvent],
    info: Mapping[str, kpi.AlarmInfo],
    flood: FloodDetector,
) -> dict[str, object]:
    with read_connection(path) as db:
        return kpi.compute(db, start=start, end=end, current=current, info=info, flood=flood)


def history_page(
    path: Path,
    since: float | None,
    until: float | None,
    line: str | None,
    alarm: str | None,
    limit: int,
    before: int | None,
) -> list[dict[str, Any]]:
    with read_connection(path) as db:
        events = query_history(db, since, until, line, alarm, limit, before)
    return [e.to_wire() for e in events]


def kpi_body(
    path: Path,
    start: float,
    end: float,
    current: Sequence[AlarmEvent],
    info: Mapping[str, kpi.AlarmInfo],
    flood: FloodDetector,
) -> bytes:
    """The KPI figures as the route sends them: JSON bytes, encoded in the worker."""
    return orjson.dumps(kpi_figures(path, start, end, current, info, flood))


def history_body(
    path: Path,
    since: float | None,
    until: float | None,
    line: str | None,
    alarm: str | None,
    limit: int,
    before: int | None,
) -> bytes:
    """One history page as the route sends it: `{"events", "next_before"}` JSON bytes, encoded
    in the worker (a 1,000-event page is ~1 MB of JSON: never built on the event loop)."""
    events = history_page(path, since, until, line, alarm, limit, before)
    next_before = events[-1]["event_id"] if len(events) == limit else None
    return orjson.dumps({"events": events, "next_before": next_before})


def export_page(
    path: Path, since: float, until: float, after_id: int, limit: int, fmt: str
) -> tuple[bytes, int, int]:
    """One page of an export, encoded: (bytes, events in it, id of its last event)."""
    with read_connection(path) as db:
        page = query_range(db, since, until, after_id, limit)
    last = (page[-1].event_id or after_id) if page else after_id
    return export.encode(page, fmt), len(page), last
