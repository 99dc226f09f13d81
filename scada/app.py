"""The starlette application: routes, static dashboard, and the lifespan that wires workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from scada import api, console_api
from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.routes import routes as alarm_routes
from scada.alarms.service import AlarmService
from scada.auth.audit import Auditor
from scada.auth.first_admin import ensure_admin
from scada.auth.routes import routes as auth_routes
from scada.auth.store import AuthStore
from scada.auth.throttle import LoginGate
from scada.auth.web import AuthMiddleware, audited, requires
from scada.core.clock import SYSTEM_CLOCK, Clock
from scada.core.config import PlantConfig, resolve_data_path
from scada.core.tags import TagSchema
from scada.datadir import lock_data_dir, private_file
from scada.heavy import HeavyReadLimit, HeavyReads
from scada.historian.routes import history as history_route
from scada.historian.service import Historian
from scada.hub import Hub, RuntimeSource
from scada.notify.config import notifications_of
from scada.notify.routes import routes as notify_routes
from scada.notify.service import build_notifier
from scada.offload import Offload
from scada.pages import STATIC, page
from scada.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["STATIC", "create_app", "ensure_admin", "open_auth_store"]


def build_alarm_service(
    config: PlantConfig, clock: Clock = SYSTEM_CLOCK, offload: Offload | None = None
) -> AlarmService:
    path = private_file(resolve_data_path(config, config.alarms.journal_path, "journal.sqlite"))
    journal = Journal(
        path,
        retention_days=config.alarms.retention_days,
        retention_events=config.alarms.retention_events,
    )
    engine = AlarmEngine(config, TagSchema(config.lines), [d.name for d in config.devices])
    return AlarmService(engine, journal, clock=clock.wall, mono=clock.monotonic, offload=offload)


def open_auth_store(config: PlantConfig) -> AuthStore:
    return AuthStore(resolve_data_path(config, config.auth.database, "auth.sqlite"))


def _guard(route: BaseRoute) -> BaseRoute:
    """Roles for the alarm routes (the alarm package stays free of auth concerns)."""
    if not isinstance(route, Route):
        return route
    methods = route.methods or {"GET"}
    if "POST" in methods:
        endpoint = requires("operator", audited("ack", route.endpoint), action="ack")
    else:
        endpoint = requires("viewer", route.endpoint)
    return Route(route.path, endpoint, methods=list(methods), name=route.name)


def create_app(
    config: PlantConfig,
    *,
    scenario: str | Path | None = None,
    config_path: str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_fatal: Callable[[str], None] | None = None,
) -> Starlette:
    # First: a second server on this data dir stops here, before it touches any file.
    data_lock = lock_data_dir(Path(config.server.data_dir))
    offload = Offload()  # heavy reads' worker processes, started at the first one
    alarms = build_alarm_service(config, clock, offload)
    historian = None
    if config.historian.enabled:
        private_file(resolve_data_path(config, config.historian.path, "history.sqlite"))
        historian = Historian.from_config(config, TagSchema(config.lines))
    # Built complete: what the tick feeds is passed in, and a failure it cannot survive is
    # reported to `on_fatal` (the server then exits non-zero with the reason).
    runtime = Runtime(
        config, scenario=scenario, alarms=alarms, historian=historian, on_fatal=on_fatal
    )
    auth = open_auth_store(config)
    auditor = Auditor(auth, clock)
    heavy = HeavyReads(lambda: runtime.config.auth)
    hub = Hub(RuntimeSource(runtime), auditor, heavy=heavy, clock=clock)
    gate = LoginGate(config.auth, clock)
    notifications = notifications_of(config)  # ConfigError now, not at the first alarm

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ensure_admin(auth)
        await alarms.start()
        app.state.alarms = alarms
        alarms.on_flood(hub.announce_flood)
        log.info(
            "alarm journal: %d alarm(s) not normal, cursor %d",
            len(alarms.current()),
            alarms.cursor(),
        )
        if historian is not None:
            await asyncio.to_thread(historian.start)
            app.state.historian = historian
            runtime.metric_sources.append(historian.metrics)
        notifier = build_notifier(config, notifications, alarms)
        if notifier is not None:
            await notifier.start()
            runtime.metric_sources.append(notifier.metrics)
        app.state.notifier = notifier
        await runtime.start()
        try:
            yield
        finally:
            # uvicorn has already sent close 1012 to every socket; this catches stragglers.
            runtime.broadcaster.close_all(1012, "server restart")
            await runtime.stop()
            if historian is not None:
                await asyncio.to_thread(historian.stop)
            if notifier is not None:
                await notifier.stop()  # the outbox keeps what is undelivered
            await alarms.close()
            await offload.close()
            gate.close()
            auth.close()
            data_lock.close()
            log.info("stopped: journal and audit closed, drivers disconnected")

    routes = [
        Route("/", page("index.html")),
        Route("/diagnostics", page("diagnostics.html")),
        WebSocketRoute("/ws", hub.endpoint),
        *api.routes,
        Route("/api/history", requires("viewer", history_route)),
        *console_api.routes,
        *(_guard(r) for r in alarm_routes),
        *(_guard(r) for r in notify_routes),
        *auth_routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(AuthMiddleware, store=auth, config=config),
            # After auth (it reads the identity); before any route, whoever defines it.
            Middleware(HeavyReadLimit, heavy=heavy, config=lambda: runtime.config),
        ],
    )
    app.state.runtime = runtime
    app.state.config = config
    app.state.config_path = config_path  # None: the packaged default (re-read on reload)
    app.state.hub = hub
    app.state.auth = auth
    app.state.auditor = auditor
    app.state.login_gate = gate
    app.state.heavy = heavy
    app.state.offload = offload
    app.state.clock = clock
    app.state.alarms = None
    app.state.historian = None
    app.state.notifier = None
    app.state.announce_alarms = hub.announce
    return app
