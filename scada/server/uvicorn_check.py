"""The one start-up check of uvicorn's internals: every part of the adapter (wsprotocol,
wsinbox, transportsink, httpprotocol) subclasses or drives uvicorn's protocols and relies on
the names listed here; `require_uvicorn` refuses to start on a uvicorn that lacks one, so no
part checks on its own. scada.server.serve runs it before installing the protocols.

Written against uvicorn 0.54.0 (its sans-I/O websockets protocol and httptools protocol): the
raw frame sink writes pre-built frames to the transport, which uvicorn's ASGI `send` cannot.
The error (scada.core.internals, shared by every adapter) names uvicorn's installed version
and each missing name.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from scada.core.internals import refuse_missing

WS_NEEDS = {
    "methods": (
        "connection_made",
        "connection_lost",
        "data_received",
        "shutdown",
        "handle_connect",
        "handle_close",
        "handle_parser_exception",
        "pause_writing",
        "resume_writing",
        "send_receive_event_to_app",
        "send",
        "send_500_response",
        "on_task_complete",
    ),
    "state": (
        "config",
        "app",
        "conn",
        "transport",
        "loop",
        "logger",
        "client",
        "queue",
        "writable",
        "tasks",
        "close_sent",
        "close_timer",
        "read_paused",
        "handshake_initiated",
        "handshake_complete",
        "disconnected",
        "frames",
        "curr_msg_data_type",
    ),
}
HTTP_NEEDS = {
    "methods": (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_url",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
        "handle_websocket_upgrade",
        "send_400_response",
        "_should_upgrade",
        "_unsupported_upgrade_warning",
        "_unset_keepalive_if_required",
    ),
    "state": (
        "parser",
        "transport",
        "loop",
        "headers",
        "logger",
        "client",
        "timeout_keep_alive_task",
    ),
}


def missing_internals() -> list[str]:
    """The uvicorn names this module relies on that the installed uvicorn lacks."""
    missing: list[str] = []
    config = uvicorn.Config(_no_app, log_config=None, lifespan="off")
    config.load()
    loop = asyncio.new_event_loop()
    try:
        for cls, needs in ((WebSocketsSansIOProtocol, WS_NEEDS), (HttpToolsProtocol, HTTP_NEEDS)):
            name = cls.__name__
            missing += [
                f"{name}.{m}" for m in needs["methods"] if not callable(getattr(cls, m, None))
            ]
            try:
                proto = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
            except TypeError as err:
                missing.append(f"{name}(config, server_state, app_state, _loop): {err}")
                continue
            missing += [f"{name}.{a}" for a in needs["state"] if not hasattr(proto, a)]
    finally:
        loop.close()
    return missing


def require_uvicorn() -> None:
    """Refuse to start on a uvicorn whose internals moved (the raw sink would silently go)."""
    refuse_missing("scada/server/uvicorn_adapter.py and its parts", missing_internals(), "uvicorn")


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    return None
