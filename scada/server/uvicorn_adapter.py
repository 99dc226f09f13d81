"""The one seam to uvicorn: only the modules listed here touch its internals.

    wiresettings   WireSettings: what the protocols take from the configuration
    uvicorn_check  require_uvicorn: the one start-up check of every internal the parts use
    wsprotocol     ScadaWebSocketProtocol: raw frame sink, bounded send buffer, `detach`
    wsinbox        Inbox: a detached connection's receive side, one message at a time
    transportsink  TransportSink: the connection's transport as the broadcaster's FrameSink
    httpprotocol   ScadaHttpProtocol: head and body deadlines, head size limits, refusals
    httpgate       HttpGate: the cap on connections still speaking HTTP
    refusals       one-line refusal logs and plain-text answers, shared by both protocols

Settings come in through `uvicorn_options` (bound with functools.partial), never as class
attributes; scada.server.serve runs `require_uvicorn` once before it installs them.
"""

from __future__ import annotations

import functools
from typing import Any

from scada.server.httpgate import HttpGate
from scada.server.httpprotocol import ScadaHttpProtocol
from scada.server.wiresettings import WireSettings
from scada.server.wsprotocol import ScadaWebSocketProtocol


def uvicorn_options(wire: WireSettings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments that install both protocols with these settings."""
    gate = HttpGate(wire.max_http_connections)
    return {
        "http": functools.partial(ScadaHttpProtocol, wire=wire, gate=gate),
        "ws": functools.partial(ScadaWebSocketProtocol, wire=wire),
        "timeout_keep_alive": wire.keepalive_timeout,
        # Our protocol negotiates permessage-deflate itself (`compression`); uvicorn's own
        # per-client deflate costs more CPU than the send. See docs/performance.md.
        "ws_per_message_deflate": False,
        # Our own heartbeat frames keep proxies and clients informed; pings add nothing.
        "ws_ping_interval": None,
    }
