"""The starlette application: routes, static dashboard, and the lifespan that wires workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.service import AlarmService
from scada.auth.audit import Auditor
from scada.auth.first_admin import ensure_admin
from scada.auth.identify import AuthMiddleware, audited, requires
from scada.auth.store import AuthStore
from scada.auth.throttle import LoginGate
from scada.core.clock import SYSTEM_CLOCK, Clock
from scada.core.config import PlantConfig, resolve_data_path
from scada.core.datadir import lock_data_dir, private_file
from scada.core.offload import Offload
from scada.core.tags import TagSchema
from scada.fanout.broadcaster import Broadcaster
from scada.historian.service import Historian
from scada.notify.service import Notifier, build_notifier
from scada.notify.settings import NotificationsConfig, notifications_of
from scada.plant import faultstore
from scada.plant.runtime import Runtime
from scada.roles.localbus import LocalBus, LocalCommands
from scada.sparkplug.edgeconfig import edge_settings
from scada.web import api
from scada.web import console as console_api
from scada.web.alarms import routes as alarm_routes
from scada.web.auth import routes as auth_routes
from scada.web.heavy import HeavyReadLimit, HeavyReads
from scada.web.history import history as history_route
from scada.web.httpgzip import GzipOffLoop
from scada.web.hub import Hub, RuntimeSource
from scada.web.notify import routes as notify_routes
from scada.web.pages import STATIC, page

if TYPE_CHECKING:
    from scada.sparkplug.service import SparkplugEdge

log = logging.getLogger(__name__)

__all__ = ["STATIC", "Plant", "build_plant", "create_app", "ensure_admin", "open_auth_store"]


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


@dataclass
class Plant:
    """The building blocks every role that runs the plant shares (all-in-one and ingest)."""

    config: PlantConfig
    clock: Clock
    data_lock: IO[str]
    offload: Offload
    alarms: AlarmService
    historian: Historian | None
    runtime: Runtime
    broadcaster: Broadcaster
    auth: AuthStore
    auditor: Auditor
    heavy: HeavyReads
    hub: Hub
    gate: LoginGate
    notifications: NotificationsConfig
    local: LocalBus | None = None  # the all-in-one server's in-memory bus (None: RuntimeSource)


def deliver(runtime: Runtime, broadcaster: Broadcaster) -> None:
    """The broadcaster subscribes to the tick: its alarm events, then its production data."""
    runtime.on_alarms(broadcaster.publish_alarms)
    runtime.on_frame(
        lambda stamp, lines: broadcaster.publish_production(lines, stamp) if lines else None
    )
    runtime.after_tick(broadcaster.after_tick)


def build_plant(
    config: PlantConfig,
    *,
    scenario: str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_fatal: Callable[[str], None] | None = None,
    local_bus: bool = False,
) -> Plant:
    """`local_bus`: the hub is fed through an in-memory bus by the gateway's feed (the
    all-in-one server); otherwise straight from the runtime's hooks (an ingest node's)."""
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
    broadcaster = Broadcaster.from_settings(config.server)
    runtime = Runtime(
        config,
        scenario=scenario,
        alarms=alarms,
        historian=historian,
        on_fatal=on_fatal,
        stats=broadcaster.stats,
    )
    auth = open_auth_store(config)
    auditor = Auditor(auth, clock)
    heavy = HeavyReads(lambda: runtime.config.auth)
    local = None
    if local_bus:
        local = LocalBus(runtime, alarms, broadcaster, alarms_maxlen=config.cluster.ring_size)
        commands = LocalCommands(local.source, broadcaster, auditor, alarms)
        hub = Hub(local.source, auditor, heavy=heavy, clock=clock, commands=commands)
        local.source.attach(hub)  # a feed reset gives every client a fresh snapshot
    else:
        deliver(runtime, broadcaster)
        hub = Hub(RuntimeSource(runtime, broadcaster), auditor, heavy=heavy, clock=clock)
    gate = LoginGate(config.auth, clock)
    notifications = notifications_of(config)  # ConfigError now, not at the first alarm
    return Plant(
        config, clock, data_lock, offload, alarms, historian, runtime, broadcaster, auth, auditor, heavy, hub,
        gate, notifications, local,
    )  # fmt: skip


async def open_plant(app: Starlette, plant: Plant, *, first_admin: bool = True) -> None:
    """The lifespan's start before the notifier and the runtime: admin, journal, historian.
    `first_admin=False`: not here (an ingest node creates it when active, see authsync)."""
    if first_admin:
        ensure_admin(plant.auth)
    alarms = plant.alarms
    await alarms.start()
    app.state.alarms = alarms
    alarms.on_flood(plant.hub.announce_flood)
    log.info(
        "alarm journal: %d alarm(s) not normal, cursor %d",
        len(alarms.current()),
        alarms.cursor(),
    )
    if plant.historian is not None:
        await asyncio.to_thread(plant.historian.start)
        app.state.historian = plant.historian
        plant.runtime.metric_sources.append(plant.historian.metrics)


async def start_notifier(
    app: Starlette,
    plant: Plant,
    skip_through: int = 0,
    *,
    handover: bool = False,
    instance: str | None = None,
) -> Notifier | None:
    """Notifications of committed alarm events (None: no rule routes anywhere)."""
    notifier = build_notifier(plant.config, plant.notifications, plant.alarms)
    if notifier is not None:
        await notifier.start(skip_through=skip_through, handover=handover, instance=instance)
        plant.runtime.metric_sources.append(notifier.metrics)
    app.state.notifier = notifier
    return notifier


async def stop_notifier(app: Starlette, plant: Plant, notifier: Notifier | None) -> None:
    if notifier is not None:
        await notifier.stop()  # the outbox keeps what is undelivered
        with contextlib.suppress(ValueError):
            plant.runtime.metric_sources.remove(notifier.metrics)
    app.state.notifier = None


def build_sparkplug(
    plant: Plant, next_bdseq: Callable[[], Awaitable[int]] | None = None
) -> SparkplugEdge | None:
    """The Sparkplug edge node of `[sparkplug]` (None when off: no MQTT library is loaded),
    told after every tick; started and stopped with the runtime by the role. `next_bdseq`:
    a cluster's shared connect counter."""
    settings = edge_settings(plant.config)
    if not settings.enabled:
        return None
    from scada.roles.edgegate import AuditedWriteGate
    from scada.sparkplug.service import SparkplugEdge, alarm_infos

    runtime = plant.runtime

    async def acknowledge(occurrence: int, user: str, comment: str) -> None:
        events = await plant.alarms.ack(occurrence, user, comment)
        plant.hub.announce(events)

    edge = SparkplugEdge(
        settings,
        runtime.schema,
        runtime.store,
        alarm_defs=alarm_infos(plant.alarms.engine.defs),
        alarms_current=plant.alarms.current,
        alarms_version=plant.alarms.cursor,
        next_bdseq=next_bdseq,
        gate=AuditedWriteGate(plant.auth, plant.auditor),
        acknowledge=acknowledge,
    )
    runtime.on_tick(edge.tick)
    runtime.metric_sources.append(edge.prometheus)
    return edge


async def close_plant(plant: Plant) -> None:
    """The lifespan's end after the runtime and notifier stopped: every file closed."""
    if plant.historian is not None:
        await asyncio.to_thread(plant.historian.stop)
    await plant.alarms.close()
    await plant.offload.close()
    plant.gate.close()
    plant.auth.close()
    plant.data_lock.close()


def plant_routes(plant: Plant) -> list[BaseRoute]:
    return [
        Route("/", page("index.html")),
        Route("/diagnostics", page("diagnostics.html")),
        WebSocketRoute("/ws", plant.hub.endpoint),
        *api.routes,
        Route("/api/history", requires("viewer", history_route)),
        *console_api.routes,
        *(_guard(r) for r in alarm_routes),
        *(_guard(r) for r in notify_routes),
        *auth_routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def plant_app(
    plant: Plant,
    routes: list[BaseRoute],
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]],
    config_path: str | Path | None,
) -> Starlette:
    """The Starlette app around a plant: auth and heavy-read middleware, app.state."""
    runtime = plant.runtime
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            # Outermost: compresses what every route and middleware below answers.
            Middleware(GzipOffLoop),
            Middleware(AuthMiddleware, store=plant.auth, config=plant.config),
            # After auth (it reads the identity); before any route, whoever defines it.
            Middleware(HeavyReadLimit, heavy=plant.heavy, config=lambda: runtime.config),
        ],
    )
    app.state.runtime = runtime
    app.state.broadcaster = plant.broadcaster
    app.state.config = plant.config
    app.state.config_path = config_path  # None: the packaged default (re-read on reload)
    app.state.hub = plant.hub
    app.state.auth = plant.auth
    app.state.auditor = plant.auditor
    app.state.login_gate = plant.gate
    app.state.heavy = plant.heavy
    app.state.offload = plant.offload
    app.state.clock = plant.clock
    app.state.alarms = None
    app.state.historian = None
    app.state.notifier = None
    app.state.announce_alarms = plant.hub.announce
    return app


def create_app(
    config: PlantConfig,
    *,
    scenario: str | Path | None = None,
    config_path: str | Path | None = None,
    clock: Clock = SYSTEM_CLOCK,
    on_fatal: Callable[[str], None] | None = None,
) -> Starlette:
    plant = build_plant(config, scenario=scenario, clock=clock, on_fatal=on_fatal, local_bus=True)
    runtime = plant.runtime
    local = plant.local
    assert local is not None
    sparkplug = build_sparkplug(plant)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await open_plant(app, plant)
        await local.start()  # the hub's feed, as of the journal's cursor
        notifier = await start_notifier(app, plant)
        if runtime.plant is not None:
            faultstore.restore(faultstore.fault_file(config.server.data_dir), runtime.plant)
        await runtime.start()
        if sparkplug is not None:
            sparkplug.start()
        try:
            yield
        finally:
            if sparkplug is not None:
                await sparkplug.stop()  # a clean NDEATH before the data stops
            # uvicorn has already sent close 1012 to every socket; this catches stragglers.
            plant.broadcaster.close_all(1012, "server restart")
            await runtime.stop()
            await local.stop()
            await stop_notifier(app, plant, notifier)
            await close_plant(plant)
            log.info("stopped: journal and audit closed, drivers disconnected")

    return plant_app(plant, plant_routes(plant), lifespan, config_path)
