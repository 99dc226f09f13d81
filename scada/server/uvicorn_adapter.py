"""The one seam to uvicorn: everything here touches its internals, nothing else does.

Two protocol subclasses:
- `ScadaWebSocketProtocol` exposes each connection's transport as a `FrameSink` in the ASGI
  scope extension `scada.sink`, so the broadcaster writes one finished frame to every client
  (uvicorn's own `send` re-encodes every message and waits while the socket is paused). Once
  the handshake is done the app may `detach`: it returns, and the protocol calls it back per
  client message instead, so an idle connection keeps no asyncio task, coroutine frames, ASGI
  scope or receive queue (docs/performance.md, "Memory per connection");
- `ScadaHttpProtocol` bounds what a client may make the server hold: a deadline for every
  request head and body, a size limit for the head (431 before the loop parses megabytes),
  and a cap on connections still speaking HTTP, idle keep-alive ones closed first.

Settings come in through `uvicorn_options` (bound with functools.partial), never as class
attributes. `missing_internals` lists what this module relies on and this uvicorn lacks;
`require_uvicorn` turns that into a refusal to start with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from scada.core.logfold import Fold
from scada.fanout.wsframes import (
    PLAIN,
    TEXT,
    TEXT_DEFLATED,
    deflate_offer,
    frame_header,
    framing_for,
)
from scada.server.tcpinfo import borrow, tcp_progress

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 10.0  # a closed client that never reads its close frame is cut after this
CLOSE_INVALID_DATA = 1007
# One header line or the request line, as websockets parses the handshake (MAX_LINE_LENGTH
# 8192 with its CRLF); longer ones get 431 / 414 here, before uvicorn hands the upgrade over.
MAX_LINE_BYTES = 8190
LINGER_S = 2.0  # after a refusal, input is read and dropped this long, so the answer arrives
LINGER_BYTES = 1 << 20  # ... or until this much was dropped


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


# -- start-up check -------------------------------------------------------------------------

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
    missing = missing_internals()
    if missing:
        raise UnsupportedServer(
            f"uvicorn {uvicorn.__version__} lacks what scada/server/uvicorn_adapter.py relies on: "
            f"{', '.join(missing)}. Install the tested versions (pip install -c "
            "constraints.txt .) or port the adapter to this uvicorn."
        )


class UnsupportedServer(RuntimeError):
    pass


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    return None


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


# -- WebSocket -------------------------------------------------------------------------------


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
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # websockets refused the request head (431 for too many or too long header
            # lines, nothing for an unsupported request); uvicorn would neither send that
            # answer nor close, and the connection would hang outside max_connections.
            self.close_sent = True
            answer = b"".join(self.conn.data_to_send())
            self.transport.write(answer or _plain_response(400, "Bad Request", "bad handshake\n"))
            self.transport.close()
            _refusals.event(
                "refused WebSocket handshake from %s: %s",
                _peer(self.client),
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

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError as err:
                # uvicorn logs a traceback for this; a client's bad bytes are one line.
                _refusals.event("closing %s with 1007: invalid UTF-8 (%s)", _peer(self.client), err)
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
        self.writable = _ALWAYS_WRITABLE  # type: ignore[assignment]  # only `send` waited on it
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

    def handle_parser_exception(self) -> None:
        self._mark_dead()
        super().handle_parser_exception()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused_at = None


class _AlwaysWritable:
    """Stands in for the `writable` event of a detached connection: nothing awaits it."""

    __slots__ = ()

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return True

    async def wait(self) -> bool:
        return True


_ALWAYS_WRITABLE = _AlwaysWritable()


class Inbox:
    """The receive queue of a detached connection: uvicorn puts ASGI receive events here.

    Messages are handled one at a time, in order; while one is handled the next wait and
    reading stays paused (uvicorn pauses it per message), as with the app's receive loop.
    """

    __slots__ = ("_busy", "_on_gone", "_on_message", "_pending", "done", "proto")

    def __init__(
        self,
        proto: ScadaWebSocketProtocol,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> None:
        self.proto = proto
        self._on_message = on_message
        self._on_gone = on_gone
        self._pending: deque[Any] | None = None  # made when a second one waits
        self._busy: asyncio.Task[None] | None = None
        self.done = False

    def put_nowait(self, message: Any) -> None:  # an ASGI receive event
        if self.done:
            return
        if self._busy is not None:
            if self._pending is None:
                self._pending = deque()
            self._pending.append(message)
            return
        self._start(message)

    def empty(self) -> bool:
        return not self._pending

    def _start(self, message: Any) -> None:
        if message["type"] == "websocket.disconnect":
            self._finish()
            return
        proto = self.proto
        task = proto.loop.create_task(self._handle(message))
        self._busy = task
        proto.tasks.add(task)  # uvicorn's shutdown waits for it, as for an app task
        task.add_done_callback(proto.on_task_complete)

    async def _handle(self, message: Any) -> None:
        try:
            go_on = await self._on_message(message)
        except Exception:
            log.exception("handling a WebSocket message from %s failed", _peer(self.proto.client))
            go_on = False
        self._busy = None
        if not go_on:
            self._finish()
        elif self._pending:
            self._start(self._pending.popleft())
        else:
            self.idle_check()

    def idle_check(self) -> None:
        """Nothing waits: read again (uvicorn paused reading when the last message came)."""
        proto = self.proto
        if self._busy is None and not self._pending and proto.read_paused and not self.done:
            proto.read_paused = False
            proto.transport.resume_reading()

    def _finish(self) -> None:
        """The connection ends for the app: what its handler returning would have done."""
        self.done = True
        self._pending = None
        self._on_gone()
        # On the next turn, as when the app's task wakes up: whoever put the disconnect here
        # (a close frame being sent, uvicorn's shutdown) finishes writing first.
        self.proto.loop.call_soon(self._close)

    def _close(self) -> None:
        proto = self.proto
        if proto.close_timer is None:
            proto.transport.close()


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


@functools.cache
def _deflate_offer(compression: str) -> Any:
    """One offer per mode, shared by every connection (it is configuration, not state)."""
    return deflate_offer(compression)


# -- HTTP ------------------------------------------------------------------------------------

_refusals = Fold(log)  # one line per kind of refusal per window, with a count of the rest


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"


class HttpGate:
    """Connections still speaking HTTP: at most `limit`; idle keep-alive ones make room first.

    WebSocket connections leave the gate when they upgrade (`server.max_connections` bounds
    those), so the file descriptors the server can be made to hold stay budgeted.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: set[ScadaHttpProtocol] = set()
        self.idle: dict[ScadaHttpProtocol, None] = {}  # oldest first

    def admit(self, proto: ScadaHttpProtocol) -> bool:
        if len(self.live) >= self.limit:
            victim = next(iter(self.idle), None)
            if victim is None:
                return False
            self.leave(victim)
            victim.transport.close()
        self.live.add(proto)
        return True

    def leave(self, proto: ScadaHttpProtocol) -> None:
        self.live.discard(proto)
        self.idle.pop(proto, None)

    def set_idle(self, proto: ScadaHttpProtocol, idle: bool) -> None:
        if not idle:
            self.idle.pop(proto, None)
        elif proto in self.live:
            self.idle[proto] = None


class RequestRefused(Exception):
    """Raised from a parser callback to stop httptools; the status is on the protocol."""


def _plain_response(status: int, phrase: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class ScadaHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with deadlines, a head size limit and the connection gate."""

    def __init__(self, *args: Any, wire: WireSettings, gate: HttpGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire = wire
        self.gate = gate
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_head = True  # bytes now belong to a request head
        self._head_bytes = 0
        self._url_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._dropped: int | None = None  # refused: input bytes read and dropped so far

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.gate.admit(self):
            _refusals.event(
                "refused HTTP connection from %s: %d connections not yet upgraded "
                "(server.max_http_connections)",
                _peer(self.client),
                self.gate.limit,
            )
            self._refuse(503, "Service Unavailable", "too many connections\n")
            return
        self._arm(self.wire.head_timeout, "no complete request head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.gate.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._dropped is not None:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.abort()
            return
        self.gate.set_idle(self, False)
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # a callback's RequestRefused arrives as one too
            if self._refusal is not None:
                self._refuse(*self._refusal)
                return
            msg = "Invalid HTTP request received."
            _refusals.event("%s from %s", msg, _peer(self.client))
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._reading_head and self._head_bytes > self.wire.max_head_bytes:
            self._head_refused(431, f"request head over {self.wire.max_head_bytes} bytes")

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self.gate.leave(self)  # server.max_connections counts it from now on
        super().handle_websocket_upgrade()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.gate.set_idle(self, self.timeout_keep_alive_task is not None)

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = 0
        if self._deadline is None:
            self._arm(self.wire.head_timeout, "no complete request head")

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        super().on_url(url)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._reading_head = False
        self._check_head()
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        super().on_headers_complete()
        if not upgrade:
            self._arm(self.wire.body_timeout, "request body not complete")

    def on_message_complete(self) -> None:
        self._disarm()
        self._reading_head = True  # what arrives next is the next request's head
        self._head_bytes = 0
        super().on_message_complete()

    def _check_head(self) -> None:
        """Refuse a head over the limits (counted exactly, once it is complete)."""
        if self._url_bytes + 16 > MAX_LINE_BYTES:
            self._refusal = (414, "URI Too Long", f"request line over {MAX_LINE_BYTES} bytes\n")
            raise RequestRefused
        headers = self.headers
        if len(headers) > self.wire.max_headers:
            self._head_refused(431, f"more than {self.wire.max_headers} header fields")
        size = self._url_bytes + 16
        for name, value in headers:
            line = len(name) + len(value) + 4
            if line > MAX_LINE_BYTES:
                self._head_refused(431, f"a header field over {MAX_LINE_BYTES} bytes")
            size += line
        if size > self.wire.max_head_bytes:
            self._head_refused(431, f"request head over {self.wire.max_head_bytes} bytes")

    def _head_refused(self, status: int, reason: str) -> None:
        _refusals.event("refused request from %s: %s (%d)", _peer(self.client), reason, status)
        self._refusal = (status, "Request Header Fields Too Large", reason + "\n")
        if not self._reading_head:
            raise RequestRefused  # inside a parser callback: stop httptools
        self._refuse(*self._refusal)

    # -- deadlines and refusals ----------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, what: str, seconds: float) -> None:
        self._deadline = None
        _refusals.event("closing %s: %s within %.0f s", _peer(self.client), what, seconds)
        self.transport.close()

    def _refuse(self, status: int, phrase: str, text: str) -> None:
        """Answer and half-close; read and drop the rest a while, so the answer is not reset."""
        self._disarm()
        self.gate.leave(self)
        self._dropped = 0
        transport = self.transport
        transport.write(_plain_response(status, phrase, text))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.abort)
        else:
            transport.close()
