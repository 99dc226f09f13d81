"""/api/lines: each line's tags and latest sample, and its recent trend."""

from __future__ import annotations

import asyncio
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scada.auth.identify import requires
from scada.plant.trendring import downsample
from scada.web.history import line_history as from_historian
from scada.web.responses import (
    OrjsonResponse,
    clean_column,
    int_param,
    line_or_404,
    problem,
    runtime_of,
)


async def list_lines(request: Request) -> Response:
    rt = runtime_of(request)
    lines = []
    for line, sample in zip(rt.config.lines, rt.line_samples(), strict=True):
        tags = {
            name: {
                "unit": tag.unit,
                "description": tag.description,
                "group": tag.group,
                "setpoint": tag.setpoint,
                "tolerance": tag.tolerance,
                "span": tag.span,
                "decimals": tag.decimals,
                "states": tag.states,
                "limits": {n: lim.value for n, lim in tag.limits.items()} if tag.limits else {},
            }
            for name, tag in line.tags.items()
        }
        lines.append(
            {
                "id": line.id,
                "name": line.title,
                "stale_after": line.stale_after,
                "tags": tags,
                "latest": sample,
            }
        )
    return OrjsonResponse({"lines": lines})


async def get_line(request: Request) -> Response:
    line_id = line_or_404(request)
    if isinstance(line_id, Response):
        return line_id
    rt = runtime_of(request)
    sample = rt.line_samples([line_id])[0]
    sl = rt.schema.line_slices[line_id]
    reasons = {
        rt.schema.refs[i].name: r for i, r in rt.store.reasons.items() if sl.start <= i < sl.stop
    }
    return OrjsonResponse(
        {"id": line_id, "name": rt.config.line(line_id).title, "latest": sample, "reasons": reasons}
    )


async def line_history(request: Request) -> Response:
    line_id = line_or_404(request)
    if isinstance(line_id, Response):
        return line_id
    rt = runtime_of(request)
    historian = getattr(request.app.state, "historian", None)
    if historian is not None:
        return await from_historian(request, historian, line_id)
    try:
        seconds = int_param(request, "seconds", 300, 1, rt.config.server.history_seconds)
        points = int_param(request, "points", 600, 1, 5000)
    except ValueError as err:
        return problem(400, "invalid_parameter", str(err))
    sl = rt.schema.line_slices[line_id]
    t1 = time.time()
    t0 = t1 - seconds
    times, values = rt.history.window(t0, sl)  # a copy, taken between two ticks
    refs = rt.schema.refs[sl]

    def encode() -> bytes:  # downsampled and encoded in a thread, off the event loop
        ds = downsample(times, values, t0, t1, points)
        series = {
            ref.name: {
                "min": clean_column(ds.minimum[:, j], ref.config.decimals),
                "max": clean_column(ds.maximum[:, j], ref.config.decimals),
                "mean": clean_column(ds.mean[:, j], ref.config.decimals),
            }
            for j, ref in enumerate(refs)
        }
        doc = {
            "line": line_id,
            "from": t0,
            "to": t1,
            "seconds": seconds,
            "points": points,
            "samples": len(times),
            "t": [round(t * 1000) for t in ds.bucket_times.tolist()],
            "series": series,
        }
        return orjson.dumps(doc)

    return Response(await asyncio.to_thread(encode), media_type="application/json")


routes = [
    Route("/api/lines", requires("viewer", list_lines)),
    Route("/api/lines/{line_id}", requires("viewer", get_line)),
    Route("/api/lines/{line_id}/history", requires("viewer", line_history)),
]
