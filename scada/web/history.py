"""GET /api/history (JSON or CSV) and the historian's answer to /api/lines/{id}/history."""

from __future__ import annotations

import csv
import io
import math
import sqlite3
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scada.core.offload import Offload, run_off
from scada.core.timefmt import iso_ms
from scada.historian.params import BadParameter, parse_request
from scada.historian.query import Plan, SeriesSpec, labelled, plain
from scada.historian.service import Historian
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
    specs: list[SeriesSpec] = []
    try:
        for tag in req.tags:
            spec = await historian.run(historian.spec, tag)
            if spec is None:
                return _bad("tags", f"unknown tag {tag!r} (tags are named like line1.diameter)")
            specs.append(spec)
        # Quality as codes, not 320,000 label strings: the doc is pickled to the worker in
        # this process, and pickling those held the GIL the tick needs for 45-66 ms.
        doc = await historian.history(specs, req.from_ms, req.to_ms, req.points, codes=True)
    except sqlite3.Error as err:
        return _unavailable(err)
    # 10,000 rows x 32 tags is megabytes of text: encoded in the heavy-read worker process,
    # never on the event loop that ticks the plant (docs/security.md).
    body = await run_off(offload_of(request), encode_history, doc, req.format)
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


def encode_history(doc: dict[str, Any], fmt: str) -> bytes:
    """The /api/history body: CSV or JSON bytes (runs in the worker process); quality
    codes (`Historian.history(codes=True)`) become labels here."""
    doc = labelled(doc)
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

    def compute() -> bytes:
        out: dict[str, Any] = {}
        t: list[int] = []
        samples = 0
        for ref in refs:
            spec = historian.spec(ref.path)
            assert spec is not None
            b = historian.buckets(spec, plan, width)
            t = b.t.tolist()
            samples = max(samples, b.samples)
            out[ref.name] = {
                "min": clean_column(b.vmin, ref.config.decimals),
                "max": clean_column(b.vmax, ref.config.decimals),
                "mean": clean_column(b.mean, ref.config.decimals),
            }
        doc = {
            "line": line_id,
            "from": t0,
            "to": t1,
            "seconds": seconds,
            "points": points,
            "samples": samples,
            "t": t,
            "series": out,
        }
        return orjson.dumps(doc)  # in the historian's reader thread, with the query

    try:
        body = await historian.run(compute)
    except sqlite3.Error as err:
        return _unavailable(err)
    return Response(body, media_type="application/json")
