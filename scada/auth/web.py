"""Authentication for HTTP and WebSocket requests, role checks, client addresses and origins.

`AuthMiddleware` runs before every route: it resolves the credentials once (session cookie,
`Authorization: Bearer`, or `?token=`), the real client address (X-Forwarded-For only from a
trusted proxy) and stores both in the request state. Routes then state the role they need
with `requires(role, endpoint)`; a refusal is answered 401/403 and written to the audit log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scada.auth.store import ROLES, AuthStore, Identity
from scada.core.config import PlantConfig

log = logging.getLogger(__name__)

COOKIE = "scada_session"


class Invalid:
    """Credentials were presented but are wrong, expired or revoked."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def role_allows(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _trusted(peer: str, proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return False
    for entry in proxies:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def client_address(scope: Scope, headers: dict[str, str], proxies: list[str]) -> str:
    """The real client: the nearest X-Forwarded-For hop not a trusted proxy, else the peer."""
    peer = _peer(scope)
    if not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def request_scheme(scope: Scope, headers: dict[str, str], proxies: list[str]) -> str:
    peer = _peer(scope)
    if _trusted(peer, proxies) and headers.get("x-forwarded-proto"):
        # The last value is the one our proxy set; earlier ones came from the client side.
        return headers["x-forwarded-proto"].split(",")[-1].strip().lower()
    scheme = str(scope.get("scheme", "http"))
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def _origin_tuple(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def origin_allowed(origin: str | None, allowed: list[str], own: str) -> bool:
    """Exact (scheme, host, port) match; look-alike hosts never match by prefix or suffix."""
    if origin is None:
        return True  # not a browser: credentials alone decide
    got = _origin_tuple(origin)
    if got is None:
        return False
    candidates = allowed or [own]
    return any(got == _origin_tuple(c) for c in candidates)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, store: AuthStore, config: PlantConfig) -> None:
        self.app = app
        self.store = store
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = _headers(scope)
            proxies = self.config.auth.trusted_proxies
            state = scope.setdefault("state", {})
            state["identity"] = self.identify(scope, headers)
            state["client_address"] = client_address(scope, headers, proxies)
            state["scheme"] = request_scheme(scope, headers, proxies)
            state["origin_ok"] = origin_allowed(
                headers.get("origin"),
                self.config.server.allowed_origins,
                f"{state['scheme']}://{headers.get('host', '')}",
            )
        await self.app(scope, receive, send)

    def identify(self, scope: Scope, headers: dict[str, str]) -> Identity | Invalid | None:
        auth = headers.get("authorization", "")
        if auth:
            kind, _, secret = auth.partition(" ")
            if kind.lower() != "bearer" or not secret:
                return Invalid("malformed Authorization header")
            return self.store.token_identity(secret.strip()) or Invalid("unknown or revoked token")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return self.store.token_identity(query["token"][0]) or Invalid(
                "unknown or revoked token"
            )
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            return None
        if COOKIE in cookie:
            return self.store.session_identity(cookie[COOKIE].value) or Invalid("session expired")
        return None


def effective_identity(conn: HTTPConnection, config: PlantConfig) -> Identity | Invalid | None:
    """The caller's identity, the anonymous one where allowed, Invalid, or None (refused)."""
    identity = conn.state.identity if "identity" in conn.state._state else None
    if identity is None and config.auth.allow_anonymous:
        # Recorded on acknowledgements and in the audit under the configured default name.
        return Identity(config.alarms.default_user, config.auth.anonymous_role, "anonymous")
    return identity


Endpoint = Callable[[Request], Awaitable[Response]]


REFUSALS = frozenset(
    {
        "forbidden",
        "unauthenticated",
        "forbidden_origin",
        "too_many_connections",
        "throttled",
        "failed",
    }
)
REFUSAL_WINDOW_S = 10.0


class Auditor:
    """Writes audit records off the event loop (each is an fsync'ed insert).

    Refusals repeat cheaply for an attacker and expensively for us, so the same refusal from
    the same address is written once per REFUSAL_WINDOW_S; the next record written says how
    many identical ones were folded into it.
    """

    def __init__(self, store: AuthStore) -> None:
        self.store = store
        self._folded: dict[tuple[str, str, str], tuple[float, int]] = {}

    def _fold(self, address: str, action: str, result: str) -> int | None:
        """None: skip this record. Otherwise how many identical ones were skipped before it."""
        if result not in REFUSALS:
            return 0
        key = (address, action, result)
        now = time.monotonic()
        started, skipped = self._folded.get(key, (-REFUSAL_WINDOW_S, 0))
        if now - started < REFUSAL_WINDOW_S:
            self._folded[key] = (started, skipped + 1)
            return None
        if len(self._folded) > 10_000:
            self._folded.clear()  # bounded memory under an address spray
        self._folded[key] = (now, 0)
        return skipped

    async def record(
        self,
        *,
        user: str,
        role: str,
        address: str,
        action: str,
        target: str,
        result: str,
        detail: str = "",
    ) -> None:
        skipped = self._fold(address, action, result)
        if skipped is None:
            return
        if skipped:
            detail = f"{detail} (+{skipped} identical refusals folded)".strip()
        try:
            await asyncio.to_thread(
                self.store.audit,
                user=user,
                role=role,
                address=address,
                action=action,
                target=target,
                result=result,
                detail=detail,
            )
        except Exception:
            log.exception("audit write failed: %s %s %s by %s", action, target, result, user)

    async def request(
        self, conn: HTTPConnection, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        config: PlantConfig = conn.app.state.config
        identity = effective_identity(conn, config)
        who = identity if isinstance(identity, Identity) else None
        await self.record(
            user=who.name if who else "-",
            role=who.role if who else "-",
            address=conn.state.client_address,
            action=action,
            target=target,
            result=result,
            detail=detail,
        )


def requires(role: str, endpoint: Endpoint, *, action: str | None = None) -> Endpoint:
    """Wrap an endpoint with a role check; refusals are 401/403 and audited."""

    async def guarded(request: Request) -> Response:
        config: PlantConfig = request.app.state.config
        identity = effective_identity(request, config)
        auditor: Auditor = request.app.state.auditor
        what = action or f"{request.method} {request.url.path}"
        if request.method not in ("GET", "HEAD") and not request.state.origin_ok:
            # A cross-site page may not make a browser change anything here (CSRF).
            origin = request.headers.get("origin", "")
            await auditor.request(request, what, request.url.path, "forbidden_origin", origin)
            return JSONResponse(
                {
                    "ok": False,
                    "error": "forbidden_origin",
                    "message": f"origin {origin} not allowed",
                },
                status_code=403,
            )
        if identity is None or isinstance(identity, Invalid):
            reason = identity.reason if isinstance(identity, Invalid) else "login required"
            await auditor.request(request, what, request.url.path, "unauthenticated", reason)
            return JSONResponse(
                {"ok": False, "error": "unauthenticated", "message": reason}, status_code=401
            )
        if not role_allows(identity.role, role):
            await auditor.request(request, what, request.url.path, "forbidden", f"needs {role}")
            return JSONResponse(
                {
                    "ok": False,
                    "error": "forbidden",
                    "message": f"needs role {role}; you are {identity.role}",
                },
                status_code=403,
            )
        request.state.user = identity
        return await endpoint(request)

    guarded.__name__ = getattr(endpoint, "__name__", "guarded")
    return guarded


def identity_dict(identity: Identity) -> dict[str, Any]:
    return {
        "name": identity.name,
        "role": identity.role,
        "kind": identity.kind,
        "expires": identity.expires,
    }
