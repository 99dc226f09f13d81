"""The starlette application: routes, static dashboard, and the lifespan that wires workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from scada import api
from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.routes import routes as alarm_routes
from scada.alarms.service import AlarmService
from scada.config import PlantConfig, resolve_data_path
from scada.hub import Hub
from scada.runtime import Runtime

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return page


def build_alarm_service(runtime: Runtime) -> AlarmService:
    config = runtime.config
    path = resolve_data_path(config, config.alarms.journal_path, "journal.sqlite")
    journal = Journal(
        path,
        retention_days=config.alarms.retention_days,
        retention_events=config.alarms.retention_events,
    )
    engine = AlarmEngine(config, runtime.schema, [d.name for d in config.devices])
    return AlarmService(engine, journal)


def create_app(config: PlantConfig, *, scenario: str | Path | None = None) -> Starlette:
    runtime = Runtime(config, scenario=scenario)
    hub = Hub(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        alarms = build_alarm_service(runtime)
        await alarms.start()
        runtime.alarms = alarms
        app.state.alarms = alarms
        log.info(
            "alarm journal: %d alarm(s) not normal, cursor %d",
            len(alarms.current()),
            alarms.cursor(),
        )
        await runtime.start()
        try:
            yield
        finally:
            runtime.broadcaster.close_all(1012, "server restart")
            await runtime.stop()
            await alarms.close()

    routes = [
        Route("/", _page("index.html")),
        Route("/diagnostics", _page("diagnostics.html")),
        WebSocketRoute("/ws", hub.endpoint),
        *api.routes,
        *alarm_routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.config = config
    app.state.hub = hub
    app.state.alarms = None
    app.state.announce_alarms = hub.announce
    return app
