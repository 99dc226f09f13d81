"""The one role vocabulary: ordered roles, each allowed everything the ones before it are."""

from __future__ import annotations

from typing import Final, Literal, get_args

Role = Literal["viewer", "operator", "engineer", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
# The identity of a client without credentials (where `auth.allow_anonymous` lets it in):
# its own name, its own connection quota, never a real user's.
ANONYMOUS: Final = "anonymous"
# Names no account may take: the audit log and the quotas would mistake it for the above.
RESERVED_NAMES: Final = frozenset({ANONYMOUS})
# Whom a per-role limit applies to: the roles, and anonymous clients on their own.
Audience = Literal["anonymous", "viewer", "operator", "engineer", "admin"]
AUDIENCES: Final[tuple[str, ...]] = get_args(Audience)


def role_allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may; unknown roles may do nothing."""
    return role in ROLES and needed in ROLES and ROLES.index(role) >= ROLES.index(needed)
