"""uvicorn's httptools protocol bounding what a client may make the server hold: a deadline
for every request head and body, a size limit for the head (431 before the loop parses
megabytes), and the connection gate (scada.server.httpgate), idle keep-alive ones closed
first."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scada.server.httpgate import HttpGate
from scada.server.refusals import peer, plain_response, refusals
from scada.server.wiresettings import WireSettings

# One header line or the request line, as websockets parses the handshake (MAX_LINE_LENGTH
# 8192 with its CRLF); longer ones get 431 / 414 here, before uvicorn hands the upgrade over.
MAX_LINE_BYTES = 8190
LINGER_S = 2.0  # after a refusal, input is read and dropped this long, so the answer arrives
LINGER_BYTES = 1 << 20  # ... or until this much was dropped


class RequestRefused(Exception):
    """Raised from a parser callback to stop httptools; the status is on the protocol."""


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
            refusals.event(
                "refused HTTP connection from %s: %d connections not yet upgraded "
                "(server.max_http_connections)",
                peer(self.client),
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
            refusals.event("%s from %s", msg, peer(self.client))
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
        refusals.event("refused request from %s: %s (%d)", peer(self.client), reason, status)
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
        refusals.event("closing %s: %s within %.0f s", peer(self.client), what, seconds)
        self.transport.close()

    def _refuse(self, status: int, phrase: str, text: str) -> None:
        """Answer and half-close; read and drop the rest a while, so the answer is not reset."""
        self._disarm()
        self.gate.leave(self)
        self._dropped = 0
        transport = self.transport
        transport.write(plain_response(status, phrase, text))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.abort)
        else:
            transport.close()
