"""uvicorn's sans-I/O WebSocket protocol with a raw frame sink (scada.server.transportsink)
in the ASGI scope extension `scada.sink`, a bounded kernel send buffer, one-line refusals,
and `detach` (scada.server.wsinbox): an idle connection keeps no task, frames, scope or
queue (docs/performance.md, "Memory per connection")."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from scada.fanout.wsframes import deflate_offer
from scada.server.refusals import peer, plain_response, refusals
from scada.server.transportsink import TransportSink
from scada.server.wiresettings import WireSettings
from scada.server.wsinbox import ALWAYS_WRITABLE, Inbox

CLOSE_INVALID_DATA = 1007
# A lingering close (as web servers do): after a close for a frame it will not take (1009 too
# big, 1002), the server reads and discards what the client is still sending, up to this many
# bytes or seconds, before it closes the socket. Closing with the frame unread makes the
# kernel answer with a reset, and a client still blocked in its send (websocket-client) then
# never reads the close frame: it sees "connection reset" instead of 1009.
LINGER_MIN_BYTES = 1 << 20
LINGER_SECONDS = 2.0


class ScadaWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol plus a raw frame sink and a bounded kernel send buffer."""

    def __init__(self, *args: Any, wire: WireSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire = wire
        self.paused_at: float | None = None
        # Every way the connection stops taking frames marks the sink dead, so the broadcast
        # hot path checks one attribute instead of calling into the transport per client.
        self.sink: TransportSink | None = None
        self.inbox: Inbox | None = None  # set when the app detached (see `detach`)
        self.linger_left: int | None = None  # bytes still discarded before closing, if closing
        offer = _deflate_offer(wire.compression)
        if offer is not None:
            self.conn = ServerProtocol(
                extensions=[offer], max_size=self.config.ws_max_size, logger=self.conn.logger
            )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and self.wire.send_buffer_bytes:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.wire.send_buffer_bytes)

    def data_received(self, data: bytes) -> None:
        if self.linger_left is not None:
            self.linger_left -= len(data)
            if self.linger_left <= 0:
                self.transport.close()
            return
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # websockets refused the request head (431 for too many or too long header
            # lines, nothing for an unsupported request); uvicorn would neither send that
            # answer nor close, and the connection would hang outside max_connections.
            self.close_sent = True
            answer = b"".join(self.conn.data_to_send())
            self.transport.write(answer or plain_response(400, "Bad Request", "bad handshake\n"))
            self.transport.close()
            refusals.event(
                "refused WebSocket handshake from %s: %s",
                peer(self.client),
                self.conn.handshake_exc,
            )

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            self.sink = TransportSink(self)
            scope["extensions"]["scada.sink"] = self.sink

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A denial response (401, 403, 503) completes the handshake too; uvicorn would
            # log "returned without completing handshake" at ERROR for every refusal.
            self.handshake_complete = True

    def handle_parser_exception(self) -> None:
        """uvicorn's, except that the socket is closed only after a lingering read: the close
        frame goes out at once, what the client still sends is read and dropped."""
        self._mark_dead()
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the close frame, then end of stream
        self.linger_left = max(LINGER_MIN_BYTES, 4 * self.config.ws_max_size)
        self.close_timer = asyncio.get_running_loop().call_later(
            LINGER_SECONDS, self.transport.close
        )

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError as err:
                # uvicorn logs a traceback for this; a client's bad bytes are one line.
                refusals.event("closing %s with 1007: invalid UTF-8 (%s)", peer(self.client), err)
                self.frames = []
                self.conn.send_close(CLOSE_INVALID_DATA, "invalid UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    async def run_asgi(self) -> None:
        """uvicorn's run_asgi, except that a detached connection stays open when the app returns."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
            elif self.inbox is not None:
                return  # detached: the protocol calls the app back per message from now on
        if self.close_timer is None:
            self.transport.close()

    def detach(
        self,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> bool:
        """Serve this connection from callbacks instead of the app's receive loop.

        After this the app returns from its handler (its task and coroutine frames end);
        each client message is handed to `on_message` in order, one at a time (a task per
        message, none while idle); `on_message` returning False ends the connection as the
        app returning would have; `on_gone` runs once when the connection ends. What only
        the handshake needed is dropped: the ASGI scope, the upgrade request and response.
        False (nothing changed) when the connection is already closing.
        """
        if self.inbox is not None or self.close_sent or self.transport.is_closing():
            return False
        inbox = Inbox(self, on_message, on_gone)
        queued, self.queue = self.queue, inbox  # type: ignore[assignment]
        self.writable = ALWAYS_WRITABLE  # type: ignore[assignment]  # only `send` waited on it
        self.inbox = inbox
        for name in ("scope", "response"):
            self.__dict__.pop(name, None)
        request = self.__dict__.pop("request", None)
        if request is not None:
            # websockets' parser generator keeps it as a local for good: empty it at least.
            request.headers.clear()
        while not queued.empty():
            inbox.put_nowait(queued.get_nowait())
        inbox.idle_check()
        return True

    def _mark_dead(self) -> None:
        sink = self.sink
        if sink is not None:
            sink.dead = True
            if sink.sock is not None:
                sink.sock.detach()  # never closes: the transport owns the descriptor
                sink.sock = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_dead()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._mark_dead()
        super().shutdown()

    def handle_close(self, event: Any) -> None:
        self._mark_dead()
        super().handle_close(event)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused_at = None


@functools.cache
def _deflate_offer(compression: str) -> Any:
    """One offer per mode, shared by every connection (it is configuration, not state)."""
    return deflate_offer(compression)
