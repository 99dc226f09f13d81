"""gzip for JSON and CSV responses, compressed in a worker thread, never on the event loop.

Starlette's GZipMiddleware compresses on the loop: 8 tags x 24 h of history is 404 KB of
JSON, 33-67 ms of zlib on the busy 2-core box, during which the 100 ms tick and every socket
would wait. Here the compression runs in starlette's thread pool (zlib releases the GIL
while it works), so the loop only hands bytes over.

What is compressed: a response whose `content-type` is JSON, NDJSON or CSV and which has no
`content-encoding` yet, to a request whose `Accept-Encoding` accepts gzip; a whole body only
from MINIMUM_SIZE bytes on (smaller ones do not gain). A streamed body (the alarm export) is
compressed chunk by chunk with one compressor, each chunk in the thread. Such responses carry
`Vary: Accept-Encoding` whether compressed or not, for caches in between.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MINIMUM_SIZE = 1024
LEVEL = 6  # zlib's default: 3.5x on 8 tags x 24 h of history JSON; 9 gains 1.5%
COMPRESSIBLE = ("application/json", "application/x-ndjson", "text/csv")


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header value allows gzip (a q=0 refuses it)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def gzip_bytes(body: bytes) -> bytes:
    """One whole gzip member (mtime 0: the same body gives the same bytes)."""
    return gzip.compress(body, LEVEL, mtime=0)


class GzipOffLoop:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(
            Headers(scope=scope).get("accept-encoding", "")
        ):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Responder(send, self.minimum_size).send)


class _Responder:
    def __init__(self, send: Send, minimum_size: int) -> None:
        self._send = send
        self.minimum_size = minimum_size
        self.start: Message | None = None  # held until the first body says how to send it
        self.compressible = False
        self.stream: Any = None  # zlib compressor of a streamed body

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = Headers(raw=message["headers"])
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            self.compressible = media in COMPRESSIBLE and "content-encoding" not in headers
            if not self.compressible:
                await self._send(message)
                return
            self.start = message
            MutableHeaders(scope=_raw(message)).add_vary_header("Accept-Encoding")
            return
        if kind != "http.response.body" or not self.compressible:
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.start is not None:  # the first body message
            start, self.start = self.start, None
            headers = MutableHeaders(scope=_raw(start))
            if not more:
                if len(body) >= self.minimum_size:
                    body = await run_in_threadpool(gzip_bytes, body)
                    headers["Content-Encoding"] = "gzip"
                    headers["Content-Length"] = str(len(body))
                await self._send(start)
                await self._send({"type": "http.response.body", "body": body})
                return
            headers["Content-Encoding"] = "gzip"
            del headers["Content-Length"]
            self.stream = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)
            await self._send(start)
        if self.stream is None:  # a whole body went out already
            return
        out = await run_in_threadpool(self.stream.compress, body) if body else b""
        if not more:
            out += await run_in_threadpool(self.stream.flush)
            self.stream = None
        if out or not more:
            await self._send({"type": "http.response.body", "body": out, "more_body": more})


def _raw(message: Message) -> MutableMapping[str, Any]:
    """MutableHeaders edits a scope-like mapping's `headers` list in place."""
    message["headers"] = list(message.get("headers", []))
    return message
