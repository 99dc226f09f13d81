"""What the uvicorn protocols take from the server configuration (scada.server.serve builds
it; scada.server.uvicorn_adapter installs the protocols with it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WireSettings:
    """What the protocols need from the server configuration (see docs/security.md)."""

    compression: str = "shared"  # permessage-deflate: off, per-client or shared
    send_buffer_bytes: int = 0  # SO_SNDBUF per WebSocket; 0 keeps the OS default
    head_timeout: float = 10.0  # from connect / first byte to the end of a request head
    body_timeout: float = 10.0  # from the end of the head to the end of the body
    keepalive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    max_head_bytes: int = 16_384
    max_headers: int = 100
    max_http_connections: int = 1_000  # connections not (yet) upgraded to WebSocket
