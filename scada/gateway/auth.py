"""Stand-ins until the cluster's auth replica is wired in (scada.cluster.authview): a gateway
that knows no sessions or tokens (anonymous viewers only, where the config allows them), and
an audit that only logs (the ingest node writes the audit log)."""

from __future__ import annotations

import logging

from scada.auth.store import AuditRecord, Identity

log = logging.getLogger(__name__)


class NoCredentials:
    """Knows nobody: every credential is refused, no open socket has one to re-check."""

    def session_identity(self, secret: str) -> Identity | None:
        return None

    def token_identity(self, secret: str) -> Identity | None:
        return None

    def still_valid(self, digests: list[str]) -> set[str]:
        return set()


class LoggedAudit:
    """The audit calls of HTTP refusals, as log lines."""

    async def record(self, record: AuditRecord) -> None:
        log.info(
            "audit: %s %s from %s: %s (%s)",
            record.action,
            record.target,
            record.address or "?",
            record.result,
            record.user,
        )

    async def action_record(self, record: AuditRecord) -> None:
        await self.record(record)
