"""The gateway application: the hub fed from the bus, the dashboard pages, health and metrics.

Same signature as `scada.roles.allinone.create_app` (scada.server.serve picks the factory by role). Sessions
and tokens are looked up in a replica of the active ingest node's auth rows (RedisAuthView,
which also closes the sockets of a logout, revocation or disabled user at once); audit
records go to the active ingest node as "audit" commands (BusAuditor), which writes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from scada.auth.audit import Auditor
from scada.auth.identify import AuthMiddleware, CredentialStore, requires
from scada.auth.replica.view import BusAuditor, RedisAuthView, close_sockets
from scada.bus.acl import redact
from scada.bus.interface import Bus
from scada.bus.keys import BusKeys
from scada.bus.redisbus import RedisBus
from scada.core.clock import SYSTEM_CLOCK, Clock
from scada.core.config import PlantConfig
from scada.roles.gateway import status
from scada.roles.gateway.bussource import BusSource
from scada.roles.gateway.remotecommands import BusCommands
from scada.web.heavy import HeavyReadLimit, HeavyReads
from scada.web.hub import Hub
from scada.web.pages import STATIC, page

log = logging.getLogger(__name__)


def create_gateway_app(
    config: PlantConfig,
    *,
    scenario: str | Path | None = None,
    config_path: str | Path | None = None,
    on_fatal: Callable[[str], None] | None = None,
    credentials: CredentialStore | None = None,
    auditor: Auditor | None = None,
    clock: Clock = SYSTEM_CLOCK,
    bus: Bus | None = None,
) -> Starlette:
    """`scenario` and `on_fatal` are the all-in-one server's (a gateway simulates nothing
    and has no journal to fail); accepted so every role has one factory signature.
    `credentials`, `auditor` and `bus` (default: the cluster's Redis) replace the cluster's
    (tests)."""
    cluster = config.cluster
    node = cluster.node or "gateway"
    keys = BusKeys(cluster.prefix)
    if bus is None:
        bus = RedisBus(cluster.redis_url, keys, name=f"scada-gateway-{node}")
    source = BusSource(config, bus)
    view = None
    if credentials is None:
        credentials = view = RedisAuthView(cluster.redis_url, keys, node=node)
    commands = BusCommands(
        source,
        source.broadcaster,
        None,
        bus=bus,
        node=node,
        timeout=cluster.command_timeout,
        # What it signs its clients' commands with: keys of credentials that came through.
        command_keys=getattr(credentials, "command_key", None),
    )
    commands.auditor = auditor = auditor or BusAuditor(commands, clock=clock)
    heavy = HeavyReads(lambda: config.auth)
    hub = Hub(source, auditor, heavy=heavy, clock=clock, commands=commands, credentials=credentials)
    source.attach(hub)
    if view is not None:
        view.on_revoked(close_sockets(hub))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await commands.start()
        if view is not None and not await view.start():
            log.warning("auth rows not loaded yet; unknown credentials are 'try again' meanwhile")
        await source.start()
        log.info(
            "gateway %s: bus %s (prefix %s), %d lines",
            cluster.node,
            redact(cluster.redis_url),
            cluster.prefix,
            len(source.line_ids),
        )
        try:
            yield
        finally:
            source.broadcaster.close_all(1012, "server restart")
            await source.stop()
            if view is not None:
                await view.stop()
            await commands.stop()
            await bus.close()
            log.info("gateway %s stopped", cluster.node)

    routes = [
        Route("/", page("index.html")),
        Route("/login", page("login.html")),
        Route("/diagnostics", page("diagnostics.html")),
        WebSocketRoute("/ws", hub.endpoint),
        Route("/health", status.health),
        Route("/ready", status.ready),
        Route("/health/websocket", requires("viewer", status.websocket_health)),
        Route("/metrics", requires("viewer", status.metrics)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(AuthMiddleware, store=credentials, config=config),
            Middleware(HeavyReadLimit, heavy=heavy, config=lambda: config),
        ],
    )
    state: Any = app.state
    state.config = config
    state.config_path = config_path
    state.source = source
    state.hub = hub
    state.commands = commands
    state.auth = credentials
    state.auditor = auditor
    state.heavy = heavy
    state.clock = clock
    state.collector = status.GatewayCollector(source, commands, view)
    return app
