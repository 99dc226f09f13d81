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
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 10.0  # a closed client that never reads its close frame is cut after this
TEXT = 0x81  # FIN + text opcode
TEXT_DEFLATED = 0xC1  # FIN + RSV1 (permessage-deflate) + text opcode

# How a sink takes broadcast frames (Broadcaster._fan_out picks the path per client).
PLAIN = 0  # finished frame bytes: header + prefix + seq tail, shared by every client
SHARED_DEFLATE = 1  # the prefix deflated once per tick, the tail as a stored block
OTHER = 2  # sink.write(payload): per-client deflate, or the ASGI fallback

COMPRESSION_MODES = ("off", "per-client", "shared")

# struct tcp_info (linux/tcp.h): tcpi_unacked (u32) at 24, tcpi_bytes_acked (u64) at 120,
# tcpi_notsent_bytes (u32) at 144.
TCP_INFO_LEN = 148
TCP_INFO = getattr(socket, "TCP_INFO", 11)


def frame_header(length: int, first: int = TEXT) -> bytes:
    """Header of an unmasked, final text frame carrying `length` payload bytes."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def frame_payload(frame: bytes) -> bytes:
    """The payload of an unmasked frame built by `frame_header` (the inverse)."""
    n = frame[1] & 0x7F
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0) :]


def deflate_prefix(prefix: bytes) -> bytes:
    """Raw deflate of `prefix`, sync-flushed: byte-aligned, so stored blocks may follow.

    With no context takeover each message is a fresh deflate stream, so these bytes start
    the message for every client that negotiated permessage-deflate (RFC 7692).
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
    return compressor.compress(prefix) + compressor.flush(zlib.Z_SYNC_FLUSH)


def stored_tail(tail: bytes) -> bytes:
    """`tail` as a non-final stored deflate block, then the empty block RFC 7692 strips.

    The message ends with an empty stored block whose LEN/NLEN (00 00 ff ff) the sender
    removes and the receiver appends back; only its header byte (0x00) stays.
    """
    n = len(tail)
    return b"\x00" + struct.pack("<HH", n, n ^ 0xFFFF) + tail + b"\x00"


class FrameSink(Protocol):
    framing: int  # PLAIN, SHARED_DEFLATE or OTHER

    @property
    def dead(self) -> bool:
        """The connection takes no more frames."""

    def send(self, frame: bytes) -> object:
        """Write a finished frame without checks (the caller checked `dead`)."""

    def write(self, payload: bytes) -> bool:
        """Queue one text message; False when the connection is already gone."""

    def write_frame(self, frame: bytes) -> bool:
        """Queue one finished frame (header included); False when the connection is gone."""

    def probe(self, now: float) -> None:
        """Sample whether the peer still takes data (feeds `blocked_for`)."""

    def buffered(self) -> int:
        """Bytes accepted but not yet handed to the kernel."""

    def blocked_for(self, now: float) -> float:
        """Seconds the connection has refused to drain (0 when it is draining)."""

    def close(self, code: int, reason: str) -> None: ...


class ScadaWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol plus a raw frame sink and a bounded kernel send buffer."""

    send_buffer_bytes: int | None = None  # set by scada.server before uvicorn starts
    compression: str = "off"  # permessage-deflate: off, per-client or shared (scada.server)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paused_at: float | None = None
        if self.compression != "off":
            # Shared: the server never keeps a compression context, so one compressed frame
            # is valid for every client (and no per-connection zlib state is allocated).
            shared = self.compression == "shared"
            factory = ServerPerMessageDeflateFactory(
                server_no_context_takeover=shared,
                server_max_window_bits=None if shared else 12,
                client_max_window_bits=None if shared else 12,
                compress_settings={"memLevel": 5},
            )
            self.conn = ServerProtocol(
                extensions=[factory], max_size=self.config.ws_max_size, logger=self.conn.logger
            )

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
            self.sink = TransportSink(self)
            scope["extensions"]["scada.sink"] = self.sink

    # Every way the connection stops taking frames marks the sink dead, so the broadcast hot
    # path checks one attribute instead of calling into the transport per client.
    sink: TransportSink | None = None

    def _mark_dead(self) -> None:
        if self.sink is not None:
            self.sink.dead = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_dead()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._mark_dead()
        super().shutdown()

    def handle_close(self, event: Any) -> None:
        self._mark_dead()
        super().handle_close(event)

    def handle_parser_exception(self) -> None:
        self._mark_dead()
        super().handle_parser_exception()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused_at = None


class TransportSink:
    """Writes finished frames straight to the connection's transport.

    `framing` tells the broadcaster which fan-out path fits this connection: PLAIN (no
    deflate), SHARED_DEFLATE (deflate negotiated without server context takeover and a 32 KB
    window), or OTHER (per-client deflate: `write` compresses every message on its own).
    """

    __slots__ = (
        "_acked",
        "_stalled_since",
        "dead",
        "deflate",
        "framing",
        "proto",
        "send",
        "sock",
        "transport",
    )

    def __init__(self, proto: ScadaWebSocketProtocol) -> None:
        self.proto = proto
        self.transport = proto.transport
        self.dead = False  # set once the connection stops taking frames
        self.send = self.transport.write  # bound once: the fan-out calls it per client
        self.sock = self.transport.get_extra_info("socket")
        self._acked = -1
        self._stalled_since: float | None = None
        self.deflate: PerMessageDeflate | None = None
        self.framing = PLAIN
        for ext in getattr(proto.conn, "extensions", []):
            if isinstance(ext, PerMessageDeflate):
                if proto.compression == "shared":
                    # A client that asked for a smaller window gets plain frames (allowed).
                    if ext.local_no_context_takeover and ext.local_max_window_bits == 15:
                        self.framing = SHARED_DEFLATE
                else:
                    self.deflate = ext
                    self.framing = OTHER

    def write(self, payload: bytes) -> bool:
        if self.dead or self.proto.close_sent or self.transport.is_closing():
            return False
        if self.deflate is not None:
            data = self.deflate.encode(Frame(Opcode.TEXT, payload)).data
            self.transport.write(frame_header(len(data), TEXT_DEFLATED) + data)
        else:
            self.transport.write(frame_header(len(payload)) + payload)
        return True

    def write_frame(self, frame: bytes) -> bool:
        """Write a finished frame (header included)."""
        if self.dead or self.proto.close_sent or self.transport.is_closing():
            return False
        self.send(frame)
        return True

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def blocked_for(self, now: float) -> float:
        """Seconds the peer has not taken any data although some waits for it.

        Either the transport paused (its buffer passed the high-water mark), or, before that,
        the kernel holds data for the peer and the peer acknowledged no byte since the last
        probe: a client that stopped reading is seen once its receive window closes, not
        after the server's whole socket send buffer has filled.
        """
        paused = self.proto.paused_at
        if paused is not None:
            return now - paused
        stalled = self._stalled_since
        return 0.0 if stalled is None else now - stalled

    def probe(self, now: float) -> None:
        """Sample the kernel's view of this connection (one getsockopt); see `blocked_for`."""
        if self.sock is None:
            return
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_LEN)
        except OSError:
            return
        if len(info) < TCP_INFO_LEN:
            return
        unacked = struct.unpack_from("I", info, 24)[0]
        acked = struct.unpack_from("Q", info, 120)[0]
        notsent = struct.unpack_from("I", info, 144)[0]
        if acked != self._acked or not (unacked or notsent):
            self._acked = acked
            self._stalled_since = None
        elif self._stalled_since is None:
            self._stalled_since = now

    def close(self, code: int, reason: str) -> None:
        """Send a close frame behind whatever is queued; cut the connection if it never drains."""
        proto = self.proto
        self.dead = True
        if proto.close_sent or self.transport.is_closing():
            return
        try:
            proto.conn.send_close(code, reason)
        except Exception:
            self.transport.abort()
            return
        self.transport.write(b"".join(proto.conn.data_to_send()))
        proto.close_sent = True
        if proto.read_paused:
            # Read the peer's close reply, so the TCP connection ends as soon as it answers.
            proto.read_paused = False
            self.transport.resume_reading()
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

    framing = OTHER

    @property
    def dead(self) -> bool:
        return self._closed

    def send(self, frame: bytes) -> object:
        return self.write_frame(frame)

    def write_frame(self, frame: bytes) -> bool:
        return self.write(frame_payload(frame))

    def probe(self, now: float) -> None:
        return None

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
