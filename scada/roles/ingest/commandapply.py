"""Operator commands from gateways, applied on the active ingest node (docs/cluster.md).

Each command is what a client sent its gateway over `/ws` (ack, shelve, unshelve) with the
client as `actor`, signed by the gateway with the client's command key (`proof`,
scada.auth.commandsig). The actor's role is not believed: this node checks the client against
its own users (`actorcheck`: a live session or token of that user whose key signed the
command within the time window, the user exists and is enabled, role enough), refuses and
audits otherwise (naming the gateway). A request id is answered once: an applied one from the
ledger, a refused one from memory for `commandsig.MAX_AGE` s (after that its signature is
stale anyway), so a replayed command never acts. It is audited here (requested, then the outcome, with the client's own
address as the gateway saw it, and the role this node found), applied through the alarm
service with its request id journaled in the same commit (the ledger), and answered with
exactly what the all-in-one server's hub answers, or {"error": {"code", "message"}}.

An "audit" command carries a refusal a gateway reports (a WebSocket refused, a role check
failed): a claim, not a fact this node saw, so it is written as one: once, at this node's
time (a gateway cannot date a record), with `reported by <gateway>` in its detail, and only a
refusal: anything else (a login, an action's outcome) is written by this node alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from scada.alarms.service import AlarmService
from scada.auth import commandsig
from scada.auth.audit import REFUSALS, Auditor
from scada.auth.auditlog import AuditRecord
from scada.auth.store import AuthStore
from scada.bus.commandstream import Command
from scada.core.config import AuthSettings
from scada.core.errors import Refused
from scada.fanout.messages import REQUIRED_ROLE, AckData, ShelveData, UnshelveData
from scada.roles.ingest.actorcheck import Proof, check_actor

log = logging.getLogger(__name__)

Events = list[dict[str, Any]]
AUDIT_FIELDS = ("user", "role", "address", "action", "target", "result", "detail")
REFUSED_KEPT = 10_000  # refused request ids remembered (each for commandsig.MAX_AGE s)


@dataclass(frozen=True, slots=True)
class Actor:
    """The client a gateway acts for."""

    user: str
    role: str  # as the gateway claims it, until `checked` replaces it with this node's
    address: str
    anonymous: bool
    digest: str | None = None  # of the client's session or API token

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Actor:
        digest = raw.get("session")
        return cls(
            str(raw["user"]),
            str(raw["role"]),
            str(raw["address"]),
            bool(raw["anonymous"]),
            str(digest) if digest else None,
        )

    def with_role(self, role: str) -> Actor:
        return Actor(self.user, role, self.address, self.anonymous, self.digest)

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
        auth_settings: Callable[[], AuthSettings] = AuthSettings,
    ) -> None:
        self.alarms = alarms
        self.auditor = auditor
        self.store = store  # where "audit" commands' records go
        self.default_user = default_user  # who anonymous clients act as in the journal
        self.announce = announce  # the committed events to this node's own /ws clients
        self.auth_settings = auth_settings  # anonymous clients: allowed? with which role?
        self.refused_actors = 0
        self.replays = 0
        # Request id → (when, the refusal it got): a replay gets the same answer.
        self._refused: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def lookup(self, request_id: str) -> dict[str, Any] | None:
        return self.alarms.journal.command_result(request_id)

    async def apply(self, command: Command) -> dict[str, Any]:
        if command.kind == "audit":
            return await self._answer(command)
        earlier = self._refused_before(command.request_id)
        if earlier is not None:
            self.replays += 1
            log.warning(
                "%s %s from %s: request id seen before, answered as then",
                command.kind, command.request_id, command.reply_to,
            )  # fmt: skip
            return earlier
        result = await self._answer(command)
        if "error" in result:
            self._remember_refusal(command.request_id, result)
        return result

    def _refused_before(self, request_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        while self._refused:
            oldest, (at, _) = next(iter(self._refused.items()))
            if now - at <= commandsig.MAX_AGE and len(self._refused) <= REFUSED_KEPT:
                break
            del self._refused[oldest]
        seen = self._refused.get(request_id)
        return None if seen is None else seen[1]

    def _remember_refusal(self, request_id: str, result: dict[str, Any]) -> None:
        self._refused[request_id] = (time.monotonic(), result)
        self._refused.move_to_end(request_id)

    async def _answer(self, command: Command) -> dict[str, Any]:
        try:
            if command.kind == "audit":
                return await self._audit(command)
            actor = await self._checked(command, Actor.of(command.body["actor"]))
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

    async def _checked(self, command: Command, actor: Actor) -> Actor:
        """The actor with this node's role for it; Refused (audited) if it may not act."""
        needed = REQUIRED_ROLE.get(command.kind)
        if needed is None:
            raise Refused("unknown_command", f"no command {command.kind!r}")
        rows = await asyncio.to_thread(self.store.rows)
        checked = check_actor(
            rows,
            self.auth_settings(),
            user=actor.user,
            anonymous=actor.anonymous,
            digest=actor.digest,
            needed=needed,
            proof=proof_of(command),
        )
        if checked.role is not None:
            return actor.with_role(checked.role)
        self.refused_actors += 1
        log.warning(
            "%s from %s refused: %s (%s)", command.kind, command.reply_to, checked.code,
            checked.message,
        )  # fmt: skip
        target = _target(command.body.get("data"))
        detail = f"{checked.message} (via {command.reply_to})"
        await self.auditor.record(actor.record(command.kind, target, checked.code, detail))
        raise Refused(checked.code, checked.message)

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
        """Write a gateway's refusal once per request id (AuthStore.audit), at this node's
        time; anything but a refusal is refused."""
        raw = command.body["record"]
        user, role, address, action, target, result, detail = (
            str(raw.get(name) or "") for name in AUDIT_FIELDS
        )
        if result not in REFUSALS:
            log.warning(
                "audit record from %s refused: %s %s (a gateway records refusals only)",
                command.reply_to, action, result,
            )  # fmt: skip
            return refusal("forbidden", "a gateway may only record refusals")
        reported = f"reported by {command.reply_to}" + (f": {detail}" if detail else "")
        record = AuditRecord(user, role, address, action, target, result, reported)
        try:
            await asyncio.to_thread(self.store.audit, record, command.request_id)
        except Exception as err:
            log.error("audit record from %s not written: %s", command.reply_to, err)
            return refusal("audit_unavailable", "the audit log could not record this")
        return {"ok": True}


def proof_of(command: Command) -> Proof | None:
    """The command's signature as `check_actor` verifies it (None: unsigned)."""
    raw = command.body.get("proof")
    if not isinstance(raw, dict):
        return None
    at, mac = raw.get("at"), raw.get("mac")
    if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(mac, str):
        return None
    message = commandsig.payload(
        request_id=command.request_id,
        kind=command.kind,
        gateway=command.reply_to,
        actor=command.body["actor"],
        data=command.body["data"],
        at=at,
    )
    return Proof(message, mac, float(at))


def _target(data: Any) -> str:
    """What a command is about, for its audit record (the alarm or the occurrence)."""
    if not isinstance(data, dict):
        return ""
    for key in ("alarm", "alarm_id"):
        if data.get(key) is not None:
            return str(data[key])
    ids = data.get("alarm_ids")
    return ",".join(str(i) for i in ids) if isinstance(ids, list) else ""
