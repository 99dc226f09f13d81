"""Raw WebSocket writes under uvicorn, so one encoded frame serves every client.

uvicorn's sans-I/O WebSocket protocol hands the app an ASGI `send` that re-encodes every
message and waits while the socket is paused. The broadcaster instead writes finished frame
bytes straight to each connection's transport (server frames are unmasked, so the same bytes
are valid on every connection). This subclass exposes that as a `FrameSink` in the ASGI scope
extension `scada.sink`; anything else (another ASGI server) gets the slower `AsgiSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 10.0  # a closed client that never reads its close frame is cut after this


def frame_header(length: int) -> bytes:
    """Header of an unmasked, final text frame carrying `length` payload bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class FrameSink(Protocol):
    def write(self, payload: bytes) -> bool:
        """Queue one text message; False when the connection is already gone."""

    def buffered(self) -> int:
        """Bytes accepted but not yet handed to the kernel."""

    def blocked_for(self, now: float) -> float:
        """Seconds the connection has refused to drain (0 when it is draining)."""

    def close(self, code: int, reason: str) -> None: ...


class ScadaWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol plus a raw frame sink and a bounded kernel send buffer."""

    send_buffer_bytes: int | None = None  # set by scada.server before uvicorn starts

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paused_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and self.send_buffer_bytes:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"]["scada.sink"] = TransportSink(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused_at = None


class TransportSink:
    __slots__ = ("proto", "transport")

    def __init__(self, proto: ScadaWebSocketProtocol) -> None:
        self.proto = proto
        self.transport = proto.transport

    def write(self, payload: bytes) -> bool:
        if self.proto.close_sent or self.transport.is_closing():
            return False
        self.transport.write(frame_header(len(payload)) + payload)
        return True

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def blocked_for(self, now: float) -> float:
        paused = self.proto.paused_at
        return 0.0 if paused is None else now - paused

    def close(self, code: int, reason: str) -> None:
        """Send a close frame behind whatever is queued; cut the connection if it never drains."""
        proto = self.proto
        if proto.close_sent or self.transport.is_closing():
            return
        try:
            proto.conn.send_close(code, reason)
        except Exception:
            self.transport.abort()
            return
        self.transport.write(b"".join(proto.conn.data_to_send()))
        proto.close_sent = True
        proto.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        proto.close_timer = proto.loop.call_later(CLOSE_GRACE_S, self.transport.abort)


class AsgiSink:
    """Fallback for ASGI servers without the raw sink: a bounded queue and a writer task."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self._queue: asyncio.Queue[tuple[bytes, int, str] | None] = asyncio.Queue()
        self._bytes = 0
        self._closed = False
        self._stuck_since: float | None = None
        self._task = asyncio.create_task(self._writer())

    def write(self, payload: bytes) -> bool:
        if self._closed:
            return False
        self._bytes += len(payload)
        if self._stuck_since is None:
            self._stuck_since = time.monotonic()
        self._queue.put_nowait((payload, 0, ""))
        return True

    def buffered(self) -> int:
        return self._bytes

    def blocked_for(self, now: float) -> float:
        return 0.0 if self._stuck_since is None else now - self._stuck_since

    def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait((b"", code, reason))

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                payload, code, reason = item
                if code:
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                await self._send({"type": "websocket.send", "text": payload.decode()})
                self._bytes -= len(payload)
                self._stuck_since = None if self._queue.empty() else time.monotonic()
        except Exception as err:
            log.debug("ASGI sink writer stopped: %s", err)
            self._closed = True
