"""Commands signed as a gateway signs them (scada.auth.commandsig), for tests that play a
gateway on the bus: with the secret of a session or token that came through it, or without."""

from __future__ import annotations

import time
from typing import Any

from scada.auth import commandsig
from scada.auth.passwords import token_digest


def actor(user: str, secret: str | None, address: str = "203.0.113.7") -> dict[str, Any]:
    """A named client as a gateway describes it (the session digest of `secret`)."""
    return {
        "user": user,
        "role": "admin",  # whatever a gateway claims: the ingest node does not believe it
        "address": address,
        "anonymous": False,
        "session": token_digest(secret) if secret else None,
    }


def signed(
    kind: str,
    data: dict[str, Any],
    who: dict[str, Any],
    *,
    request_id: str,
    gateway: str,
    key: str,
    at: float | None = None,
) -> dict[str, Any]:
    """The command body with a proof made with `key` (a command key, or any guess)."""
    at = time.time() if at is None else at
    message = commandsig.payload(
        request_id=request_id, kind=kind, gateway=gateway, actor=who, data=data, at=at
    )
    return {"data": data, "actor": who, "proof": {"at": at, "mac": commandsig.sign(key, message)}}
