"""Login, logout, users, tokens and the audit log over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scada.auth.audit import Auditor
from scada.auth.auditlog import AuditRecord, audit_page
from scada.auth.identify import (
    COOKIE,
    audit_request,
    audited,
    auditor_of,
    effective_identity,
    identity_dict,
    refused,
    requires,
)
from scada.auth.identity import Identity
from scada.auth.store import AuthStore
from scada.auth.throttle import LoginGate
from scada.auth.users import check_name, check_role
from scada.core.config import PlantConfig
from scada.core.errors import Refused
from scada.core.offload import run_off
from scada.core.timefmt import TimeParameterError, time_param
from scada.web.pages import page

MAX_BODY = 16_384  # logins, users and tokens are small; nothing unauthenticated reads more
MAX_AUDIT_ID = 2**62  # SQLite integers are 64-bit; larger cursors are refused, not 500


def _store(request: Request) -> AuthStore:
    store: AuthStore = request.app.state.auth
    return store


def _gate(request: Request) -> LoginGate:
    gate: LoginGate = request.app.state.login_gate
    return gate


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise Refused("body_too_large", f"body over {MAX_BODY} bytes", 413)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise Refused("invalid_json", "the body is not a JSON object") from None
    if not isinstance(data, dict):
        raise Refused("invalid_json", "the body is not a JSON object")
    return data


async def _audit_refused_login(request: Request, name: str, address: str, result: str) -> None:
    # No identity yet: the attempted name, cut to the length a real user name may have.
    await auditor_of(request).record(
        AuditRecord(
            user=name[:64] or "-",
            role="-",
            address=address,
            action="login",
            target=name[:64],
            result=result,
        )
    )


async def login(request: Request) -> Response:
    if not request.state.origin_ok:
        return refused(Refused("forbidden_origin", "cross-site login refused", 403))
    try:
        body = await _body(request)
    except Refused as err:
        return refused(err)
    name, password = str(body.get("username", "")), str(body.get("password", ""))
    address = request.state.client_address
    ready = getattr(request.app.state, "auth_ready", None)
    if ready is not None and not ready():
        # A cluster's ingest node taking over: its users and sessions are being merged.
        starting = Refused("starting", "this node is taking over; try again in a moment", 503)
        return refused(starting, headers={"Retry-After": "1"})
    gate = _gate(request)
    try:
        gate.admit(address)
        identity = await gate.hash(_store(request).verify_login, name, password)
    except Refused as err:
        await _audit_refused_login(request, name, address, "throttled")
        wait = getattr(err, "retry_after", 1)
        return refused(err, headers={"Retry-After": str(wait)})
    if identity is None:
        await _audit_refused_login(request, name, address, "failed")
        return refused(Refused("bad_credentials", "wrong user name or password", 401))
    gate.succeeded(address)
    return await _open_session(request, identity, address)


async def _open_session(request: Request, identity: Identity, address: str) -> Response:
    config: PlantConfig = request.app.state.config
    record = AuditRecord(identity.name, identity.role, address, "login", identity.name, "ok")
    try:
        await auditor_of(request).action_record(record)
    except Refused as err:
        return refused(err)  # no session the audit trail does not show
    secret, expires = await asyncio.to_thread(
        _store(request).create_session, identity.name, config.auth.session_hours
    )
    flush = getattr(request.app.state, "auth_flush", None)
    if flush is not None:
        await flush()  # a cluster's ingest node: the session is in Redis for every gateway
    response = JSONResponse(
        {"ok": True, "user": identity.name, "role": identity.role, "expires": expires}
    )
    secure = config.auth.cookie_secure == "always" or (
        config.auth.cookie_secure == "auto" and request.state.scheme == "https"
    )
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(config.auth.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    if not request.state.origin_ok:
        return refused(Refused("forbidden_origin", "cross-site logout refused", 403))
    secret = request.cookies.get(COOKIE)
    identity = effective_identity(request, request.app.state.config)
    if secret:
        digest = await asyncio.to_thread(_store(request).delete_session, secret)
        request.app.state.hub.close_session(digest, "logged out")
    if isinstance(identity, Identity) and identity.kind == "session":
        await audit_request(request, "logout", identity.name, "ok")
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def me(request: Request) -> Response:
    identity = request.state.user
    return JSONResponse({"ok": True, **identity_dict(identity)})


async def list_users(request: Request) -> Response:
    return JSONResponse({"users": await asyncio.to_thread(_store(request).list_users)})


async def add_user(request: Request) -> Response:
    body = await _body(request)
    name, role, password = (str(body.get(k, "")) for k in ("name", "role", "password"))
    try:
        # Hashing: in the password executor, never on the shared pool.
        await _gate(request).hash(_store(request).add_user, name, role, password)
    except Refused as err:
        await audit_request(request, "user_add", name[:64], "error", err.message)
        raise
    await audit_request(request, "user_add", name, "ok", f"role {role}")
    return JSONResponse({"ok": True, "name": name, "role": role}, status_code=201)


async def disable_user(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        await asyncio.to_thread(_store(request).set_disabled, name, True)
    except Refused as err:
        raise Refused("unknown_user", err.message, 404) from err
    request.app.state.hub.close_user(name, "account disabled")
    await audit_request(request, "user_disable", name, "ok")
    return JSONResponse({"ok": True})


async def list_tokens(request: Request) -> Response:
    return JSONResponse({"tokens": await asyncio.to_thread(_store(request).list_tokens)})


async def create_token(request: Request) -> Response:
    body = await _body(request)
    name, role = str(body.get("name", "")), str(body.get("role", "viewer"))
    check_name(name, "token")
    check_role(role)
    token_id, secret = await asyncio.to_thread(
        _store(request).create_token, name, role, request.state.user.name
    )
    await audit_request(request, "token_create", f"{token_id} {name}", "ok", f"role {role}")
    return JSONResponse(
        {"ok": True, "id": token_id, "name": name, "role": role, "token": secret}, status_code=201
    )


async def revoke_token(request: Request) -> Response:
    raw = request.path_params["token_id"]
    if not raw.isdigit() or int(raw) > MAX_AUDIT_ID:
        raise Refused("unknown_token", f"no token with id {raw[:20]!r}", 404)
    token_id = int(raw)
    try:
        digest = await asyncio.to_thread(_store(request).revoke_token, token_id)
    except Refused as err:
        raise Refused("unknown_token", err.message, 404) from err
    request.app.state.hub.close_session(digest, "token revoked")
    await audit_request(request, "token_revoke", str(token_id), "ok")
    return JSONResponse({"ok": True})


def _audit_params(request: Request) -> dict[str, Any]:
    q = request.query_params
    try:
        since = time_param("since", q.get("since"))
        until = time_param("until", q.get("until"))
    except TimeParameterError as err:
        raise Refused("invalid_parameter", str(err)) from None
    try:
        limit = int(q.get("limit", "100"))
        before = int(q["before"]) if q.get("before") else None
    except (ValueError, OverflowError) as err:
        raise Refused("invalid_parameter", f"bad query parameter: {err}") from None
    if before is not None and not 1 <= before <= MAX_AUDIT_ID:
        raise Refused("invalid_parameter", f"before must be between 1 and {MAX_AUDIT_ID}")
    return {
        "since": since,
        "until": until,
        "user": q.get("user") or None,
        "action": q.get("action") or None,
        "limit": min(max(limit, 1), 1000),
        "before": before,
    }


async def audit_log(request: Request) -> Response:
    params = _audit_params(request)
    offload = getattr(request.app.state, "offload", None)
    body = await run_off(offload, audit_page, _store(request).path, params)
    return Response(body, media_type="application/json")


routes = [
    Route("/login", page("login.html")),
    Route("/api/login", login, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/me", requires("viewer", me)),
    Route("/api/users", requires("admin", list_users), methods=["GET"]),
    Route(
        "/api/users",
        requires("admin", audited("user_add", add_user), action="user_add"),
        methods=["POST"],
    ),
    Route(
        "/api/users/{name}/disable",
        requires("admin", audited("user_disable", disable_user), action="user_disable"),
        methods=["POST"],
    ),
    Route("/api/tokens", requires("admin", list_tokens), methods=["GET"]),
    Route(
        "/api/tokens",
        requires("admin", audited("token_create", create_token), action="token_create"),
        methods=["POST"],
    ),
    Route(
        "/api/tokens/{token_id}",
        requires("admin", audited("token_revoke", revoke_token), action="token_revoke"),
        methods=["DELETE"],
    ),
    Route("/api/audit", requires("admin", audit_log)),
]

__all__ = ["Auditor", "routes"]
