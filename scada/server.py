"""Run the app under uvicorn: raw-frame WebSockets, handshake timeout, redacted logs."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scada.app import create_app
from scada.core.config import PlantConfig
from scada.wsserver import ScadaWebSocketProtocol

log = logging.getLogger(__name__)

# Frames larger than this factor times max_message_bytes are refused by the protocol layer
# itself (close 1009); smaller messages over the limit get an error frame and stay connected.
HARD_FRAME_LIMIT_FACTOR = 4
# permessage-deflate for clients that offer it: "off", "per-client" (a compression context
# per connection, like uvicorn's default) or "shared" (each frame compressed once per tick).
DEFAULT_COMPRESSION = "shared"
TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


class ScadaHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline for the request head (slow-loris guard)."""

    handshake_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.handshake_timeout, self._head_timed_out
        )

    def _head_timed_out(self) -> None:
        log.info(
            "closing %s: no complete request within %.0f s", self.client, self.handshake_timeout
        )
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def install_redaction() -> None:
    redact = RedactTokens()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.addFilter(redact)
        for handler in logger.handlers:
            handler.addFilter(redact)


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
) -> uvicorn.Server:
    srv = config.server
    ScadaWebSocketProtocol.send_buffer_bytes = srv.socket_send_buffer
    ScadaWebSocketProtocol.compression = compression or DEFAULT_COMPRESSION
    ScadaHttpProtocol.handshake_timeout = srv.handshake_timeout
    built: list[uvicorn.Server] = []

    def fatal(reason: str) -> None:
        # The plant cannot go on (the alarm journal failed): shut down like on SIGTERM, and
        # let `serve` exit non-zero with the reason so a supervisor restarts it.
        if on_fatal is not None:
            on_fatal(reason)
        for server in built:
            server.should_exit = True

    app = create_app(config, scenario=scenario, config_path=config_path, on_fatal=fatal)
    options: dict[str, Any] = {
        "host": host or srv.host,
        "port": srv.port if port is None else port,
        "http": ScadaHttpProtocol,
        "ws": ScadaWebSocketProtocol,
        "ws_max_size": srv.max_message_bytes * HARD_FRAME_LIMIT_FACTOR,
        # Our protocol negotiates permessage-deflate itself (`compression`); uvicorn's own
        # per-client deflate costs more CPU than the send. See docs/performance.md.
        "ws_per_message_deflate": False,
        # Our own heartbeat frames keep proxies and clients informed; pings add nothing.
        "ws_ping_interval": None,
        "lifespan": "on",
        "log_level": log_level,
        "access_log": True,
        "timeout_graceful_shutdown": srv.shutdown_grace,
        "server_header": False,
        "proxy_headers": False,  # the auth middleware trusts only configured proxies
    }
    uv_config = uvicorn.Config(app, **options)
    install_redaction()
    built.append(uvicorn.Server(uv_config))
    return built[0]


class ServerFailed(SystemExit):
    """The server stopped itself because it could not go on; the message says why."""


def serve(config: PlantConfig, **kwargs: Any) -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    failures: list[str] = []
    server = build_server(config, on_fatal=failures.append, **kwargs)
    server.run()
    if failures:
        raise ServerFailed(f"scada: stopped: {failures[0]}")
