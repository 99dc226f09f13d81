"""Small read-only and audit endpoints for the browser console (docs/console.md)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scada.auth.identify import requires

MAX_BODY = 4096


async def console_settings(request: Request) -> Response:
    config = request.app.state.config
    stale = max((line.stale_after for line in config.lines), default=1.0)
    return JSONResponse(
        {
            "anonymous_sound": config.console.anonymous_sound,
            "no_data_after": config.console.no_data_after or stale,
            # Severities whose acknowledgement needs a comment: the console asks before submit.
            "require_comment": list(config.alarms.require_comment),
        }
    )


async def devices(request: Request) -> Response:
    """Connection state per device (connected, last error, since when) for the overview."""
    runtime = request.app.state.runtime
    return JSONResponse({"devices": [p.status.as_dict() for p in runtime.pollers]})


async def silence(request: Request) -> Response:
    """A console silenced its horn: one audit record (who, where, which alarms)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"ok": False, "error": "too_large"}, status_code=413)
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return JSONResponse({"ok": False, "error": "invalid_json"}, status_code=400)
    if not isinstance(data, dict):
        return JSONResponse({"ok": False, "error": "invalid_json"}, status_code=400)
    console = str(data.get("console", ""))[:64] or "unnamed"
    alarms = (
        [str(a)[:200] for a in data.get("alarms", [])][:50]
        if isinstance(data.get("alarms"), list)
        else []
    )
    detail = ", ".join(alarms) if alarms else "no alarm sounding"
    await request.app.state.auditor.request(
        request, "horn_silence", f"console {console}", "ok", detail
    )
    return JSONResponse({"ok": True})


routes = [
    Route("/api/console", requires("viewer", console_settings)),
    Route("/api/devices", requires("viewer", devices)),
    Route(
        "/api/console/silence",
        requires("viewer", silence, action="horn_silence"),
        methods=["POST"],
    ),
]
