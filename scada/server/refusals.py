"""How the protocols refuse a client: one log line per kind of refusal per window (with a
count of the rest), the peer as host:port, and a plain-text answer that closes."""

from __future__ import annotations

import logging

from scada.core.logfold import Fold

log = logging.getLogger("scada.server.uvicorn_adapter")  # the name operators filter on

refusals = Fold(log)


def peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "?"


def plain_response(status: int, phrase: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
