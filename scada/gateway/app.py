"""The gateway application: the hub fed from the bus, the dashboard pages, health and metrics.

Same signature as `scada.app.create_app` (scada.server picks the factory by role). Sessions
and tokens are looked up in `credentials` and refusals go to `auditor`; without them the
gateway knows no credentials (anonymous viewers only, where allowed) and logs its refusals.
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
from scada.auth.web import AuthMiddleware, requires
from scada.cluster.keys import BusKeys
from scada.core.clock import SYSTEM_CLOCK, Clock
from scada.core.config import PlantConfig
from scada.gateway import status
from scada.gateway.auth import LoggedAudit, NoCredentials
from scada.gateway.commands import BusCommands
from scada.gateway.source import BusSource
from scada.heavy import HeavyReadLimit, HeavyReads
from scada.hub import Hub
from scada.hub.source import CredentialStore
from scada.pages import STATIC, page

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
) -> Starlette:
    """`scenario` and `on_fatal` are the all-in-one server's (a gateway simulates nothing
    and has no journal to fail); accepted so every role has one factory signature."""
    cluster = config.cluster
    keys = BusKeys(cluster.prefix)
    source = BusSource(config, keys)
    commands = BusCommands(
        source,
        source.broadcaster,
        auditor,
        url=cluster.redis_url,
        keys=keys,
        node=cluster.node or "gateway",
        timeout=cluster.command_timeout,
    )
    store = credentials if credentials is not None else NoCredentials()
    heavy = HeavyReads(lambda: config.auth)
    hub = Hub(source, auditor, heavy=heavy, clock=clock, commands=commands, credentials=store)
    source.attach(hub)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await commands.start()
        await source.start()
        log.info(
            "gateway %s: bus %s (prefix %s), %d lines",
            cluster.node,
            _without_password(cluster.redis_url),
            cluster.prefix,
            len(source.line_ids),
        )
        try:
            yield
        finally:
            source.broadcaster.close_all(1012, "server restart")
            await source.stop()
            await commands.stop()
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
            Middleware(AuthMiddleware, store=store, config=config),
            Middleware(HeavyReadLimit, heavy=heavy, config=lambda: config),
        ],
    )
    state: Any = app.state
    state.config = config
    state.config_path = config_path
    state.source = source
    state.hub = hub
    state.commands = commands
    state.auth = store
    state.auditor = auditor if auditor is not None else LoggedAudit()
    state.heavy = heavy
    state.clock = clock
    state.collector = status.GatewayCollector(source, commands)
    return app


def _without_password(url: str) -> str:
    """The Redis URL for a log line: a password in it never reaches the log."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
