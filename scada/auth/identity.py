"""Who a request is: the identity a session, a token or no credential gives."""

from __future__ import annotations

from dataclasses import dataclass


class IdentityUnavailable(Exception):
    """An identity source cannot tell now (a cluster gateway whose replica of the auth rows
    is stale does not know this secret): refused as "try again", a session cookie is kept."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    kind: str  # "session", "token" or "anonymous"
    expires: float | None = None  # epoch seconds; sessions only
    session: str | None = None  # digest of the session id, to find its sockets at logout
    # The name written on alarm actions (acked_by, shelved_by); anonymous clients act under
    # `alarms.default_user` where their role lets them act, but are never that user.
    acts_as: str | None = None

    @property
    def actor(self) -> str:
        return self.acts_as or self.name

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"
