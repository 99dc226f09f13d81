"""Who may do what on the cluster's Redis: one ACL user per role, least privilege.

- `ingest` (every ingest node, one user: they are interchangeable): every key under the
  cluster's prefix, data commands and Lua scripts (the fenced publishes), nothing of
  `@admin`/`@dangerous` (no FLUSHALL, CONFIG, KEYS, ACL, SHUTDOWN).
- a gateway (one user per gateway, named after its node): reads the alarm and frame streams,
  the alarm state, the epoch and the public auth rows, reads its own reply stream only, and
  may append to its own command stream `<p>:commands:<node>` only (write-only: it cannot read
  its or the other gateways' commands, nor write theirs, so the stream a command came on names
  its gateway). No scripts, no other writes: it cannot publish frames or alarm events, take the
  lease, or read the sealed password hashes (`<p>:auth:secrets`) and command keys
  (`<p>:auth:keys`), or write the audit stream.
- `tools` (the CLI: `scada cluster`'s first-login hint, operators' inspections): reads the
  streams, the state, the epoch, the lease and the auth seed; writes nothing.

The `default` user is off: a connection without credentials can do nothing but AUTH/HELLO.
It keeps every permission nonetheless (`DEFAULT_USER`): redis-server 7.0 replays an AOF's
MULTI/EXEC blocks (what the Lua publishes write) checked against the default user's rules,
and without them drops every scripted write at a restart. Off, nobody can be that user.
An ACL file holds SHA-256 digests of the passwords (`#<hex>`), never the passwords.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

AclRole = Literal["ingest", "gateway", "tools"]
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# Keys a gateway reads (besides its own reply stream), by suffix after "<prefix>:".
GATEWAY_READS = (
    "alarms",
    "frames",
    "alarm_state",
    "epoch",
    "auth",
    "auth:seed",
    "auth:seq",
    "auth:users",
    "auth:tokens",
    "auth:sessions",
)
GATEWAY_COMMANDS = (
    "xread", "xrange", "xrevrange", "xlen", "get", "mget", "hget", "hgetall", "exists",
    "xadd",  # only its own command stream is writable for a gateway (%W~ below)
)  # fmt: skip
TOOLS_READS = ("alarms", "frames", "alarm_state", "epoch", "lease", "auth:seed")
TOOLS_COMMANDS = ("xread", "xrange", "xrevrange", "xlen", "xinfo|stream", "get", "mget", "hgetall")
CONNECTION = ("ping", "hello", "auth", "select", "client|setname", "client|id")
TRANSACTIONS = ("multi", "exec", "discard")
DEFAULT_USER = "user default off resetpass resetkeys resetchannels ~* &* +@all"
INGEST_CATEGORIES = (
    "+@read +@write +@stream +@hash +@string +@keyspace +@scripting +@transaction "
    "+@connection -@dangerous -@admin -@pubsub"
)


@dataclass(frozen=True, slots=True)
class BusUser:
    """One ACL user: `name` is what goes in the URL; `node` a gateway's node name."""

    name: str
    role: AclRole
    password: str
    node: str = ""

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"not a valid Redis user name: {self.name!r}")
        if self.role == "gateway" and not NAME.match(self.node):
            raise ValueError("a gateway's ACL user needs its node name")
        if len(self.password) < 16 or any(c.isspace() for c in self.password):
            raise ValueError(f"the password of Redis user {self.name} is too short or has spaces")


def new_password() -> str:
    """A random password, URL-safe (it goes in redis_url as is)."""
    return secrets.token_urlsafe(24)


def rules(role: AclRole, prefix: str, node: str = "") -> str:
    """The ACL rules (keys, channels, commands) of `role` for the cluster under `prefix`."""
    if not NAME.match(prefix):
        raise ValueError(f"not a valid bus prefix: {prefix!r}")
    base = "resetkeys resetchannels -@all"
    if role == "ingest":
        return f"{base} ~{prefix}:* {INGEST_CATEGORIES}"
    if role == "gateway":
        reads = [f"%R~{prefix}:{suffix}" for suffix in GATEWAY_READS]
        reads.append(f"%R~{prefix}:replies:{node}")
        keys = " ".join([*reads, f"%W~{prefix}:commands:{node}"])
        return f"{base} {keys} " + _allow(GATEWAY_COMMANDS)
    if role == "tools":
        keys = " ".join(f"%R~{prefix}:{suffix}" for suffix in TOOLS_READS)
        return f"{base} {keys} " + _allow(TOOLS_COMMANDS)
    raise ValueError(f"unknown ACL role {role!r}")


def _allow(commands: tuple[str, ...]) -> str:
    return " ".join(f"+{c}" for c in (*commands, *CONNECTION, *TRANSACTIONS))


def password_digest(password: str) -> str:
    """What an ACL file holds instead of the password (`#<sha256 hex>`)."""
    return hashlib.sha256(password.encode()).hexdigest()


def setuser_args(user: BusUser, prefix: str) -> list[str]:
    """`ACL SETUSER` arguments for `user` (the same rules as its ACL file line)."""
    return [
        user.name,
        "reset",
        "on",
        f"#{password_digest(user.password)}",
        *rules(user.role, prefix, user.node).split(),
    ]


def acl_file(users: Iterable[BusUser], prefix: str) -> str:
    """An ACL file for redis-server (`aclfile`): the default user off, then each user."""
    lines = [DEFAULT_USER]
    for user in users:
        lines.append("user " + " ".join(setuser_args(user, prefix)))
    return "\n".join(lines) + "\n"


def with_user(url: str, user: BusUser) -> str:
    """`url` (redis:// or rediss://, no credentials) with `user:password@` in it."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URL: {redact(url)}")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user.name, safe='')}:{quote(user.password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact(url: str) -> str:
    """A Redis URL for a log line or an error: the password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}{sep}{user + ':' if user else ''}***@{host}"


def password_of(url: str) -> str | None:
    """The password a Redis URL carries, or None."""
    return urlsplit(url).password
