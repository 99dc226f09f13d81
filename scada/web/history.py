"""GET /api/history (JSON or CSV) and the historian's answer to /api/lines/{id}/history."""

from __future__ import annotations

import csv
import io
import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scada.core.offload import Offload, run_off
from scada.core.timefmt import iso_ms
from scada.historian import reading
from scada.historian.db import open_reader
from scada.historian.params import BadParameter, parse_request
from scada.historian.query import Plan, plain
from scada.historian.service import Historian, UnknownTag
from scada.web.responses import clean_column, int_param

CSV_FIELDS = ("min", "max", "first", "last", "mean")


def _json(content: Any, status: int = 200) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json")


def _bad(parameter: str, message: str) -> Response:
    return _json({"error": message, "parameter": parameter}, 400)


def historian_of(request: Request) -> Historian | None:
    historian: Historian | None = getattr(request.app.state, "historian", None)
    return historian


async def history(request: Request) -> Response:
    historian = historian_of(request)
    if historian is None:
        return _json({"error": "the historian is disabled ([historian] enabled = false)"}, 404)
    try:
        req = parse_request(dict(request.query_params), max_points=historian.settings.max_points)
    except BadParameter as err:
        return _bad(err.parameter, str(err))
    try:
        # Prepared in the historian's reader threads (tag lookup, plan, the writer's open
        # minute: a few hundred rows), then read, bucketed and encoded in the heavy-read
        # worker process: the query's 200-400 ms of Python for 32 tags x 1 h and the
        # megabytes of CSV/JSON never hold the GIL the tick needs (docs/security.md).
        job = await historian.run(historian.prepare, req.tags, req.from_ms, req.to_ms, req.points)
        body = await run_off(offload_of(request), history_body, job, req.format)
    except UnknownTag as err:
        return _bad("tags", str(err))
    except sqlite3.Error as err:
        return _unavailable(err)
    if req.format == "csv":
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="history.csv"'},
        )
    return Response(body, media_type="application/json")


def offload_of(request: Request) -> Offload | None:
    offload: Offload | None = getattr(request.app.state, "offload", None)
    return offload


def history_body(job: reading.Job, fmt: str) -> bytes:
    """The /api/history body, read and encoded (runs in the worker process)."""
    return encode_history(reading.run(job), fmt)


def encode_history(doc: dict[str, Any], fmt: str) -> bytes:
    """A /api/history document as CSV or JSON bytes."""
    if fmt == "csv":
        return to_csv(doc).encode()
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _unavailable(err: Exception) -> Response:
    return _json({"error": f"history cannot be read now: {err}"}, 503)


def csv_header(series: list[dict[str, Any]]) -> list[str]:
    head = ["time", "epoch_ms"]
    for s in series:
        unit = f" [{s['unit']}]" if s["unit"] else ""
        head += [f"{s['tag']}.{f}{unit}" for f in CSV_FIELDS]
        head.append(f"{s['tag']}.quality")
    return head


def to_csv(doc: dict[str, Any]) -> str:
    """One row per time (bucket start or sample), per tag min/max/first/last/mean/quality."""
    series = plain(doc)["series"]
    rows: dict[int, list[Any]] = {}
    width = 6
    for k, s in enumerate(series):
        for i, t in enumerate(s["t"]):
            row = rows.setdefault(t, [""] * (width * len(series)))
            cells = [s[f][i] for f in CSV_FIELDS] + [s["quality"][i]]
            row[k * width : (k + 1) * width] = ["" if c is None else c for c in cells]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(csv_header(series))
    for t in sorted(rows):
        w.writerow(
            [iso_ms(t / 1000), t, *(repr(c) if isinstance(c, float) else c for c in rows[t])]
        )
    return out.getvalue()


async def line_history(request: Request, historian: Historian, line_id: str) -> Response:
    """/api/lines/{id}/history from the historian: min/max/mean per bucket, same shape as ever."""
    max_seconds = int(historian.settings.raw_days * 86_400)
    try:
        seconds = int_param(request, "seconds", 300, 1, max_seconds)
        points = int_param(request, "points", 600, 1, 5000)
    except ValueError as err:
        return JSONResponse(
            {"ok": False, "error": "invalid_parameter", "message": str(err)}, status_code=400
        )
    t1 = time.time()
    t0 = t1 - seconds
    width = seconds * 1000 / points
    tier = "raw" if width < 60_000 else ("1m" if width < 3_600_000 else "1h")
    plan = Plan(tier, math.ceil(width), round(t0 * 1000), points)
    refs = historian.schema.refs[historian.schema.line_slices[line_id]]

    def prepare() -> LineHistoryJob:
        specs = [historian.spec(ref.path) for ref in refs]
        assert all(specs)
        series = historian.series(specs)  # type: ignore[arg-type]
        read = reading.Job(
            historian.path, historian.resolution, plan, plan.start, round(t1 * 1000), series
        )
        meta = {"line": line_id, "from": t0, "to": t1, "seconds": seconds, "points": points}
        decimals = [ref.config.decimals for ref in refs]
        return LineHistoryJob(read, width, [ref.name for ref in refs], decimals, meta)

    try:
        job = await historian.run(prepare)
        body = await run_off(offload_of(request), line_history_body, job)
    except sqlite3.Error as err:
        return _unavailable(err)
    return Response(body, media_type="application/json")


@dataclass(frozen=True)
class LineHistoryJob:
    """/api/lines/{id}/history for the worker process: the line's tags in `read.series`,
    bucketed `width` ms apart from the plan's start."""

    read: reading.Job
    width: float
    names: list[str]
    decimals: list[int]
    meta: dict[str, Any]


def line_history_body(job: LineHistoryJob) -> bytes:
    """The /api/lines/{id}/history body (runs in the worker process)."""
    database = open_reader(job.read.path)
    try:
        out: dict[str, Any] = {}
        t: list[int] = []
        samples = 0
        for s, name, decimals in zip(job.read.series, job.names, job.decimals, strict=True):
            b = reading.buckets(database, s, job.read.plan, job.read.resolution_ms, job.width)
            t = b.t.tolist()
            samples = max(samples, b.samples)
            out[name] = {
                "min": clean_column(b.vmin, decimals),
                "max": clean_column(b.vmax, decimals),
                "mean": clean_column(b.mean, decimals),
            }
    finally:
        database.close()
    return orjson.dumps({**job.meta, "samples": samples, "t": t, "series": out})
