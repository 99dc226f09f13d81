"""The static dashboard files and the HTML pages served from them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

STATIC = Path(__file__).parents[1] / "static"


def page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve_page(request: Request) -> Response:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return serve_page
