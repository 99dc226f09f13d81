"""The `/ws` endpoint: handshake, `connected` + `snapshot`, then a receive loop.

Server → client frames all go through the client's FrameSink (never the ASGI `send`), so
per-connection `seq` order holds whatever mix of broadcast and replies is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from scada import __version__
from scada.alarms.engine import AlarmRequestError
from scada.auth.store import Identity
from scada.auth.web import Auditor, Invalid, effective_identity
from scada.broadcaster import Client
from scada.core.config import PlantConfig
from scada.core.timefmt import iso_ms
from scada.messages import MessageHandler, RequestError
from scada.ratelimit import TokenBucket
from scada.runtime import Runtime
from scada.wsserver import AsgiSink, FrameSink

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
# A client further behind than this many alarm events gets a fresh snapshot instead of a
# replay, so one resume can never hold up the others.
MAX_REPLAY = 10_000
RECHECK_S = 5.0  # open sockets' credentials are re-checked this often


class Hub:
    def __init__(self, runtime: Runtime, auditor: Auditor | None = None) -> None:
        self.runtime = runtime
        self.broadcaster = runtime.broadcaster
        self.handler = MessageHandler(self, max_bytes=self.config.server.max_message_bytes)
        self.auditor = auditor
        self._next_recheck = 0.0
        self._rechecking = False
        runtime.on_tick(self._expire_sessions)

    @property
    def config(self) -> PlantConfig:
        return self.runtime.config  # follows a config reload

    @property
    def line_ids(self) -> list[str]:
        return self.runtime.schema.line_ids

    # -- connection ----------------------------------------------------------------------

    async def _refuse(
        self,
        websocket: WebSocket,
        status: int,
        error: str,
        message: str,
        identity: Identity | None = None,
    ) -> None:
        """Answer the handshake with plain HTTP, before any WebSocket data, and audit it."""
        if self.auditor is not None:
            await self.auditor.record(
                user=identity.name if identity else "-",
                role=identity.role if identity else "-",
                address=getattr(websocket.state, "client_address", ""),
                action="ws_connect",
                target="/ws",
                result=error,
                detail=message,
            )
        log.info(
            "refused WebSocket from %s: %s (%s)",
            getattr(websocket.state, "client_address", "?"),
            error,
            message,
        )
        await websocket.send_denial_response(
            JSONResponse({"ok": False, "error": error, "message": message}, status_code=status)
        )

    async def _admit(self, websocket: WebSocket) -> Identity | None:
        identity = effective_identity(websocket, self.config)
        if identity is None or isinstance(identity, Invalid):
            reason = identity.reason if isinstance(identity, Invalid) else "credentials required"
            await self._refuse(websocket, 401, "unauthenticated", reason)
            return None
        if not getattr(websocket.state, "origin_ok", True):
            origin = websocket.headers.get("origin", "")
            await self._refuse(
                websocket, 403, "forbidden_origin", f"origin {origin} not allowed", identity
            )
            return None
        srv = self.config.server
        if len(self.broadcaster.clients) >= srv.max_connections:
            await self._refuse(
                websocket, 503, "too_many_connections", "server connection limit reached", identity
            )
            return None
        if identity.kind == "anonymous":
            anonymous = sum(1 for c in self.broadcaster.active() if c.anonymous)
            if anonymous >= srv.max_anonymous_connections:
                await self._refuse(
                    websocket,
                    503,
                    "too_many_connections",
                    "no more room for anonymous viewers; log in",
                    identity,
                )
                return None
        else:
            mine = sum(1 for c in self.broadcaster.active() if c.user == identity.name)
            if mine >= srv.max_connections_per_user:
                await self._refuse(
                    websocket,
                    503,
                    "too_many_connections",
                    f"{identity.name} already has {mine} connections",
                    identity,
                )
                return None
        return identity

    async def endpoint(self, websocket: WebSocket) -> None:
        identity = await self._admit(websocket)
        if identity is None:
            return
        await websocket.accept()
        # Raw frame sink from our uvicorn protocol; the ASGI fallback only for other servers.
        sink: FrameSink = websocket.scope.get("extensions", {}).get("scada.sink") or AsgiSink(
            websocket._send
        )
        client = Client(
            id=self.broadcaster.new_client_id(),
            sink=sink,
            role=identity.role,
            user=identity.name,
            address=getattr(websocket.state, "client_address", ""),
            session=identity.session,
            expires=identity.expires,
            anonymous=identity.kind == "anonymous",
        )
        srv = self.config.server
        bucket = TokenBucket(srv.messages_per_second, srv.message_burst)
        client.send("connected", self._connected(client))
        self.send_snapshot(client)
        # Registered only now: no tick can run between the snapshot and this line.
        self.broadcaster.add(client)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                verdict = bucket.take(time.monotonic())
                if verdict == TokenBucket.REFUSE:
                    client.send(
                        "error",
                        {
                            "code": "rate_limited",
                            "message": f"over {srv.messages_per_second:g} messages per second",
                        },
                    )
                    continue
                if verdict == TokenBucket.ABUSE:
                    log.warning(
                        "client %s (%s, %s) flooding; closing with 1008",
                        client.id,
                        client.user,
                        client.address,
                    )
                    client.sink.close(CLOSE_POLICY, "message rate limit")
                    break
                if client.closed:
                    break  # closed (logout, expiry, slow) while this message waited
                text = message.get("text")
                try:
                    await self.handler.handle(
                        client, text if text is not None else message["bytes"]
                    )
                except Exception:
                    log.exception("handling a message from client %s failed", client.id)
                    client.sink.close(CLOSE_ERROR, "server error")
                    break
        finally:
            self.broadcaster.remove(client)

    def _connected(self, client: Client) -> dict[str, Any]:
        srv = self.config.server
        return {
            "client_id": client.id,
            "role": client.role,
            "user": client.user,
            "server_version": __version__,
            "protocol": PROTOCOL_VERSION,
            "lines": self.line_ids,
            "batch_interval_ms": srv.batch_interval_ms,
            "heartbeat_interval_ms": srv.heartbeat_interval_ms,
        }

    def snapshot(
        self, *, recovered: bool | None = None, lines: list[str] | None = None
    ) -> dict[str, Any]:
        alarms = self.runtime.alarms
        data: dict[str, Any] = {
            "lines": self.runtime.line_samples(lines),
            "alarms": alarms.current() if alarms is not None else [],
            "alarm_cursor": alarms.cursor() if alarms is not None else 0,
        }
        if recovered is not None:
            data["recovered"] = recovered
        return data

    def send_snapshot(self, client: Client, *, recovered: bool | None = None) -> None:
        lines = None if client.lines is None else [i for i in self.line_ids if i in client.lines]
        snapshot = self.snapshot(recovered=recovered, lines=lines)
        client.snapshot_cursor = snapshot["alarm_cursor"]
        client.send("snapshot", snapshot)

    # -- Services for the message handler ------------------------------------------------

    def resubscribe(
        self, client: Client, lines: frozenset[str] | None, types: frozenset[str]
    ) -> None:
        self.broadcaster.resubscribe(client, lines, types)

    async def resume(self, client: Client, cursor: int) -> None:
        """Replay what the client missed before this connection's snapshot, then a snapshot.

        Events after `client.snapshot_cursor` already reached it live on this connection, so
        they are not sent twice. A cursor too far behind gets the snapshot alone.
        """
        alarms = self.runtime.alarms
        if alarms is None:
            self.send_snapshot(client, recovered=False)
            return
        if client.resuming:
            raise RequestError("busy", "a resume is already running on this connection")
        upto = client.snapshot_cursor
        if upto - cursor > MAX_REPLAY:
            self.send_snapshot(client, recovered=False)
            return
        client.resuming = True
        try:
            missed = await alarms.replay(cursor, upto)
        finally:
            client.resuming = False
        if client.closed:
            return
        if missed is None:
            self.send_snapshot(client, recovered=False)
            return
        for event in missed:
            if "alarm" in client.types and client.wants_line(event.get("production_line_id")):
                client.send("alarm", event)
        self.send_snapshot(client, recovered=True)

    async def alarm_request(self, client: Client, kind: str, data: BaseModel) -> Any:
        alarms = self.runtime.alarms
        if alarms is None:
            raise RequestError("unavailable", "the alarm service is not running")
        target = str(getattr(data, "alarm_id", "") or getattr(data, "alarm", ""))
        try:
            if kind == "ack":
                events = await alarms.ack(data.alarm_id, client.user, data.comment)  # type: ignore[attr-defined]
            elif kind == "shelve":
                events = await alarms.shelve(data.alarm, data.minutes, client.user, data.comment)  # type: ignore[attr-defined]
            else:
                events = await alarms.unshelve(data.alarm, client.user, data.comment)  # type: ignore[attr-defined]
        except AlarmRequestError as err:
            await self._audit(client, kind, target, err.code, str(err))
            raise RequestError(err.code, str(err)) from err
        self.announce(events)
        await self._audit(client, kind, target, "ok", getattr(data, "comment", ""))
        return {"events": events}

    async def _audit(
        self, client: Client, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        if self.auditor is not None:
            await self.auditor.record(
                user=client.user,
                role=client.role,
                address=client.address,
                action=action,
                target=target,
                result=result,
                detail=detail,
            )

    def announce(self, events: list[dict[str, Any]]) -> None:
        """Push committed alarm events to every client now, not at the next tick."""
        if events:
            self.broadcaster.publish_alarms(events, iso_ms(time.time()))

    async def audit_refusal(self, client: Client, action: str, target: str) -> None:
        log.info(
            "refused %s on %s for %s (role %s) from %s",
            action,
            target or "-",
            client.user,
            client.role,
            client.address,
        )
        await self._audit(client, action, target, "forbidden")

    # -- session lifetime ----------------------------------------------------------------

    def close_session(self, session: str, reason: str) -> None:
        self._close_where(lambda c: c.session == session, reason)

    def close_user(self, user: str, reason: str) -> None:
        self._close_where(lambda c: c.user == user, reason)

    def _close_where(self, match: Callable[[Client], bool], reason: str) -> None:
        for client in [c for c in self.broadcaster.active() if match(c)]:
            client.sink.close(CLOSE_POLICY, reason)
            self.broadcaster.remove(client)

    async def _recheck_credentials(self) -> None:
        """Close sockets whose session or token was revoked, even by another process."""
        auth = self.auditor.store if self.auditor is not None else None
        digests = list({c.session for c in self.broadcaster.active() if c.session})
        if auth is None or not digests:
            return
        try:
            valid = await asyncio.to_thread(auth.still_valid, digests)
        except Exception:
            log.exception("credential re-check failed")
            return
        self._close_where(
            lambda c: c.session is not None and c.session not in valid, "credentials revoked"
        )

    def _expire_sessions(self) -> None:
        now = time.time()
        if now >= self._next_recheck and not self._rechecking:
            self._next_recheck = now + RECHECK_S
            self._rechecking = True
            task = asyncio.create_task(self._recheck_credentials())
            task.add_done_callback(lambda _t: setattr(self, "_rechecking", False))
        self._close_where(lambda c: c.expires is not None and c.expires <= now, "session expired")
