"""Signed commands: a gateway acts only for clients whose secret passed through it.

A session id or an API token gives two values, each a one-way function of the secret, with
domain separation so neither yields the other:

- the **digest** `SHA-256(secret)` (scada.auth.passwords.token_digest): what the auth store is
  keyed by and what every gateway's replica holds, to recognise a cookie or a token;
- the **command key** `HMAC-SHA256(key="scada-command-key-v1", msg=secret)`: stored beside the
  digest in the ingest nodes' auth store only (on Redis only sealed, in a key only the ingest
  ACL user reads: scada.auth.replica.publisher), never in a gateway's replica.

A gateway that holds the secret (the client's cookie or token came through it) computes the
key and signs each command it forwards with HMAC-SHA256 over `payload` (the request id, the
command, the gateway, the client and its session digest, the data and the time, canonical
JSON). The active ingest node looks the digest up, checks the session or token is live and
belongs to the named user, recomputes the MAC with its stored key (constant-time compare),
and refuses a command older than `MAX_AGE` s or dated more than `MAX_AHEAD` s ahead of its
own clock (scada.roles.ingest.commandcheck). Knowing the digests (a gateway's replica, the
Redis AOF) is not enough to sign: the key needs the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

KEY_LABEL = b"scada-command-key-v1"
VERSION = 1
# How old a signed command may be when the ingest node reads it: a gateway resends one for
# up to `[cluster] command_timeout` (at most 120 s), a takeover claims a pending one after a
# few seconds, plus clock skew between hosts (NTP keeps it far below this).
MAX_AGE = 300.0
MAX_AHEAD = 60.0  # a command dated this far past the ingest node's clock is refused


def command_key(secret: str) -> str:
    """The command key (hex) of a session id or API token."""
    return hmac.new(KEY_LABEL, secret.encode(), hashlib.sha256).hexdigest()


def payload(
    *,
    request_id: str,
    kind: str,
    gateway: str,
    actor: dict[str, Any],
    data: Any,
    at: float,
) -> bytes:
    """The bytes a command's MAC covers (canonical JSON: sorted keys, no spaces)."""
    return orjson.dumps(
        {
            "v": VERSION,
            "request_id": request_id,
            "kind": kind,
            "gateway": gateway,
            "actor": actor,
            "data": data,
            "at": at,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def sign(key: str, message: bytes) -> str:
    return hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()


def verify(key: str, message: bytes, mac: str) -> bool:
    """Whether `mac` is this key's MAC of `message` (constant time)."""
    try:
        expected = hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()
    except ValueError:
        return False
    return hmac.compare_digest(expected, mac)
