"""Operator commands from gateways, applied on the active ingest node (docs/cluster.md).

Each command is what a client sent its gateway over `/ws` (ack, shelve, unshelve) with the
client as `actor`; it is audited here (requested, then the outcome, with the client's own
address), applied through the alarm service with its request id journaled in the same commit
(the ledger), and answered with exactly what the all-in-one server's hub answers, or
{"error": {"code", "message"}}. An "audit" command carries a record a gateway wants written
(a login, a refusal): it is written as it is, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from scada.alarms.service import AlarmService
from scada.auth.audit import Auditor
from scada.auth.auditlog import AuditRecord
from scada.auth.store import AuthStore
from scada.bus.commandstream import Command
from scada.core.errors import Refused
from scada.core.timefmt import parse_time
from scada.fanout.messages import AckData, ShelveData, UnshelveData

log = logging.getLogger(__name__)

Events = list[dict[str, Any]]
AUDIT_FIELDS = ("user", "role", "address", "action", "target", "result", "detail")


@dataclass(frozen=True, slots=True)
class Actor:
    """The client a gateway acts for."""

    user: str
    role: str
    address: str
    anonymous: bool

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Actor:
        return cls(str(raw["user"]), str(raw["role"]), str(raw["address"]), bool(raw["anonymous"]))

    def record(self, action: str, target: str, result: str, detail: str = "") -> AuditRecord:
        return AuditRecord(self.user, self.role, self.address, action, target, result, detail)


def refusal(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class CommandApplier:
    """`apply` and `lookup` for scada.bus.commandstream.CommandConsumer."""

    def __init__(
        self,
        alarms: AlarmService,
        auditor: Auditor,
        store: AuthStore,
        default_user: Callable[[], str],
        announce: Callable[[Events], None],
    ) -> None:
        self.alarms = alarms
        self.auditor = auditor
        self.store = store  # where "audit" commands' records go
        self.default_user = default_user  # who anonymous clients act as in the journal
        self.announce = announce  # the committed events to this node's own /ws clients

    def lookup(self, request_id: str) -> dict[str, Any] | None:
        return self.alarms.journal.command_result(request_id)

    async def apply(self, command: Command) -> dict[str, Any]:
        try:
            if command.kind == "audit":
                return await self._audit(command)
            actor = Actor.of(command.body["actor"])
            data = command.body["data"]
            rid = command.request_id
            if command.kind == "ack":
                return await self._ack(actor, AckData.model_validate(data), rid)
            if command.kind == "shelve":
                return await self._shelve(actor, ShelveData.model_validate(data), rid)
            if command.kind == "unshelve":
                return await self._unshelve(actor, UnshelveData.model_validate(data), rid)
            return refusal("unknown_command", f"no command {command.kind!r}")
        except (KeyError, TypeError, ValueError, ValidationError) as err:
            log.warning("command %s from %s refused: %s", command.kind, command.reply_to, err)
            return refusal("invalid_command", str(err))
        except Refused as err:
            return refusal(err.code, err.message)

    def _journal_user(self, actor: Actor) -> str:
        return self.default_user() if actor.anonymous else actor.user

    async def _ack(self, actor: Actor, data: AckData, rid: str) -> dict[str, Any]:
        user, comment = self._journal_user(actor), data.comment
        if data.alarm_ids is not None:
            for each in data.alarm_ids:
                await self.auditor.action_record(actor.record("ack", str(each), "requested"))
            results, events = await self.alarms.ack_many(
                data.alarm_ids, user, comment, request_id=rid
            )
            self.announce(events)
            for r in results:
                result, detail = ("ok", comment) if r["ok"] else (r["error"], r["message"])
                await self.auditor.record(actor.record("ack", str(r["alarm_id"]), result, detail))
            return {"results": results}
        occurrence = data.alarm_id
        assert occurrence is not None  # AckData: exactly one of alarm_id, alarm_ids
        return await self._apply(
            actor,
            "ack",
            str(occurrence),
            comment,
            lambda: self.alarms.ack(occurrence, user, comment, request_id=rid),
        )

    async def _shelve(self, actor: Actor, data: ShelveData, rid: str) -> dict[str, Any]:
        user = self._journal_user(actor)

        def run() -> Awaitable[Events]:
            return self.alarms.shelve(data.alarm, data.minutes, user, data.comment, request_id=rid)

        return await self._apply(actor, "shelve", data.alarm, data.comment, run)

    async def _unshelve(self, actor: Actor, data: UnshelveData, rid: str) -> dict[str, Any]:
        user = self._journal_user(actor)

        def run() -> Awaitable[Events]:
            return self.alarms.unshelve(data.alarm, user, data.comment, request_id=rid)

        return await self._apply(actor, "unshelve", data.alarm, data.comment, run)

    async def _apply(
        self,
        actor: Actor,
        action: str,
        target: str,
        comment: str,
        run: Callable[[], Awaitable[Events]],
    ) -> dict[str, Any]:
        # No record, no action: AuditUnavailable (a refusal) before anything is applied.
        await self.auditor.action_record(actor.record(action, target, "requested"))
        try:
            events = await run()
        except Refused as err:
            await self.auditor.record(actor.record(action, target, err.code, err.message))
            raise
        self.announce(events)
        await self.auditor.record(actor.record(action, target, "ok", comment))
        return {"events": events}

    async def _audit(self, command: Command) -> dict[str, Any]:
        """Write a gateway's record as it is, once per request id (AuthStore.audit)."""
        raw = command.body["record"]
        user, role, address, action, target, result, detail = (
            str(raw.get(name) or "") for name in AUDIT_FIELDS
        )
        at = parse_time(raw["at"]) if raw.get("at") else None
        record = AuditRecord(user, role, address, action, target, result, detail, at=at)
        try:
            await asyncio.to_thread(self.store.audit, record, command.request_id)
        except Exception as err:
            log.error("audit record from %s not written: %s", command.reply_to, err)
            return refusal("audit_unavailable", "the audit log could not record this")
        return {"ok": True}
