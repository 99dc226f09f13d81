"""The audit trail as the server writes it: actions fail closed, refusals are folded.

An action (ack, shelve, fault, user change, ...) is written with `action_record` BEFORE it is
applied: if the record cannot be written the action is refused (`AuditUnavailable`, 503), so
nothing happens that the trail does not show. Its outcome follows with `record`.

Refusals repeat cheaply for an attacker and expensively for us, so the same refusal from the
same address is written once per REFUSAL_WINDOW_S (monotonic); the next record written says
how many identical ones were folded into it. A refusal whose record cannot be written is
still refused (and logged once per streak).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.requests import HTTPConnection

from scada.auth.auditlog import AuditRecord
from scada.auth.store import AuthStore
from scada.core.clock import SYSTEM_CLOCK, Clock
from scada.core.errors import Refused

log = logging.getLogger(__name__)

REFUSALS = frozenset(
    {
        "forbidden",
        "unauthenticated",
        "forbidden_origin",
        "too_many_connections",
        "too_many_requests",
        "throttled",
        "failed",
        # A gateway's command the ingest node refused (scada.roles.ingest.actorcheck).
        "unsigned",
        "bad_signature",
        "stale_command",
    }
)
REFUSAL_WINDOW_S = 10.0
MAX_FOLD_KEYS = 10_000


class AuditUnavailable(Refused):
    def __init__(self, action: str) -> None:
        super().__init__(
            "audit_unavailable",
            f"{action} refused: the audit log cannot be written (see the server log)",
            503,
        )


class Auditor:
    """Writes audit records off the event loop (each is an fsync'ed insert).

    Without a store (a cluster gateway's `BusAuditor`) a subclass says where records go by
    overriding `_append` (an action's record: it must be written before the action) and
    `_append_outcome` (outcomes and refusals: may be sent without waiting).
    """

    def __init__(self, store: AuthStore | None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock
        self._folded: dict[tuple[str, str, str], tuple[float, int]] = {}
        self._failing = False

    def _fold(self, address: str, action: str, result: str) -> int | None:
        """None: skip this record. Otherwise how many identical ones were skipped before it."""
        key = (address, action, result)
        now = self.clock.monotonic()
        started, skipped = self._folded.get(key, (now - 2 * REFUSAL_WINDOW_S, 0))
        if now - started < REFUSAL_WINDOW_S:
            self._folded[key] = (started, skipped + 1)
            return None
        if len(self._folded) > MAX_FOLD_KEYS:
            self._folded.clear()  # bounded memory under an address spray
        self._folded[key] = (now, 0)
        return skipped

    async def _append(self, record: AuditRecord) -> None:
        assert self.store is not None
        await asyncio.to_thread(self.store.audit, record)

    async def _append_outcome(self, record: AuditRecord) -> None:
        await self._append(record)

    async def _write(self, record: AuditRecord, *, outcome: bool = False) -> None:
        try:
            await (self._append_outcome if outcome else self._append)(record)
        except Exception as err:
            if not self._failing:
                log.error(
                    "audit write failed (%s): %s %s by %s",
                    err,
                    record.action,
                    record.target,
                    record.user,
                )
            self._failing = True
            raise AuditUnavailable(record.action) from err
        if self._failing:
            log.info("audit writes work again")
            self._failing = False

    async def action_record(self, record: AuditRecord) -> None:
        """Write the record of an action about to be applied; raises AuditUnavailable."""
        await self._write(record)

    async def record(self, record: AuditRecord) -> None:
        """Write an outcome or a refusal; never raises. The action it follows already has its
        `requested` record (or was refused), so a failure here is logged, not answered as a
        refusal of something that has happened. Refusals are folded."""
        if record.result not in REFUSALS:
            with contextlib.suppress(AuditUnavailable):
                await self._write(record, outcome=True)
            return
        skipped = self._fold(record.address, record.action, record.result)
        if skipped is None:
            return
        if skipped:
            detail = f"{record.detail} (+{skipped} identical refusals folded)".strip()
            record = AuditRecord(**{**record.__dict__, "detail": detail})
        with contextlib.suppress(AuditUnavailable):
            await self._write(record, outcome=True)  # if not, the refusal stands (logged)

    async def request(
        self, conn: HTTPConnection, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """The outcome of a request that passed its role check (`requires` set its user)."""
        who = getattr(conn.state, "user", None)
        await self.record(
            AuditRecord(
                user=getattr(who, "name", "-"),
                role=getattr(who, "role", "-"),
                address=getattr(conn.state, "client_address", ""),
                action=action,
                target=target,
                result=result,
                detail=detail,
            )
        )
