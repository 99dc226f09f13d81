"""The starlette application: routes, static dashboard, and the lifespan that wires workers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from scada import api
from scada.config import PlantConfig, resolve_data_path
from scada.hub import Hub
from scada.runtime import Runtime

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _page(name: str):  # type: ignore[no-untyped-def]
    async def page(request: object) -> Response:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return page


async def _start_alarms(app: Starlette, runtime: Runtime, hub: Hub) -> None:
    from scada.alarms.engine import AlarmEngine
    from scada.alarms.journal import Journal
    from scada.alarms.service import AlarmService

    config = runtime.config
    path = resolve_data_path(config, config.alarms.journal_path, "journal.sqlite")
    journal = Journal(
        path,
        retention_days=config.alarms.retention_days,
        retention_events=config.alarms.retention_events,
    )
    engine = AlarmEngine(config, runtime.schema, [d.name for d in config.devices])
    service = AlarmService(engine, journal)
    await service.start()
    runtime.alarms = service
    app.state.alarms = service
    app.state.announce_alarms = hub.announce
    log.info(
        "alarm journal %s: %d alarm(s) not normal, cursor %d",
        path,
        len(service.current()),
        service.cursor(),
    )


def create_app(config: PlantConfig, *, scenario: str | Path | None = None) -> Starlette:
    runtime = Runtime(config, scenario=scenario)
    hub = Hub(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:  # TEMP until the alarm package lands
            await _start_alarms(app, runtime, hub)
        except ModuleNotFoundError as err:
            log.warning("alarms unavailable: %s", err)
        await runtime.start()
        try:
            yield
        finally:
            runtime.broadcaster.close_all(1012, "server restart")
            await runtime.stop()
            if runtime.alarms is not None:
                await runtime.alarms.close()

    routes = [
        Route("/", _page("index.html")),
        Route("/diagnostics", _page("diagnostics.html")),
        WebSocketRoute("/ws", hub.endpoint),
        *api.routes,
        *_alarm_routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.config = config
    app.state.hub = hub
    app.state.alarms = None
    return app


def _alarm_routes() -> list[Route]:
    try:  # TEMP until the alarm package lands
        from scada.alarms.routes import routes
    except ModuleNotFoundError:
        return []
    return list(routes)
