"""Run the app under uvicorn: the adapter's protocols, request limits, guarded, quiet logs."""

from __future__ import annotations

import logging
import re
import resource
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote

import uvicorn
from starlette.types import ASGIApp

from scada.core.config import PlantConfig, ServerConfig
from scada.core.errors import UnsupportedLibrary
from scada.core.logfold import Fold
from scada.server.httpguard import GuardMiddleware, own_hosts
from scada.server.uvicorn_adapter import uvicorn_options
from scada.server.uvicorn_check import require_uvicorn
from scada.server.wiresettings import WireSettings

log = logging.getLogger(__name__)

# Frames larger than this factor times max_message_bytes are refused by the protocol layer
# itself (close 1009); smaller messages over the limit get an error frame and stay connected.
HARD_FRAME_LIMIT_FACTOR = 4
# permessage-deflate for clients that offer it: "off", "per-client" (a compression context
# per connection, like uvicorn's default) or "shared" (each frame compressed once per tick).
DEFAULT_COMPRESSION = "shared"
# File descriptors besides client connections: SQLite files, device sockets, logs, the loop.
FD_RESERVE = 256
TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn's line per handshake (accepted or not), and websockets' per refused handshake.
HANDSHAKE_LINES = ('%s - "WebSocket %s"', "connection rejected (", "connection open")


# Reads every open console repeats on a timer (the device list every 3 s) and health probes:
# an access-log line for each success would bury the lines that matter. Failures still log.
QUIET_POLLS = frozenset({"/api/devices", "/ready", "/health"})


class StartupRefused(RuntimeError):
    pass


ServeRole = Literal["all", "ingest", "gateway"]
ROLES: tuple[ServeRole, ...] = ("all", "ingest", "gateway")


class AppFactory(Protocol):
    def __call__(
        self,
        config: PlantConfig,
        *,
        scenario: str | Path | None = ...,
        config_path: str | Path | None = ...,
        on_fatal: Callable[[str], None] | None = ...,
    ) -> ASGIApp: ...


def with_node_name(config: PlantConfig, role: ServeRole, port: int) -> PlantConfig:
    """`[cluster] node` defaults to "<role>-<hostname>-<port>": unique per process on a host."""
    if role == "all" or config.cluster.node:
        return config
    name = f"{role}-{socket.gethostname()}-{port}".replace(":", "-")
    cluster = config.cluster.model_copy(update={"node": name})
    return config.model_copy(update={"cluster": cluster})


class RedactTokens(logging.Filter):
    """`?token=` credentials never reach a log line (uvicorn logs request paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # Decoded first: `?%74oken=` is a token to the query parser too.
        decoded = unquote(message)
        if "token=" in decoded.lower():
            record.msg = TOKEN_IN_TEXT.sub(r"\1<redacted>", decoded)
            record.args = ()
        return True


class QuietPolls(logging.Filter):
    """No access-log line for a successful GET of a periodic poll (QUIET_POLLS)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.access: '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status)
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) != 5 or args[1] not in ("GET", "HEAD"):
            return True
        path = str(args[2]).partition("?")[0]
        status = args[4]
        return not (path in QUIET_POLLS and isinstance(status, int) and status < 400)


class FoldHandshakeLines(logging.Filter):
    """uvicorn logs lines per WebSocket handshake; in a reconnect storm that floods the log.

    The first of each window passes, the rest become one count (logged by scada.server.serve).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fold = Fold(log)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not (isinstance(msg, str) and msg.startswith(HANDSHAKE_LINES)):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return self.fold.admit(msg, args, record.levelno)


def install_log_filters() -> None:
    # Folding first: it keys on uvicorn's format string, which redaction would replace.
    logging.getLogger("uvicorn.error").addFilter(FoldHandshakeLines())
    logging.getLogger("uvicorn.access").addFilter(QuietPolls())
    redact = RedactTokens()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.addFilter(redact)
        for handler in logger.handlers:
            handler.addFilter(redact)


def check_fd_budget(srv: ServerConfig) -> None:
    """Every connection the limits allow needs a descriptor; raise the soft limit or refuse."""
    need = srv.max_connections + srv.max_http_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        log.info("open-file limit raised from %d to %d for the connection limits", soft, need)
        return
    raise StartupRefused(
        f"the open-file limit ({hard}) is below the {need} descriptors that "
        f"server.max_connections ({srv.max_connections}) + server.max_http_connections "
        f"({srv.max_http_connections}) + {FD_RESERVE} for files and devices need: raise it "
        "(systemd LimitNOFILE=, ulimit -n) or lower server.max_connections"
    )


def wire_settings(srv: ServerConfig, compression: str | None) -> WireSettings:
    return WireSettings(
        compression=compression or DEFAULT_COMPRESSION,
        send_buffer_bytes=srv.socket_send_buffer,
        head_timeout=srv.handshake_timeout,
        body_timeout=srv.request_body_timeout,
        keepalive_timeout=srv.keepalive_timeout,
        max_head_bytes=srv.max_request_head_bytes,
        max_headers=srv.max_request_headers,
        max_http_connections=srv.max_http_connections,
    )


def build_server(
    config: PlantConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    scenario: str | Path | None = None,
    log_level: str = "info",
    compression: str | None = None,
    config_path: str | Path | None = None,
    on_fatal: Callable[[str], None] | None = None,
    role: ServeRole = "all",
    create_app: AppFactory,
) -> uvicorn.Server:
    srv = config.server
    require_uvicorn()
    check_fd_budget(srv)
    bind = host or srv.host
    listen_port = srv.port if port is None else port
    config = with_node_name(config, role, listen_port)
    built: list[uvicorn.Server] = []

    def fatal(reason: str) -> None:
        # The plant cannot go on (the alarm journal failed): shut down like on SIGTERM, and
        # let `serve` exit non-zero with the reason so a supervisor restarts it.
        if on_fatal is not None:
            on_fatal(reason)
        for server in built:
            server.should_exit = True

    app = GuardMiddleware(
        create_app(config, scenario=scenario, config_path=config_path, on_fatal=fatal),
        hosts=own_hosts(bind, srv.allowed_hosts, srv.allowed_origins),
        headers=srv.security_headers,
    )
    options: dict[str, Any] = {
        **uvicorn_options(wire_settings(srv, compression)),
        "host": bind,
        "port": listen_port,
        "ws_max_size": srv.max_message_bytes * HARD_FRAME_LIMIT_FACTOR,
        "lifespan": "on",
        "log_level": log_level,
        "access_log": True,
        "timeout_graceful_shutdown": srv.shutdown_grace,
        "server_header": False,
        "proxy_headers": False,  # the auth middleware trusts only configured proxies
    }
    uv_config = uvicorn.Config(app, **options)
    install_log_filters()
    built.append(uvicorn.Server(uv_config))
    return built[0]


class ServerFailed(SystemExit):
    """The server stopped itself because it could not go on; the message says why."""


def serve(config: PlantConfig, **kwargs: Any) -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    failures: list[str] = []
    try:
        server = build_server(config, on_fatal=failures.append, **kwargs)
    except (UnsupportedLibrary, StartupRefused) as err:
        log.error("not starting: %s", err)
        raise SystemExit(1) from None
    server.run()
    if failures:
        raise ServerFailed(f"scada: stopped: {failures[0]}")
