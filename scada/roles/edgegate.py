"""The role check and audit of DCMD writes to the Sparkplug edge node (scada.sparkplug.writes):
the configured user's role, read from the user store when the write arrives, must allow the
action; every write is audited as that user from the address `sparkplug`, like any action."""

from __future__ import annotations

from scada.auth.audit import Auditor, AuditUnavailable
from scada.auth.auditlog import AuditRecord
from scada.auth.store import AuthStore
from scada.core.roles import role_allows

ADDRESS = "sparkplug"


class AuditedWriteGate:
    def __init__(self, store: AuthStore, auditor: Auditor, needed: str = "operator") -> None:
        self.store = store
        self.auditor = auditor
        self.needed = needed

    def _role(self, user: str) -> str:
        found = next((u for u in self.store.list_users() if u["name"] == user), None)
        return "" if found is None or found["disabled"] else str(found["role"])

    async def authorize(self, user: str, action: str, target: str) -> str | None:
        role = self._role(user)
        if not role_allows(role, self.needed):
            why = f"user {user} ({role or 'unknown or disabled'}) may not {action}"
            await self.auditor.record(
                AuditRecord(user, role, ADDRESS, action, target, "forbidden", why)
            )
            return "forbidden"
        try:  # no record, no action
            await self.auditor.action_record(
                AuditRecord(user, role, ADDRESS, action, target, "requested")
            )
        except AuditUnavailable:
            return "audit_unavailable"
        return None

    async def outcome(self, user: str, action: str, target: str, result: str, detail: str) -> None:
        role = self._role(user)
        await self.auditor.record(AuditRecord(user, role, ADDRESS, action, target, result, detail))
