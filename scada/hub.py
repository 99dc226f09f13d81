"""The `/ws` endpoint: handshake, `connected` + `snapshot`, then a receive loop.

Server → client frames all go through the client's FrameSink (never the ASGI `send`), so
per-connection `seq` order holds whatever mix of broadcast and replies is written.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel
from starlette.websockets import WebSocket

from scada import __version__
from scada.broadcaster import Client
from scada.messages import MessageHandler, RequestError
from scada.runtime import Runtime
from scada.timefmt import iso_ms
from scada.wsserver import AsgiSink, FrameSink

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


class Hub:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.broadcaster = runtime.broadcaster
        self.handler = MessageHandler(self, max_bytes=self.config.server.max_message_bytes)

    @property
    def line_ids(self) -> list[str]:
        return self.runtime.schema.line_ids

    # -- connection ----------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        identity = getattr(websocket.state, "identity", None)
        await websocket.accept()
        sink: FrameSink = websocket.scope.get("extensions", {}).get("scada.sink") or AsgiSink(
            websocket._send
        )
        address = websocket.client.host if websocket.client else ""
        client = Client(
            id=self.broadcaster.new_client_id(),
            sink=sink,
            role=getattr(identity, "role", self.config.auth.anonymous_role or "viewer"),
            user=getattr(identity, "name", self.config.alarms.default_user),
            address=getattr(websocket.state, "client_address", address),
        )
        client.send("connected", self._connected(client))
        self.send_snapshot(client)
        # Registered only now: no tick can run between the snapshot and this line.
        self.broadcaster.add(client)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                await self.handler.handle(client, text if text is not None else message["bytes"])
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
        client.send("snapshot", self.snapshot(recovered=recovered, lines=lines))

    # -- Services for the message handler ------------------------------------------------

    def resubscribe(
        self, client: Client, lines: frozenset[str] | None, types: frozenset[str]
    ) -> None:
        self.broadcaster.resubscribe(client, lines, types)

    async def resume(self, client: Client, cursor: int) -> None:
        alarms = self.runtime.alarms
        missed = await alarms.replay(cursor) if alarms is not None else []
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
        from scada.alarms.engine import AlarmRequestError

        try:
            if kind == "ack":
                events = await alarms.ack(data.alarm_id, client.user, data.comment)  # type: ignore[attr-defined]
            elif kind == "shelve":
                events = await alarms.shelve(data.alarm, data.minutes, client.user, data.comment)  # type: ignore[attr-defined]
            else:
                events = await alarms.unshelve(data.alarm, client.user, data.comment)  # type: ignore[attr-defined]
        except AlarmRequestError as err:
            raise RequestError(err.code, str(err)) from err
        self.announce(events)
        return {"events": events}

    def announce(self, events: list[dict[str, Any]]) -> None:
        """Push committed alarm events to every client now, not at the next tick."""
        if events:
            self.broadcaster.publish_alarms(events, iso_ms(time.time()))

    def audit_refusal(self, client: Client, action: str, target: str) -> None:
        log.info(
            "refused %s on %s for %s (role %s) from %s",
            action,
            target or "-",
            client.user,
            client.role,
            client.address,
        )
