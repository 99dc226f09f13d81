"""Host check (DNS rebinding) and browser security headers, in the server itself.

Nginx adds the same headers in front (nginx/scada.conf); without it the server must not be
framable, sniffable or reachable under a foreign name. A rebinding page on `evil.example`
whose name now resolves to the plant server sends `Host: evil.example`: only the names this
server answers to (`server.allowed_hosts`, the hosts of `server.allowed_origins`, its own
names) and IP literals (which no rebinding can forge) pass.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scada.core.logfold import Fold

log = logging.getLogger(__name__)

# The dashboard loads only same-origin module scripts and one stylesheet and has no inline
# script or style; the same policy as nginx/scada.conf.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for old browsers
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
WILDCARD_BINDS = ("", "0.0.0.0", "::")


def own_hosts(bind_host: str, allowed: Iterable[str], origins: Iterable[str]) -> frozenset[str]:
    """Lower-case host names (no port) this server answers to."""
    names = {"localhost", bind_host}
    for name in (socket.gethostname(), socket.getfqdn()):
        names.add(name)
    names.update(allowed)
    names.update(urlsplit(o).hostname or "" for o in origins)
    return frozenset(n.lower().rstrip(".") for n in names if n and n not in WILDCARD_BINDS)


def host_name(header: str) -> str:
    """`Host` without its port; IPv6 literals without brackets."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    if not header:
        return True  # not a browser (HTTP/1.0 tools): nothing to rebind
    name = host_name(header.strip()).lower().rstrip(".")
    if "*" in names or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class GuardMiddleware:
    """Refuses foreign `Host` names (421) and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], headers: bool = True) -> None:
        self.app = app
        self.hosts = hosts
        self.headers = SECURITY_HEADERS if headers else ()
        self._refusals = Fold(log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not host_allowed(host, self.hosts):
            client = scope.get("client") or ("?", 0)
            self._refusals.event(
                "refused %s request from %s for unknown Host %r (server.allowed_hosts)",
                kind,
                client[0],
                host,
            )
            await self._refuse(scope, send)
            return
        if kind == "websocket" or not self.headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in self.headers if h[0] not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # The client went away mid-body (or its body deadline cut it): one line, no
            # traceback; nobody is left to answer.
            client = scope.get("client") or ("?", 0)
            self._refusals.event("%s left before its request body was complete", client[0])

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = b"unknown Host\n"
        start = "http.response.start"
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})
                return
            start = "websocket.http.response.start"
        await send(
            {
                "type": start,
                "status": 421,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    *self.headers,
                ],
            }
        )
        body_type = start.replace("start", "body")
        await send({"type": body_type, "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
