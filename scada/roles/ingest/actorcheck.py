"""Who a gateway's command really comes from: the ingest node's own users decide.

A gateway names the client it acts for (user, role, address, anonymous, and the digest of
its session or API token). The ingest node believes none of the role: it looks the client up
in its own auth store and takes the role from there. An anonymous client gets this node's
`auth.anonymous_role`, and only while `auth.allow_anonymous` is on. A named user's command
must come with the digest of a live session of that user (or an unrevoked token of that
name) and be signed with that session's or token's command key (scada.auth.commandsig), which
only a holder of the secret can compute: a gateway acts only for clients whose cookie or
token came through it, not for any name it knows. Then the user must exist and be enabled,
and whoever it turns out to be must have the role the command needs
(`scada.fanout.messages.REQUIRED_ROLE`), or the command is refused and audited.

Refusal codes: `unsigned` (no digest, no signature, or a session/token from before signed
commands: log in again, make a new token), `unauthenticated` (no live session or token of
that user), `bad_signature`, `stale_command` (signed longer than `commandsig.MAX_AGE` s ago,
or dated ahead), `unknown_user`, `user_disabled`, `forbidden`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from scada.auth import commandsig
from scada.auth.rowset import AuthRows
from scada.core.config import AuthSettings
from scada.core.roles import ANONYMOUS, role_allows


@dataclass(frozen=True, slots=True)
class Proof:
    """A command's signature: the signed bytes, the MAC, and the time it was signed."""

    message: bytes
    mac: str
    at: float


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
    proof: Proof | None = None,
    now: float | None = None,
) -> Checked:
    """The client's role here if it may do what `needed` may; else why not."""
    now = time.time() if now is None else now
    if anonymous:
        if not auth.allow_anonymous or user != ANONYMOUS:
            return Checked(None, "unauthenticated", "anonymous clients are not allowed here")
        role: str = auth.anonymous_role
    else:
        role_or_refusal = _named_role(rows, user, digest, proof, now)
        if isinstance(role_or_refusal, Checked):
            return role_or_refusal
        role = role_or_refusal
    if not role_allows(role, needed):
        return Checked(None, "forbidden", f"needs role {needed}; {user} is {role}")
    return Checked(role)


def _named_role(
    rows: AuthRows, user: str, digest: str | None, proof: Proof | None, now: float
) -> str | Checked:
    if not digest:
        return Checked(None, "unsigned", "a named user's command needs its session or token")
    token = rows.get("tokens", {}).get(digest)
    if token is not None:
        if token.get("revoked") is not None or token.get("name") != user:
            return Checked(None, "unauthenticated", "the API token is revoked or not theirs")
        refused = _signed(token.get("command_key"), proof, now, "make a new API token")
        return refused or str(token["role"])
    session = rows.get("sessions", {}).get(digest)
    if session is None or session.get("user") != user or session.get("expires", 0) <= now:
        return Checked(None, "unauthenticated", f"no live session of {user!r}")
    refused = _signed(session.get("command_key"), proof, now, "log in again")
    if refused is not None:
        return refused
    users: dict[str, dict[str, Any]] = rows.get("users", {})
    row = users.get(user)
    if row is None:
        return Checked(None, "unknown_user", f"no user {user!r} on the ingest node")
    if row.get("disabled"):
        return Checked(None, "user_disabled", f"user {user!r} is disabled")
    return str(row["role"])


def _signed(key: str | None, proof: Proof | None, now: float, remedy: str) -> Checked | None:
    """None if `proof` is a signature by `key` made within the time window; else why not."""
    if key is None:
        return Checked(None, "unsigned", f"these credentials predate signed commands: {remedy}")
    if proof is None:
        return Checked(None, "unsigned", "the command is not signed")
    if not commandsig.verify(key, proof.message, proof.mac):
        return Checked(None, "bad_signature", "the command's signature does not verify")
    if not now - commandsig.MAX_AGE <= proof.at <= now + commandsig.MAX_AHEAD:
        return Checked(None, "stale_command", f"signed at {proof.at:.0f}, now is {now:.0f}")
    return None
