"""Authentication for HTTP and WebSocket requests, role checks, client addresses and origins.

`AuthMiddleware` runs before every route: it resolves the credentials once (session cookie,
`Authorization: Bearer`, or `?token=`), the real client address (X-Forwarded-For only from a
trusted proxy) and stores both in the request state. Routes then state the role they need
with `requires(role, endpoint)`; a refusal is answered 401/403 and written to the audit log.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from scada.auth.audit import Auditor
from scada.auth.auditlog import AuditRecord
from scada.auth.identity import Identity, IdentityUnavailable
from scada.core.config import PlantConfig
from scada.core.errors import Refused
from scada.core.roles import ANONYMOUS, role_allows

log = logging.getLogger(__name__)

COOKIE = "scada_session"
# What our session ids look like (token_urlsafe(32)); anything else in the cookie is refused.
SESSION_VALUE = re.compile(r"[A-Za-z0-9_-]{20,128}")

__all__ = ["Auditor", "role_allows"]


class CredentialStore(Protocol):
    """Who a credential belongs to, and which are still valid: the AuthStore, or a gateway's
    replica of it."""

    def session_identity(self, secret: str) -> Identity | None: ...

    def token_identity(self, secret: str) -> Identity | None: ...

    def still_valid(self, digests: list[str]) -> set[str]: ...


class Invalid:
    """Credentials were presented but are wrong, expired or revoked (never anonymous).
    `clear_cookie`: they came in the session cookie, which the answer clears."""

    def __init__(self, reason: str, *, clear_cookie: bool = False) -> None:
        self.reason = reason
        self.clear_cookie = clear_cookie


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
    def __init__(self, app: ASGIApp, *, store: CredentialStore, config: PlantConfig) -> None:
        """`store`: the AuthStore, or a cluster gateway's replica of it (RedisAuthView)."""
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
        try:
            return self._identify(scope, headers)
        except IdentityUnavailable as err:
            return Invalid(f"cannot check credentials now ({err}); try again")

    def _identify(self, scope: Scope, headers: dict[str, str]) -> Identity | Invalid | None:
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
        value = session_cookie(headers.get("cookie", ""))
        if value is None:
            return None
        if not SESSION_VALUE.fullmatch(value):
            return Invalid("malformed session cookie", clear_cookie=True)
        return self.store.session_identity(value) or Invalid(
            "session expired or ended; log in again", clear_cookie=True
        )


def session_cookie(header: str) -> str | None:
    """The raw value of our cookie, however malformed the rest of the header is; None when
    the header does not carry it."""
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if name.strip() == COOKIE:
            return value.strip().strip('"') if sep else ""
    return None


def effective_identity(conn: HTTPConnection, config: PlantConfig) -> Identity | Invalid | None:
    """The caller's identity, the anonymous one where allowed, Invalid, or None (refused)."""
    identity: Identity | Invalid | None = getattr(conn.state, "identity", None)
    if identity is None and config.auth.allow_anonymous:
        return anonymous_identity(config)
    return identity


def anonymous_identity(config: PlantConfig) -> Identity:
    """Its own name and quota; where its role may act on alarms, the journal records the
    configured `alarms.default_user` as the actor, but the audit says anonymous."""
    return Identity(
        ANONYMOUS, config.auth.anonymous_role, "anonymous", acts_as=config.alarms.default_user
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def audit_record(
    conn: HTTPConnection, action: str, target: str, result: str, detail: str = ""
) -> AuditRecord:
    """The audit record of a request, under the caller's identity (or "-" if none)."""
    identity = effective_identity(conn, conn.app.state.config)
    who = identity if isinstance(identity, Identity) else None
    return AuditRecord(
        user=who.name if who else "-",
        role=who.role if who else "-",
        address=conn.state.client_address,
        action=action,
        target=target,
        result=result,
        detail=detail,
    )


def auditor_of(conn: HTTPConnection) -> Auditor:
    auditor: Auditor = conn.app.state.auditor
    return auditor


async def audit_request(
    conn: HTTPConnection, action: str, target: str, result: str, detail: str = ""
) -> None:
    await auditor_of(conn).record(audit_record(conn, action, target, result, detail))


def refused(err: Refused, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": err.code, "message": err.message},
        status_code=err.status,
        headers=headers,
    )


def unauthenticated(reason: Invalid | None) -> JSONResponse:
    """401; a bad session cookie is also cleared, so the browser continues without it."""
    message = reason.reason if reason is not None else "login required"
    response = refused(Refused("unauthenticated", message, 401))
    if reason is not None and reason.clear_cookie:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def audited(action: str, endpoint: Endpoint) -> Endpoint:
    """Write the action's audit record before it runs: no record, no action (503)."""

    async def run(request: Request) -> Response:
        record = audit_record(request, action, request.url.path, "requested")
        try:
            await auditor_of(request).action_record(record)
        except Refused as err:
            return refused(err)
        return await endpoint(request)

    return functools.update_wrapper(run, endpoint)  # __wrapped__: what it guards


def requires(role: str, endpoint: Endpoint, *, action: str | None = None) -> Endpoint:
    """Wrap an endpoint with a role check; refusals are 401/403 and audited. An endpoint
    that raises Refused answers with its code and status."""

    async def guarded(request: Request) -> Response:
        config: PlantConfig = request.app.state.config
        identity = effective_identity(request, config)
        what = action or f"{request.method} {request.url.path}"
        path = request.url.path
        if request.method not in ("GET", "HEAD") and not request.state.origin_ok:
            # A cross-site page may not make a browser change anything here (CSRF).
            origin = request.headers.get("origin", "")
            await audit_request(request, what, path, "forbidden_origin", origin)
            return refused(Refused("forbidden_origin", f"origin {origin} not allowed", 403))
        if identity is None or isinstance(identity, Invalid):
            invalid = identity if isinstance(identity, Invalid) else None
            reason = invalid.reason if invalid is not None else "login required"
            await audit_request(request, what, path, "unauthenticated", reason)
            return unauthenticated(invalid)
        if not role_allows(identity.role, role):
            await audit_request(request, what, path, "forbidden", f"needs {role}")
            return refused(Refused("forbidden", f"needs role {role}; you are {identity.role}", 403))
        request.state.user = identity
        # A heavy read's slot is taken only now, past the role check (scada.web.heavy).
        ticket = getattr(request.state, "heavy_ticket", None)
        if ticket is not None and (over := ticket()) is not None:
            return over  # type: ignore[no-any-return]
        try:
            return await endpoint(request)
        except Refused as err:
            return refused(err)

    return functools.update_wrapper(guarded, endpoint)


def identity_dict(identity: Identity) -> dict[str, Any]:
    return {
        "name": identity.name,
        "role": identity.role,
        "kind": identity.kind,
        "expires": identity.expires,
    }
