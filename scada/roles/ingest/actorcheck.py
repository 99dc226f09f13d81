"""Who a gateway's command really comes from: the ingest node's own users decide.

A gateway names the client it acts for (user, role, address, anonymous, and the digest of
its session or API token). The ingest node believes none of the role: it looks the client up
in its own auth store and takes the role from there. A named user must exist and be enabled
(and a digest, when given, must be a live session of that user or an unrevoked token of that
name); an anonymous client gets this node's `auth.anonymous_role`, and only while
`auth.allow_anonymous` is on. Whoever it turns out to be must have the role the command
needs (`scada.fanout.messages.REQUIRED_ROLE`), or the command is refused and audited.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from scada.auth.rowset import AuthRows
from scada.core.config import AuthSettings
from scada.core.roles import ANONYMOUS, role_allows


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome: `role` is this node's view of the client (None: refused, see `code`)."""

    role: str | None
    code: str = ""
    message: str = ""


def check_actor(
    rows: AuthRows,
    auth: AuthSettings,
    *,
    user: str,
    anonymous: bool,
    digest: str | None,
    needed: str,
    now: float | None = None,
) -> Checked:
    """The client's role here if it may do what `needed` may; else why not."""
    now = time.time() if now is None else now
    if anonymous:
        if not auth.allow_anonymous or user != ANONYMOUS:
            return Checked(None, "unauthenticated", "anonymous clients are not allowed here")
        role: str = auth.anonymous_role
    else:
        role_or_refusal = _named_role(rows, user, digest, now)
        if isinstance(role_or_refusal, Checked):
            return role_or_refusal
        role = role_or_refusal
    if not role_allows(role, needed):
        return Checked(None, "forbidden", f"needs role {needed}; {user} is {role}")
    return Checked(role)


def _named_role(rows: AuthRows, user: str, digest: str | None, now: float) -> str | Checked:
    users: dict[str, dict[str, Any]] = rows.get("users", {})
    if digest:
        token = rows.get("tokens", {}).get(digest)
        if token is not None:
            if token.get("revoked") is not None or token.get("name") != user:
                return Checked(None, "unauthenticated", "the API token is revoked or not theirs")
            return str(token["role"])
        session = rows.get("sessions", {}).get(digest)
        if session is None or session.get("user") != user or session.get("expires", 0) <= now:
            return Checked(None, "unauthenticated", f"no live session of {user!r}")
    row = users.get(user)
    if row is None:
        return Checked(None, "unknown_user", f"no user {user!r} on the ingest node")
    if row.get("disabled"):
        return Checked(None, "user_disabled", f"user {user!r} is disabled")
    return str(row["role"])
