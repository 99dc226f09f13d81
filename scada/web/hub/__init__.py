"""The `/ws` endpoint: admission, `connected` + `snapshot`, then a receive loop.

The pieces each have their module: `admission` (credentials, origin, quotas), `watch`
(sessions that end while their sockets are open), `replay` (snapshots and `resume`) and
`commands` (ack, shelve, unshelve). Server → client frames all go through the client's
FrameSink (never the ASGI `send`), so per-connection `seq` order holds whatever mix of
broadcast and replies is written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket

from scada import __version__
from scada.auth.audit import Auditor
from scada.auth.identify import CredentialStore
from scada.auth.identity import Identity
from scada.core.clock import SYSTEM_CLOCK, Clock, wall_to_monotonic
from scada.core.config import PlantConfig
from scada.core.ratelimit import TokenBucket
from scada.core.roles import ANONYMOUS
from scada.fanout.asgisink import AsgiSink
from scada.fanout.broadcaster import Client
from scada.fanout.messages import MessageHandler
from scada.fanout.wsframes import FrameSink
from scada.web.heavy import HeavyReads
from scada.web.hub.admission import Admission
from scada.web.hub.expiry import CLOSE_POLICY, SessionWatch
from scada.web.hub.plantsource import CommandPort, PlantSource, RuntimeSource
from scada.web.hub.replay import Snapshots
from scada.web.hub.wscommands import AlarmCommands

log = logging.getLogger(__name__)

__all__ = ["Hub", "PlantSource", "RuntimeSource"]

PROTOCOL_VERSION = 1
CLOSE_ERROR = 1011


class Hub:
    def __init__(
        self,
        source: PlantSource,
        auditor: Auditor | None = None,
        *,
        heavy: HeavyReads | None = None,
        clock: Clock = SYSTEM_CLOCK,
        commands: CommandPort | None = None,
        credentials: CredentialStore | None = None,
    ) -> None:
        """`commands`: where ack/shelve/unshelve go (default: the source's alarm service);
        `credentials`: what open sockets are re-checked against (default: the auditor's
        store)."""
        self.source = source
        self.broadcaster = source.broadcaster
        self.clock = clock
        self.heavy = heavy or HeavyReads(lambda: self.config.auth)
        self.admission = Admission(lambda: self.config, self.broadcaster, auditor)
        if credentials is None and auditor is not None:
            credentials = auditor.store
        self.watch = SessionWatch(self.broadcaster, credentials, clock)
        self.snapshots = Snapshots(source, self.heavy)
        self.commands: CommandPort = commands or AlarmCommands(source, self.broadcaster, auditor)
        self.handler = MessageHandler(self, max_bytes=self.config.server.max_message_bytes)
        source.on_tick(self.watch.on_tick)
        # The names the rest of the server uses.
        self.close_session = self.watch.close_session
        self.close_user = self.watch.close_user
        self.announce = self.commands.announce
        self.announce_flood = self.commands.announce_flood
        self.snapshot = self.snapshots.snapshot
        self.send_snapshot = self.snapshots.send_snapshot
        self.resume = self.snapshots.resume
        self.ack = self.commands.ack
        self.shelve = self.commands.shelve
        self.unshelve = self.commands.unshelve
        self.audit_refusal = self.commands.audit_refusal

    @property
    def config(self) -> PlantConfig:
        return self.source.config  # follows a config reload

    @property
    def line_ids(self) -> list[str]:
        return self.source.line_ids

    def resubscribe(
        self, client: Client, lines: frozenset[str] | None, types: frozenset[str]
    ) -> None:
        self.broadcaster.resubscribe(client, lines, types)

    def _client(self, websocket: WebSocket, identity: Identity) -> Client:
        # Raw frame sink from our uvicorn protocol; the ASGI fallback only for other servers.
        sink: FrameSink = websocket.scope.get("extensions", {}).get("scada.sink") or AsgiSink(
            websocket.send
        )
        expires = None
        if identity.expires is not None:
            expires = wall_to_monotonic(self.clock, identity.expires)
        return Client(
            id=self.broadcaster.new_client_id(),
            sink=sink,
            role=identity.role,
            user=ANONYMOUS if identity.anonymous else identity.name,
            address=getattr(websocket.state, "client_address", ""),
            session=identity.session,
            expires=expires,
            anonymous=identity.anonymous,
        )

    async def endpoint(self, websocket: WebSocket) -> None:
        identity = await self.admission.admit(websocket)
        if identity is None:
            return
        await websocket.accept()
        client = self._client(websocket, identity)
        client.send("connected", self._connected(client))
        self.send_snapshot(client)
        # Registered only now: no tick can run between the snapshot and this line.
        self.broadcaster.add(client)
        srv = self.config.server
        bucket = TokenBucket(srv.messages_per_second, srv.message_burst)
        on_message = functools.partial(self._on_message, client, bucket)
        if client.sink.detach(on_message, functools.partial(self.broadcaster.remove, client)):
            return  # the protocol calls on_message per message; no task waits while idle
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect" or not await on_message(message):
                    return
        finally:
            self.broadcaster.remove(client)

    async def _on_message(
        self, client: Client, bucket: TokenBucket, message: Mapping[str, Any]
    ) -> bool:
        """Handle one message from the client; False: the connection is done with."""
        srv = self.config.server
        verdict = bucket.take(self.clock.monotonic())
        if verdict == TokenBucket.REFUSE:
            client.send(
                "error",
                {
                    "code": "rate_limited",
                    "message": f"over {srv.messages_per_second:g} messages per second",
                },
            )
            return True
        if verdict == TokenBucket.ABUSE:
            log.warning(
                "client %s (%s, %s) flooding; closing with 1008",
                client.id,
                client.user,
                client.address,
            )
            client.sink.close(CLOSE_POLICY, "message rate limit")
            return False
        if client.closed:
            return False  # closed (logout, expiry, slow) while this message waited
        text = message.get("text")
        try:
            await self.handler.handle(client, text if text is not None else message["bytes"])
        except Exception:
            log.exception("handling a message from client %s failed", client.id)
            client.sink.close(CLOSE_ERROR, "server error")
            return False
        return True

    def _connected(self, client: Client) -> dict[str, Any]:
        srv = self.config.server
        return {
            "client_id": client.id,
            "role": client.role,
            # An anonymous viewer is "anonymous", never the name its actions are filed under.
            "user": client.user,
            "anonymous": client.anonymous,
            "server_version": __version__,
            "protocol": PROTOCOL_VERSION,
            "lines": self.line_ids,
            "batch_interval_ms": srv.batch_interval_ms,
            "heartbeat_interval_ms": srv.heartbeat_interval_ms,
        }
