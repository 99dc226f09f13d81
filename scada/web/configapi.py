"""/api/config/reload: take a changed config file's limits, setpoints and display settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scada.auth.identify import audit_request, audited, requires
from scada.web.responses import OrjsonResponse, runtime_of


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


routes = [
    Route(
        "/api/config/reload",
        requires("engineer", audited("config_reload", reload_config), action="config_reload"),
        methods=["POST"],
    ),
]
