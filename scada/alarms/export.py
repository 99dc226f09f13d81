"""Alarm history export over a time range, as CSV or JSON lines, streamed page by page.

Each page is read and encoded in a heavy-read worker (scada.core.offload) on a read connection of
its own, so an export of a year neither holds the journal's writer, nor grows memory beyond
one page, nor spends the server's CPU on CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import orjson

from scada.alarms.model import AlarmEvent

PAGE: Final = 2000
FORMATS: Final = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
COLUMNS: Final = (
    "event_id", "at", "alarm", "production_line_id", "tag", "condition", "severity",
    "priority", "event", "state", "alarm_state", "id", "value", "limit", "raised_at",
    "cleared_at", "acked_at", "acked_by", "user", "note", "comment", "suppressed_by",
    "first_out", "shelved_until", "shelved_by", "shelve_comment", "message",
)  # fmt: skip
# Text a spreadsheet would run as a formula: prefixed with ' (OWASP CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


PageFetch = Callable[[int, int], Awaitable[tuple[bytes, int, int]]]


async def stream(fetch: PageFetch, fmt: str) -> AsyncIterator[bytes]:
    """The export, page by page: `fetch(after_id, PAGE)` reads and encodes one page off the
    server process (scada.alarms.reads.export_page) and answers (bytes, events, last id)."""
    if fmt == "csv":
        yield _csv_row(COLUMNS)
    after = 0
    while True:
        body, count, last = await fetch(after, PAGE)
        if count:
            yield body
        if count < PAGE:
            return
        after = last


def encode(page: list[AlarmEvent], fmt: str) -> bytes:
    if fmt == "csv":
        return b"".join(_csv_row(_cells(e.to_wire())) for e in page)
    return b"".join(orjson.dumps(e.to_wire()) + b"\n" for e in page)


def _cells(wire: dict[str, Any]) -> list[object]:
    return [_safe(wire.get(c)) for c in COLUMNS]


def _safe(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_row(cells: object) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)  # type: ignore[arg-type]
    return buf.getvalue().encode()
