"""Liveness, readiness, the WebSocket fan-out's health and /metrics."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from scada.auth.identify import requires
from scada.plant.runtime import Runtime
from scada.web.responses import OrjsonResponse, runtime_of


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
            **fanout_report(request.app.state.broadcaster),
            "batch_interval_ms": rt.config.server.batch_interval_ms,
            "devices": [p.report() for p in rt.pollers],
        }
    )


async def metrics(request: Request) -> Response:
    from scada.web.metrics import render_metrics

    return PlainTextResponse(
        render_metrics(runtime_of(request), request.app.state.broadcaster),
        media_type="text/plain; version=0.0.4",
    )


routes = [
    # Liveness and readiness stay open for load balancers and orchestrators.
    Route("/health", health),
    Route("/ready", ready),
    Route("/health/websocket", requires("viewer", websocket_health)),
    Route("/metrics", requires("viewer", metrics)),
]
