"""GET /api/notifications: delivery state per target (no secrets: URLs are host only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def notifications(request: Request) -> Response:
    notifier = getattr(request.app.state, "notifier", None)
    if notifier is None:
        return JSONResponse({"enabled": False, "targets": []})
    return JSONResponse(await notifier.snapshot())


routes = [Route("/api/notifications", notifications, methods=["GET"])]
