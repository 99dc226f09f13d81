"""Typed handlers of the operator commands that reach the alarm service over `/ws`.

Each command is audited before it is applied (no record, no action: `audit_unavailable`),
then its outcome; committed events are announced to every client at once. Anonymous clients
act under `alarms.default_user` in the journal, but the audit names them anonymous.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from scada.auth.audit import Auditor
from scada.auth.auditlog import AuditRecord
from scada.core.errors import Refused
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import Broadcaster, Client
from scada.fanout.messages import AckData, ShelveData, UnshelveData
from scada.web.hub.plantsource import PlantSource

log = logging.getLogger(__name__)

Events = list[dict[str, Any]]


class AlarmCommands:
    def __init__(self, source: PlantSource, broadcaster: Broadcaster, auditor: Auditor | None):
        self.source = source
        self.broadcaster = broadcaster
        self.auditor = auditor

    def _service(self) -> Any:
        alarms = self.source.alarms
        if alarms is None:
            raise Refused("unavailable", "the alarm service is not running")
        return alarms

    def actor(self, client: Client) -> str:
        return self.source.config.alarms.default_user if client.anonymous else client.user

    async def ack(self, client: Client, data: AckData) -> dict[str, Any]:
        service = self._service()
        if data.alarm_ids is not None:
            return await self._ack_many(client, data.alarm_ids, data.comment)
        return await self._apply(
            client,
            "ack",
            str(data.alarm_id),
            data.comment,
            lambda: service.ack(data.alarm_id, self.actor(client), data.comment),
        )

    async def shelve(self, client: Client, data: ShelveData) -> dict[str, Any]:
        service = self._service()
        return await self._apply(
            client,
            "shelve",
            data.alarm,
            data.comment,
            lambda: service.shelve(data.alarm, data.minutes, self.actor(client), data.comment),
        )

    async def unshelve(self, client: Client, data: UnshelveData) -> dict[str, Any]:
        service = self._service()
        return await self._apply(
            client,
            "unshelve",
            data.alarm,
            data.comment,
            lambda: service.unshelve(data.alarm, self.actor(client), data.comment),
        )

    async def _apply(
        self,
        client: Client,
        action: str,
        target: str,
        comment: str,
        run: Callable[[], Awaitable[Events]],
    ) -> dict[str, Any]:
        if self.auditor is not None:
            await self.auditor.action_record(self._record(client, action, target, "requested"))
        try:
            events = await run()
        except Refused as err:
            await self.audit(client, action, target, err.code, err.message)
            raise
        self.announce(events)
        await self.audit(client, action, target, "ok", comment)
        return {"events": events}

    async def _ack_many(self, client: Client, ids: list[int], comment: str) -> dict[str, Any]:
        """Several acks, one comment: each audited, journaled and answered on its own."""
        if self.auditor is not None:
            for occurrence in ids:
                record = self._record(client, "ack", str(occurrence), "requested")
                await self.auditor.action_record(record)
        results, events = await self._service().ack_many(ids, self.actor(client), comment)
        self.announce(events)
        for r in results:
            result, detail = ("ok", comment) if r["ok"] else (r["error"], r["message"])
            await self.audit(client, "ack", str(r["alarm_id"]), result, detail)
        return {"results": results}

    def _record(
        self, client: Client, action: str, target: str, result: str, detail: str = ""
    ) -> AuditRecord:
        return AuditRecord(client.user, client.role, client.address, action, target, result, detail)

    async def audit(
        self, client: Client, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        if self.auditor is not None:
            await self.auditor.record(self._record(client, action, target, result, detail))

    def announce_flood(self, data: dict[str, Any]) -> None:
        """The `alarm_flood` frame, to every alarm subscriber, when the flood state changes."""
        self.broadcaster.publish_to_alarm_clients("alarm_flood", data, iso_ms(time.time()))

    def announce(self, events: Events) -> None:
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
        await self.audit(client, action, target, "forbidden")
