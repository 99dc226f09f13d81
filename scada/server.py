"""Run the app under uvicorn with the raw-frame WebSocket protocol."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from scada.app import create_app
from scada.config import PlantConfig
from scada.wsserver import ScadaWebSocketProtocol

# Frames larger than this are refused by the protocol layer itself (close 1009); smaller
# messages over `max_message_bytes` get an error frame and the connection stays open.
HARD_FRAME_LIMIT_FACTOR = 4


def build_server(
    config: PlantConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    scenario: str | Path | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    srv = config.server
    ScadaWebSocketProtocol.send_buffer_bytes = srv.socket_send_buffer
    app = create_app(config, scenario=scenario)
    uv_config = uvicorn.Config(
        app,
        host=host or srv.host,
        port=srv.port if port is None else port,
        ws=ScadaWebSocketProtocol,
        ws_max_size=srv.max_message_bytes * HARD_FRAME_LIMIT_FACTOR,
        # Per-client deflate costs more CPU than the send itself; see docs/performance.md.
        ws_per_message_deflate=False,
        # Our own heartbeat frames keep proxies and clients informed; pings add nothing.
        ws_ping_interval=None,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return uvicorn.Server(uv_config)


def serve(config: PlantConfig, **kwargs: object) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = build_server(config, **kwargs)  # type: ignore[arg-type]
    server.run()
