"""A gateway's ack, shelve and unshelve: sent over the bus to the active ingest node.

Each client message gets one request id. The command is appended to the `commands` stream;
while no reply comes within `retry_every` s it is appended again with the same request id,
until `[cluster] command_timeout`: a failover in between (the old node died before it
answered, the new one is not reading yet) still applies it once, since the ingest node's
ledger answers a request id it has seen with the stored result. No reply in time: the client
is answered `unavailable`. The reply's result is the client's answer as the all-in-one
server would give it; a refusal (`{"error": {"code", "message"}}`) becomes that error code.

A named client's command is signed (scada.auth.commandsig) with the command key of the
session or token it came with, which this gateway knows only because that secret passed
through it (`command_key`, the auth replica's); the ingest node verifies it and refuses an
unsigned or forged one. An anonymous client's command is not signed (it has no secret).

The ingest node journals and audits the command (with the client's address); the events it
commits reach every gateway on the alarm stream, so nothing is announced from here.

It is also the gateway's AuditChannel (scada.auth.replica.view.BusAuditor): audit records go
the same way, as "audit" commands, through the same sender and reply reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from scada.auth import commandsig
from scada.auth.audit import Auditor
from scada.bus.commandstream import Reply
from scada.bus.interface import Bus, BusUnavailable, CommandChannel
from scada.core.errors import Refused
from scada.fanout.broadcaster import Broadcaster, Client
from scada.fanout.messages import AckData, ShelveData, UnshelveData
from scada.web.hub.plantsource import PlantSource
from scada.web.hub.wscommands import AlarmCommands

log = logging.getLogger(__name__)

# The command key of a session or token digest, if its secret passed through this gateway.
CommandKeys = Callable[[str], str | None]


def actor(client: Client) -> dict[str, Any]:
    """Who asked, as the ingest node journals and audits it (contract 3)."""
    return {
        "user": client.user,
        "role": client.role,
        "address": client.address,
        "anonymous": client.anonymous,
        "session": client.session,
    }


class BusCommands(AlarmCommands):
    """The hub's CommandPort in a gateway (refusals and flood frames as AlarmCommands)."""

    def __init__(
        self,
        source: PlantSource,
        broadcaster: Broadcaster,
        auditor: Auditor | None,
        *,
        bus: Bus,
        node: str,
        timeout: float,
        retry_every: float = 1.0,
        command_keys: CommandKeys | None = None,
    ) -> None:
        super().__init__(source, broadcaster, auditor)
        self.command_keys = command_keys
        self.bus = bus
        self.node = node
        self.timeout = timeout
        self.retry_every = retry_every
        self.sender: CommandChannel | None = None
        self.sent = self.resent = self.answered = self.timed_out = self.unsigned = 0
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.sender = self.bus.commands(self.node)
        self._task = asyncio.create_task(self._read_replies(), name="command-replies")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.sender is not None:
            sender, self.sender = self.sender, None
            await sender.close()

    async def ack(self, client: Client, data: AckData) -> dict[str, Any]:
        return await self.request(client, "ack", data)

    async def shelve(self, client: Client, data: ShelveData) -> dict[str, Any]:
        return await self.request(client, "shelve", data)

    async def unshelve(self, client: Client, data: UnshelveData) -> dict[str, Any]:
        return await self.request(client, "unshelve", data)

    async def request(self, client: Client, kind: str, data: BaseModel) -> dict[str, Any]:
        """Send until answered or timed out; the reply's result, or Refused."""
        request_id = uuid.uuid4().hex
        body = self.signed(kind, request_id, actor(client), data.model_dump(exclude_none=True))
        reply = await self._exchange(kind, body, request_id)
        error = reply.result.get("error")
        if isinstance(error, dict):
            raise Refused(str(error.get("code", "refused")), str(error.get("message", "")))
        return reply.result

    def signed(
        self, kind: str, request_id: str, who: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """The command's body, with its `proof` when the client's command key is known here
        (without one the ingest node refuses a named client's command as `unsigned`)."""
        body: dict[str, Any] = {"data": data, "actor": who}
        digest = who.get("session")
        if who.get("anonymous") or not digest:
            return body
        key = self.command_keys(str(digest)) if self.command_keys is not None else None
        if key is None:
            self.unsigned += 1
            log.warning("%s for %s sent unsigned: no command key here", kind, who.get("user"))
            return body
        at = time.time()
        message = commandsig.payload(
            request_id=request_id, kind=kind, gateway=self.node, actor=who, data=data, at=at
        )
        body["proof"] = {"at": at, "mac": commandsig.sign(key, message)}
        return body

    async def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send and wait for the reply's result (AuditChannel); Refused if none comes."""
        return (await self._exchange(kind, body, uuid.uuid4().hex)).result

    async def post(self, kind: str, body: dict[str, Any]) -> None:
        """Send once, not waiting for a reply (AuditChannel)."""
        await self._send(kind, body, uuid.uuid4().hex, 1)

    async def _exchange(self, kind: str, body: dict[str, Any], request_id: str) -> Reply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        answer: asyncio.Future[Reply] = loop.create_future()
        self._waiting[request_id] = answer
        tries = 0
        try:
            while True:
                tries += 1
                await self._send(kind, body, request_id, tries)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(
                        asyncio.shield(answer), min(self.retry_every, remaining)
                    )
                if loop.time() >= deadline:
                    break
        finally:
            self._waiting.pop(request_id, None)
        self.timed_out += 1
        log.warning(
            "%s %s: no ingest node answered within %g s (%d tries)",
            kind,
            request_id,
            self.timeout,
            tries,
        )
        raise Refused("unavailable", f"no ingest node answered within {self.timeout:g} s")

    async def _send(self, kind: str, body: dict[str, Any], request_id: str, tries: int) -> None:
        if self.sender is None:
            return
        try:
            await self.sender.send(kind, body, request_id)
        except BusUnavailable as err:
            log.debug("command %s not sent (try %d): %r", request_id, tries, err)
            return
        if tries == 1:
            self.sent += 1
        else:
            self.resent += 1

    async def _read_replies(self) -> None:
        """Route every reply on this gateway's reply stream to the request waiting for it."""
        assert self.sender is not None
        failing = False
        while True:
            try:
                replies = await self.sender.read_replies(block=1.0)
            except BusUnavailable as err:
                if not failing:
                    log.warning("command replies unreadable: %r; retrying", err)
                    failing = True
                await asyncio.sleep(0.2)
                continue
            if failing:
                log.info("command replies readable again")
                failing = False
            for reply in replies:
                waiting = self._waiting.get(reply.request_id)
                if waiting is not None and not waiting.done():
                    self.answered += 1
                    waiting.set_result(reply)
