"""The starlette application: routes, static dashboard, and the lifespan that wires workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from scada import api
from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.routes import routes as alarm_routes
from scada.alarms.service import AlarmService
from scada.auth.passwords import new_password
from scada.auth.routes import routes as auth_routes
from scada.auth.store import AuthStore
from scada.auth.web import Auditor, AuthMiddleware, requires
from scada.core.config import PlantConfig, resolve_data_path
from scada.historian.routes import history as history_route
from scada.historian.service import Historian
from scada.hub import Hub
from scada.ratelimit import FailureWindow
from scada.runtime import Runtime

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

# Roles for the alarm routes (the alarm package stays free of auth concerns).
ALARM_ROLES = {"POST": "operator"}


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


def open_auth_store(config: PlantConfig) -> AuthStore:
    return AuthStore(resolve_data_path(config, config.auth.database, "auth.sqlite"))


def ensure_admin(store: AuthStore) -> None:
    """First start: create `admin` with a random password, shown once on the console only."""
    if store.count_users() > 0:
        return
    password = new_password()
    store.add_user("admin", "admin", password)
    # Printed, not logged: log files outlive the console and must never hold secrets.
    print(
        f"\n  Created the first user: admin / {password}\n  It is shown only this once; "
        "change it with `scada users passwd admin`.\n",
        file=sys.stderr,
        flush=True,
    )
    log.info("created the first user 'admin' (password shown on the console once)")


def _guard(route: BaseRoute) -> BaseRoute:
    if not isinstance(route, Route):
        return route
    methods = route.methods or {"GET"}
    role = "operator" if "POST" in methods else "viewer"
    action = "ack" if "POST" in methods else None
    return Route(
        route.path,
        requires(role, route.endpoint, action=action),
        methods=list(methods),
        name=route.name,
    )


def create_app(
    config: PlantConfig,
    *,
    scenario: str | Path | None = None,
    config_path: str | Path | None = None,
) -> Starlette:
    runtime = Runtime(config, scenario=scenario)
    auth = open_auth_store(config)
    auditor = Auditor(auth)
    hub = Hub(runtime, auditor)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ensure_admin(auth)
        alarms = build_alarm_service(runtime)
        await alarms.start()
        runtime.alarms = alarms
        app.state.alarms = alarms
        log.info(
            "alarm journal: %d alarm(s) not normal, cursor %d",
            len(alarms.current()),
            alarms.cursor(),
        )
        historian = None
        if config.historian.enabled:
            historian = Historian.from_config(config, runtime.schema)
            await asyncio.to_thread(historian.start)
            runtime.historian = app.state.historian = historian
            runtime.metric_sources.append(historian.metrics)
        await runtime.start()
        try:
            yield
        finally:
            # uvicorn has already sent close 1012 to every socket; this catches stragglers.
            runtime.broadcaster.close_all(1012, "server restart")
            await runtime.stop()
            if historian is not None:
                await asyncio.to_thread(historian.stop)
            await alarms.close()
            auth.close()
            log.info("stopped: journal and audit closed, drivers disconnected")

    routes = [
        Route("/", _page("index.html")),
        Route("/diagnostics", _page("diagnostics.html")),
        WebSocketRoute("/ws", hub.endpoint),
        *api.routes,
        Route("/api/history", requires("viewer", history_route)),
        *(_guard(r) for r in alarm_routes),
        *auth_routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(AuthMiddleware, store=auth, config=config)],
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.config_path = config_path  # None: the packaged default (re-read on reload)
    app.state.hub = hub
    app.state.auth = auth
    app.state.auditor = auditor
    app.state.login_failures = FailureWindow(limit=5, window=60.0)
    app.state.alarms = None
    app.state.historian = None
    app.state.announce_alarms = hub.announce
    return app
