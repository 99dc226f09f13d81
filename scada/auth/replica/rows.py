"""The auth rows on the bus: key names and the form of a row, shared by both sides.

The active ingest node keeps one hash per kind (`<p>:auth:users` name → row,
`<p>:auth:tokens` and `<p>:auth:sessions` digest → row) and appends every change to the
stream `<p>:auth`. Secrets never leave the ingest node: sessions and tokens are keyed by the
SHA-256 digest of the secret (what the AuthStore stores). Password hashes and command keys
(scada.auth.commandsig) are in none of them: for a standby's takeover each is sealed
(`sealed`) into `<p>:auth:secrets` (hashes, by user name) or `<p>:auth:keys` (command keys, by
digest), which only the ingest ACL user may read (scada.bus.acl).

A stream entry: `s` the seed id (a random id minted by each full re-seed), `n` its number
within that seed (1 = the seed entry itself, then +1 per entry: a reader sees a hole), `c` the
changes as orjson [[kind, key, row or null (deleted)], ...]; a seed entry has none (`c` = []).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from scada.bus.keys import BusKeys

KINDS = ("users", "tokens", "sessions")
# Published only sealed (`<p>:auth:secrets`, `<p>:auth:keys`), never in a public row.
SECRET_FIELDS = frozenset({"password", "command_key"})


@dataclass(frozen=True, slots=True)
class AuthKeys:
    prefix: str

    @classmethod
    def of(cls, keys: BusKeys) -> AuthKeys:
        return cls(keys.prefix)

    @property
    def stream(self) -> str:
        return f"{self.prefix}:auth"

    @property
    def seed(self) -> str:
        """The current seed id (absent: Redis lost the auth rows, the active node re-seeds)."""
        return f"{self.prefix}:auth:seed"

    @property
    def seq(self) -> str:
        """The number of the newest stream entry within the current seed."""
        return f"{self.prefix}:auth:seq"

    @property
    def secrets(self) -> str:
        """Hash: user name → its sealed password hash (ingest nodes only)."""
        return f"{self.prefix}:auth:secrets"

    @property
    def command_keys(self) -> str:
        """Hash: session or token digest → its sealed command key (ingest nodes only)."""
        return f"{self.prefix}:auth:keys"

    def hash(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown auth row kind {kind!r}")
        return f"{self.prefix}:auth:{kind}"


Change = tuple[str, str, dict[str, Any] | None]  # (kind, key, row; None = deleted)


def encode_row(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its password hash or command key (what the stream and the gateways
    carry)."""
    return {k: v for k, v in row.items() if k not in SECRET_FIELDS}


def encode_changes(changes: list[Change]) -> bytes:
    return orjson.dumps(
        [[kind, key, None if row is None else public_row(row)] for kind, key, row in changes]
    )


def decode_changes(payload: bytes) -> list[Change]:
    return [(kind, key, row) for kind, key, row in orjson.loads(payload)]


def decode_hash(raw: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """An HGETALL reply of one kind's hash as key → row."""
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): dict(orjson.loads(v))
        for k, v in raw.items()
    }
