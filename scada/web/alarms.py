"""REST endpoints for alarms: current list, history, KPIs and acknowledgement.

The app provides `app.state.alarms` (an AlarmService), `app.state.config` (PlantConfig) and
optionally `app.state.announce_alarms(events)` to push committed events to WebSocket clients.
"""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scada.alarms import export as export_mod
from scada.alarms.model import SEVERITY_RANK, AlarmRequestError
from scada.alarms.service import AlarmService
from scada.core.timefmt import TimeParameterError, time_param

STATUS = {
    "already_acknowledged": 409,
    "unknown_alarm": 404,
    "comment_required": 400,
    "invalid": 400,
    "journal_unavailable": 503,
    "not_active": 503,  # a cluster node that lost its lease: the load balancer tries the other
}
MAX_BULK_ACK = 1000  # as on the WebSocket
DEFAULT_EXPORT_SECONDS = 30 * 86_400.0
MAX_HISTORY_LIMIT = 1000
MAX_KPI_HOURS = 366 * 24  # KPIs aggregate in SQL: memory does not grow with the window
DEFAULT_KPI_HOURS = "720"  # 30 days, as EEMUA 191 assesses


class BadParam(ValueError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"bad query parameter {name!r}: {why}")


def _service(request: Request) -> AlarmService:
    service: AlarmService = request.app.state.alarms
    return service


def _user(request: Request) -> str:
    user = getattr(request.state, "user", None)
    # `actor`: anonymous clients act as alarms.default_user (the audit still says anonymous).
    name = getattr(user, "actor", None) or getattr(user, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(request.app.state.config.alarms.default_user)


def _bad(message: str, code: str = "invalid", status: int = 400) -> JSONResponse:
    return JSONResponse({"ok": False, "error": code, "message": message}, status_code=status)


def parse_time(name: str, text: str | None) -> float | None:
    """scada.core.timefmt.time_param, refused as this module's BadParam."""
    try:
        return time_param(name, text)
    except TimeParameterError as err:
        raise BadParam(name, str(err).split(": ", 1)[1]) from None


def first_time(q: Any, *names: str) -> float | None:
    """The first of `names` given (`since` or its alias `from`, as the export names it)."""
    for name in names:
        if q.get(name) not in (None, ""):
            return parse_time(name, q.get(name))
    return None


def parse_int(name: str, text: str | None, default: int | None, lo: int, hi: int) -> int | None:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as err:
        raise BadParam(name, "expected an integer") from err
    if not lo <= value <= hi:
        raise BadParam(name, f"must be between {lo} and {hi}")
    return value


def sort_alarms(alarms: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """`time`: newest raise first. `severity`: most severe first, then newest."""
    by_time = sorted(alarms, key=lambda a: (a["raised_at"] or "", a["id"]), reverse=True)
    if key == "time":
        return by_time
    return sorted(by_time, key=lambda a: -SEVERITY_RANK.get(a["severity"], -1))


async def list_current(request: Request) -> JSONResponse:
    sort = request.query_params.get("sort", "severity")
    if sort not in ("severity", "time"):
        return _bad("bad query parameter 'sort': expected severity or time")
    alarms = sort_alarms(_service(request).current(), sort)
    return JSONResponse({"alarms": alarms, "alarm_cursor": _service(request).cursor()})


async def history(request: Request) -> Response:
    q = request.query_params
    try:
        since = first_time(q, "since", "from")
        until = first_time(q, "until", "to")
        limit = parse_int("limit", q.get("limit"), 100, 1, MAX_HISTORY_LIMIT) or 100
        before = parse_int("before", q.get("before"), None, 1, 2**62)
    except BadParam as err:
        return _bad(str(err))
    body = await _service(request).history_body(
        since=since,
        until=until,
        line=q.get("line") or None,
        alarm=q.get("alarm") or None,
        limit=limit,
        before=before,
    )
    return Response(body, media_type="application/json")


async def kpi(request: Request) -> Response:
    text = request.query_params.get("hours", DEFAULT_KPI_HOURS)
    try:
        hours = float(text)
    except ValueError:
        return _bad("bad query parameter 'hours': expected a number")
    if not (math.isfinite(hours) and 0 < hours <= MAX_KPI_HOURS):
        return _bad(f"bad query parameter 'hours': must be above 0 and at most {MAX_KPI_HOURS}")
    return Response(await _service(request).kpi_body(hours), media_type="application/json")


async def acknowledge(request: Request) -> JSONResponse:
    try:
        occurrence_id = int(request.path_params["occurrence_id"])
    except ValueError:
        return _bad("occurrence_id must be an integer")
    comment = await _comment(request)
    if comment is None:
        return _bad('body must be JSON like {"comment": "..."}')
    if len(comment) > MAX_COMMENT:
        return _bad(f"comment is over {MAX_COMMENT} characters")
    auditor = getattr(request.app.state, "auditor", None)
    try:
        events = await _service(request).ack(occurrence_id, _user(request), comment)
    except AlarmRequestError as err:
        if auditor is not None:
            await auditor.request(request, "ack", str(occurrence_id), err.code, err.message)
        return _bad(err.message, err.code, STATUS.get(err.code, 400))
    if auditor is not None:
        await auditor.request(request, "ack", str(occurrence_id), "ok", comment)
    await _announce(request, events)
    return JSONResponse({"ok": True, "events": events})


MAX_COMMENT = 2000  # as on the WebSocket: comments travel in every snapshot
MAX_BODY = 16_384


async def _json_body(request: Request) -> dict[str, Any] | None:
    """The JSON object of the body ({} when empty); None when malformed or too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None
    return data if isinstance(data, dict) else None


async def _comment(request: Request) -> str | None:
    """The `comment` of the JSON body; an empty body means no comment. None: malformed."""
    data = await _json_body(request)
    if data is None:
        return None
    comment = data.get("comment", "")
    return comment if isinstance(comment, str) else None


async def bulk_acknowledge(request: Request) -> JSONResponse:
    """POST {"alarm_ids": [...], "comment": "..."}: each acknowledged, journaled, audited
    and answered on its own, as the WebSocket `ack` with `alarm_ids`."""
    data = await _json_body(request)
    ids = None if data is None else data.get("alarm_ids")
    comment = None if data is None else data.get("comment", "")
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= MAX_BULK_ACK
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        or not isinstance(comment, str)
    ):
        return _bad(
            f'body must be JSON like {{"alarm_ids": [1, 2], "comment": "..."}}'
            f" with 1 to {MAX_BULK_ACK} integer ids"
        )
    if len(comment) > MAX_COMMENT:
        return _bad(f"comment is over {MAX_COMMENT} characters")
    results, events = await _service(request).ack_many(ids, _user(request), comment)
    auditor = getattr(request.app.state, "auditor", None)
    if auditor is not None:
        for r in results:
            result, detail = ("ok", comment) if r["ok"] else (r["error"], r["message"])
            await auditor.request(request, "ack", str(r["alarm_id"]), result, detail)
    await _announce(request, events)
    return JSONResponse({"results": results})


async def _announce(request: Request, events: list[dict[str, Any]]) -> None:
    announce = getattr(request.app.state, "announce_alarms", None)
    if announce is not None and events:
        result = announce(events)
        if inspect.isawaitable(result):
            await result


async def export(request: Request) -> StreamingResponse | JSONResponse:
    """GET /api/alarms/export?from=&to=&format=csv|jsonl: every event in the range, oldest
    first (from/to: ISO 8601 or epoch seconds; default the last 30 days up to now)."""
    q = request.query_params
    fmt = q.get("format", "csv")
    if fmt not in export_mod.FORMATS:
        return _bad("bad query parameter 'format': expected csv or jsonl")
    try:
        until = parse_time("to", q.get("to"))
        since = parse_time("from", q.get("from"))
    except BadParam as err:
        return _bad(str(err))
    service = _service(request)
    until = service.now() if until is None else until
    since = until - DEFAULT_EXPORT_SECONDS if since is None else since
    if since > until:
        return _bad("bad query parameter 'from': after 'to'")
    name = f"alarms-{int(since)}-{int(until)}.{fmt}"
    return StreamingResponse(
        export_mod.stream(
            lambda after, limit: service.export_page(since, until, after, limit, fmt), fmt
        ),
        media_type=export_mod.FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


routes = [
    Route("/api/alarms", list_current, methods=["GET"]),
    Route("/api/alarms/history", history, methods=["GET"]),
    Route("/api/alarms/kpi", kpi, methods=["GET"]),
    Route("/api/alarms/export", export, methods=["GET"]),
    Route("/api/alarms/ack", bulk_acknowledge, methods=["POST"]),
    Route("/api/alarms/{occurrence_id}/ack", acknowledge, methods=["POST"]),
]
