"""The raw frame sink: a WebSocket connection's transport as the broadcaster's FrameSink."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from scada.fanout.wsframes import PLAIN, TEXT, TEXT_DEFLATED, frame_header, framing_for
from scada.server.tcpinfo import borrow, tcp_progress

if TYPE_CHECKING:
    from scada.server.wsprotocol import ScadaWebSocketProtocol

CLOSE_GRACE_S = 10.0  # a closed client that never reads its close frame is cut after this


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
    kind = "raw"

    def __init__(self, proto: ScadaWebSocketProtocol) -> None:
        self.proto = proto
        self.transport = proto.transport
        self.dead = False  # set once the connection stops taking frames
        self.send = self.transport.write  # bound once: the fan-out calls it per client
        self.sock = borrow(self.transport.get_extra_info("socket"))  # for `probe`
        self._acked = -1
        self._stalled_since: float | None = None
        self.framing = PLAIN
        self.deflate: PerMessageDeflate | None = None
        self.framing, self.deflate = framing_for(
            getattr(proto.conn, "extensions", []), proto.wire.compression
        )

    def detach(
        self,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> bool:
        """See ScadaWebSocketProtocol.detach."""
        return self.proto.detach(on_message, on_gone)

    def write(self, payload: bytes) -> bool:
        if self.dead or self.proto.close_sent or self.transport.is_closing():
            return False
        if self.deflate is not None:
            data = self.deflate.encode(Frame(Opcode.TEXT, payload)).data
            self.transport.write(frame_header(len(data), TEXT_DEFLATED) + data)
        else:
            self.transport.write(frame_header(len(payload), TEXT) + payload)
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
        if self.sock is None or self.dead:
            return
        progress = tcp_progress(self.sock)
        if progress is None:
            return
        acked, waiting = progress
        if acked != self._acked or not waiting:
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
