"""Login, logout, users, tokens and the audit log over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from scada.auth.store import AuthError, AuthStore
from scada.auth.web import COOKIE, Auditor, Identity, effective_identity, identity_dict, requires
from scada.core.config import PlantConfig
from scada.core.timefmt import parse_time
from scada.ratelimit import FailureWindow


def _store(request: Request) -> AuthStore:
    store: AuthStore = request.app.state.auth
    return store


def _failures(request: Request) -> FailureWindow:
    failures: FailureWindow = request.app.state.login_failures
    return failures


def _auditor(request: Request) -> Auditor:
    auditor: Auditor = request.app.state.auditor
    return auditor


MAX_BODY = 16_384  # logins, users and tokens are small; nothing unauthenticated reads more


async def _body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            return {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qsl

        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error, "message": message}, status_code=status)


async def login_page(request: Request) -> Response:
    from scada.app import STATIC

    return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-cache"})


async def _audit_refused_login(request: Request, name: str, address: str, result: str) -> None:
    # No identity yet: the attempted name, cut to the length a real user name may have.
    await _auditor(request).record(
        user=name[:64] or "-",
        role="-",
        address=address,
        action="login",
        target=name[:64],
        result=result,
    )


async def login(request: Request) -> Response:
    if not request.state.origin_ok:
        return _error(403, "forbidden_origin", "cross-site login refused")
    config: PlantConfig = request.app.state.config
    body = await _body(request)
    name, password = str(body.get("username", "")), str(body.get("password", ""))
    address = request.state.client_address
    wait = _failures(request).blocked_for(address, time.monotonic())
    if wait > 0:
        await _audit_refused_login(request, name, address, "throttled")
        return JSONResponse(
            {
                "ok": False,
                "error": "too_many_attempts",
                "message": f"too many failed logins; try again in {wait:.0f} s",
            },
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    # Counted before the (slow) check, so parallel guesses cannot all slip through.
    _failures(request).fail(address, time.monotonic())
    identity = await asyncio.to_thread(_store(request).verify_login, name, password)
    if identity is None:
        await _audit_refused_login(request, name, address, "failed")
        return _error(401, "bad_credentials", "wrong user name or password")
    _failures(request).forgive_one(address)
    secret, expires = await asyncio.to_thread(
        _store(request).create_session, identity.name, config.auth.session_hours
    )
    await _auditor(request).record(
        user=identity.name,
        role=identity.role,
        address=address,
        action="login",
        target=identity.name,
        result="ok",
    )
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
        return _error(403, "forbidden_origin", "cross-site logout refused")
    secret = request.cookies.get(COOKIE)
    identity = effective_identity(request, request.app.state.config)
    if secret:
        digest = await asyncio.to_thread(_store(request).delete_session, secret)
        request.app.state.hub.close_session(digest, "logged out")
    if isinstance(identity, Identity) and identity.kind == "session":
        await _auditor(request).request(request, "logout", identity.name, "ok")
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE, path="/")
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
        await asyncio.to_thread(_store(request).add_user, name, role, password)
    except AuthError as err:
        await _auditor(request).request(request, "user_add", name, "error", str(err))
        return _error(400, "invalid", str(err))
    await _auditor(request).request(request, "user_add", name, "ok", f"role {role}")
    return JSONResponse({"ok": True, "name": name, "role": role}, status_code=201)


async def disable_user(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        await asyncio.to_thread(_store(request).set_disabled, name, True)
    except AuthError as err:
        return _error(404, "unknown_user", str(err))
    request.app.state.hub.close_user(name, "account disabled")
    await _auditor(request).request(request, "user_disable", name, "ok")
    return JSONResponse({"ok": True})


async def list_tokens(request: Request) -> Response:
    return JSONResponse({"tokens": await asyncio.to_thread(_store(request).list_tokens)})


async def create_token(request: Request) -> Response:
    body = await _body(request)
    name, role = str(body.get("name", "")), str(body.get("role", "viewer"))
    if not name:
        return _error(400, "invalid", "a token needs a name")
    try:
        token_id, secret = await asyncio.to_thread(
            _store(request).create_token, name, role, request.state.user.name
        )
    except AuthError as err:
        return _error(400, "invalid", str(err))
    await _auditor(request).request(
        request, "token_create", f"{token_id} {name}", "ok", f"role {role}"
    )
    return JSONResponse(
        {"ok": True, "id": token_id, "name": name, "role": role, "token": secret}, status_code=201
    )


async def revoke_token(request: Request) -> Response:
    try:
        token_id = int(request.path_params["token_id"])
        digest = await asyncio.to_thread(_store(request).revoke_token, token_id)
    except (ValueError, AuthError) as err:
        return _error(404, "unknown_token", str(err))
    request.app.state.hub.close_session(digest, "token revoked")
    await _auditor(request).request(request, "token_revoke", str(token_id), "ok")
    return JSONResponse({"ok": True})


async def audit_log(request: Request) -> Response:
    q = request.query_params
    try:
        since = parse_time(q["since"]) if q.get("since") else None
        until = parse_time(q["until"]) if q.get("until") else None
        limit = min(max(int(q.get("limit", "100")), 1), 1000)
        before = int(q["before"]) if q.get("before") else None
    except ValueError as err:
        return _error(400, "invalid_parameter", f"bad query parameter: {err}")
    records = await asyncio.to_thread(
        _store(request).audit_query,
        since=since,
        until=until,
        user=q.get("user") or None,
        action=q.get("action") or None,
        limit=limit,
        before=before,
    )
    return JSONResponse(
        {
            "records": [r.as_dict() for r in records],
            "next_before": records[-1].id if len(records) == limit else None,
        }
    )


routes = [
    Route("/login", login_page),
    Route("/api/login", login, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/me", requires("viewer", me)),
    Route("/api/users", requires("admin", list_users), methods=["GET"]),
    Route("/api/users", requires("admin", add_user, action="user_add"), methods=["POST"]),
    Route(
        "/api/users/{name}/disable",
        requires("admin", disable_user, action="user_disable"),
        methods=["POST"],
    ),
    Route("/api/tokens", requires("admin", list_tokens), methods=["GET"]),
    Route("/api/tokens", requires("admin", create_token, action="token_create"), methods=["POST"]),
    Route(
        "/api/tokens/{token_id}",
        requires("admin", revoke_token, action="token_revoke"),
        methods=["DELETE"],
    ),
    Route("/api/audit", requires("admin", audit_log)),
]
