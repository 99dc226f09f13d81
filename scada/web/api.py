"""REST endpoints: lines, history, simulator faults, health, readiness and metrics."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from scada.auth.identify import audit_request, audited, requires
from scada.core.errors import FaultError
from scada.plant.runtime import Runtime
from scada.plant.trendring import downsample
from simulators.faults import parse_fault


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def problem(status: int, error: str, message: str) -> OrjsonResponse:
    return OrjsonResponse({"ok": False, "error": error, "message": message}, status_code=status)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _line_or_404(request: Request) -> str | Response:
    line_id = request.path_params["line_id"]
    if line_id not in runtime_of(request).schema.line_ids:
        return problem(404, "unknown_line", f"no line with id {line_id!r}")
    return str(line_id)


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
    line_id = _line_or_404(request)
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


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return value


async def line_history(request: Request) -> Response:
    line_id = _line_or_404(request)
    if isinstance(line_id, Response):
        return line_id
    rt = runtime_of(request)
    historian = getattr(request.app.state, "historian", None)
    if historian is not None:
        from scada.web.history import line_history as from_historian

        return await from_historian(request, historian, line_id)
    try:
        seconds = _int_param(request, "seconds", 300, 1, rt.config.server.history_seconds)
        points = _int_param(request, "points", 600, 1, 5000)
    except ValueError as err:
        return problem(400, "invalid_parameter", str(err))
    sl = rt.schema.line_slices[line_id]
    t1 = time.time()
    t0 = t1 - seconds
    times, values = rt.history.window(t0, sl)
    ds = downsample(times, values, t0, t1, points)
    refs = rt.schema.refs[sl]
    series = {
        ref.name: {
            "min": _clean(ds.minimum[:, j], ref.config.decimals),
            "max": _clean(ds.maximum[:, j], ref.config.decimals),
            "mean": _clean(ds.mean[:, j], ref.config.decimals),
        }
        for j, ref in enumerate(refs)
    }
    return OrjsonResponse(
        {
            "line": line_id,
            "from": t0,
            "to": t1,
            "seconds": seconds,
            "points": points,
            "samples": len(times),
            "t": [round(t * 1000) for t in ds.bucket_times.tolist()],
            "series": series,
        }
    )


def _clean(column: Any, decimals: int) -> list[float | None]:
    return [None if math.isnan(v) else round(v, decimals) for v in column.tolist()]


# -- simulator faults ------------------------------------------------------------------------


MAX_FAULT_BODY = 4096  # a fault request is a handful of keys


def _plant(request: Request) -> Any:
    return runtime_of(request).plant


async def list_faults(request: Request) -> Response:
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    return OrjsonResponse({"faults": [f.describe(plant.time) for f in plant.faults.active()]})


async def inject_fault(request: Request) -> Response:
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FAULT_BODY:
            return problem(
                413, "body_too_large", f"a fault request is at most {MAX_FAULT_BODY} bytes"
            )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        return problem(400, "invalid_json", f"body is not JSON: {err}")
    try:
        fault = plant.inject(parse_fault(body))
    except FaultError as err:
        return problem(400, "invalid_fault", str(err))
    await audit_request(
        request,
        "fault_inject",
        f"line {fault.request.line}: {fault.request.kind}",
        "ok",
        f"fault {fault.id}",
    )
    return OrjsonResponse({"id": fault.id, **fault.describe(plant.time)}, status_code=201)


async def clear_fault(request: Request) -> Response:
    plant = _plant(request)
    if plant is None:
        return problem(404, "no_simulator", "this plant has no simulated device")
    try:
        fault = plant.clear(int(request.path_params["fault_id"]))
    except (FaultError, ValueError) as err:
        return problem(404, "unknown_fault", str(err))
    await audit_request(request, "fault_clear", f"fault {fault.id}", "ok")
    return OrjsonResponse({"id": fault.id, "cleared": True})


# -- config reload ---------------------------------------------------------------------------


async def reload_config(request: Request) -> Response:
    from scada.plant.reload import ReloadRefused, reload

    try:
        result = await reload(runtime_of(request), request.app.state.config_path)
    except ReloadRefused as err:
        await audit_request(request, "config_reload", "config", err.error, str(err))
        return OrjsonResponse(
            {"ok": False, "error": err.error, "message": str(err), "problems": err.problems},
            status_code=err.status,
        )
    request.app.state.config = runtime_of(request).config
    detail = f"{len(result['changed_tags'])} tag(s) changed"
    await audit_request(request, "config_reload", "config", "ok", detail)
    return OrjsonResponse({"ok": True, **result})


# -- health ----------------------------------------------------------------------------------


async def health(request: Request) -> Response:
    return OrjsonResponse({"status": "alive"})


def readiness(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    """(ready, the /ready body): ticking and every device healthy."""
    devices = [p.report() for p in rt.pollers]
    ok = rt.ticking() and all(p.status.healthy for p in rt.pollers)
    # A degraded historian is reported, not fatal: the live stream and alarms go on.
    historian = rt.historian.status() if rt.historian is not None else None
    return ok, {"ready": ok, "ticking": rt.ticking(), "devices": devices, "historian": historian}


async def ready(request: Request) -> Response:
    ok, body = readiness(runtime_of(request))
    return OrjsonResponse(body, status_code=200 if ok else 503)


async def websocket_health(request: Request) -> Response:
    from scada.web.metrics import fanout_report

    rt = runtime_of(request)
    return OrjsonResponse(
        {
            **fanout_report(rt.broadcaster),
            "batch_interval_ms": rt.config.server.batch_interval_ms,
            "devices": [p.report() for p in rt.pollers],
        }
    )


async def metrics(request: Request) -> Response:
    from scada.web.metrics import render_metrics

    return PlainTextResponse(
        render_metrics(runtime_of(request)), media_type="text/plain; version=0.0.4"
    )


routes = [
    Route("/api/lines", requires("viewer", list_lines)),
    Route("/api/lines/{line_id}", requires("viewer", get_line)),
    Route("/api/lines/{line_id}/history", requires("viewer", line_history)),
    Route("/api/simulator/faults", requires("viewer", list_faults), methods=["GET"]),
    Route(
        "/api/simulator/faults",
        requires("engineer", audited("fault_inject", inject_fault), action="fault_inject"),
        methods=["POST"],
    ),
    Route(
        "/api/simulator/faults/{fault_id}",
        requires("engineer", audited("fault_clear", clear_fault), action="fault_clear"),
        methods=["DELETE"],
    ),
    Route(
        "/api/config/reload",
        requires("engineer", audited("config_reload", reload_config), action="config_reload"),
        methods=["POST"],
    ),
    # Liveness and readiness stay open for load balancers and orchestrators.
    Route("/health", health),
    Route("/ready", ready),
    Route("/health/websocket", requires("viewer", websocket_health)),
    Route("/metrics", requires("viewer", metrics)),
]
