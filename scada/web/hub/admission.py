"""Who may open `/ws`: credentials, origin and connection quotas, checked before `accept`.

Refusals are answered with plain HTTP (RFC 6455 §4.2.2) and audited. Anonymous clients are
their own identity with their own quota (`max_anonymous_connections`); they never count
against a real user's `max_connections_per_user`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from scada.auth.audit import Auditor
from scada.auth.auditlog import AuditRecord
from scada.auth.identify import COOKIE, Invalid, effective_identity
from scada.auth.identity import Identity
from scada.core.config import PlantConfig
from scada.core.errors import Refused
from scada.fanout.broadcaster import Broadcaster

log = logging.getLogger(__name__)


class Admission:
    def __init__(
        self,
        config: Callable[[], PlantConfig],
        broadcaster: Broadcaster,
        auditor: Auditor | None,
    ) -> None:
        self._config = config
        self.broadcaster = broadcaster
        self.auditor = auditor

    async def admit(self, websocket: WebSocket) -> Identity | None:
        """The identity to serve, or None after answering the handshake with a refusal."""
        identity = effective_identity(websocket, self._config())
        try:
            if identity is None or isinstance(identity, Invalid):
                await self._refuse_credentials(websocket, identity)
                return None
            self._check(websocket, identity)
        except Refused as err:
            await self.refuse(websocket, err, identity if isinstance(identity, Identity) else None)
            return None
        return identity

    def _check(self, websocket: WebSocket, identity: Identity) -> None:
        if not getattr(websocket.state, "origin_ok", True):
            origin = websocket.headers.get("origin", "")
            raise Refused("forbidden_origin", f"origin {origin} not allowed", 403)
        srv = self._config().server
        if len(self.broadcaster.clients) >= srv.max_connections:
            raise Refused("too_many_connections", "server connection limit reached", 503)
        active = self.broadcaster.active()
        if identity.anonymous:
            if sum(1 for c in active if c.anonymous) >= srv.max_anonymous_connections:
                raise Refused(
                    "too_many_connections", "no more room for anonymous viewers; log in", 503
                )
            return
        mine = sum(1 for c in active if not c.anonymous and c.user == identity.name)
        if mine >= srv.max_connections_per_user:
            raise Refused(
                "too_many_connections", f"{identity.name} already has {mine} connections", 503
            )

    async def _refuse_credentials(self, websocket: WebSocket, invalid: Invalid | None) -> None:
        reason = invalid.reason if invalid is not None else "credentials required"
        clear = invalid is not None and invalid.clear_cookie
        await self.refuse(websocket, Refused("unauthenticated", reason, 401), clear_cookie=clear)

    async def refuse(
        self,
        websocket: WebSocket,
        err: Refused,
        identity: Identity | None = None,
        *,
        clear_cookie: bool = False,
    ) -> None:
        """Answer the handshake with plain HTTP, before any WebSocket data, and audit it."""
        address = getattr(websocket.state, "client_address", "")
        if self.auditor is not None:
            await self.auditor.record(
                AuditRecord(
                    user=identity.name if identity else "-",
                    role=identity.role if identity else "-",
                    address=address,
                    action="ws_connect",
                    target="/ws",
                    result=err.code,
                    detail=err.message,
                )
            )
        log.info("refused WebSocket from %s: %s (%s)", address or "?", err.code, err.message)
        response = JSONResponse(
            {"ok": False, "error": err.code, "message": err.message}, status_code=err.status
        )
        if clear_cookie:
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        await websocket.send_denial_response(response)
