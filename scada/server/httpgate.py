"""The cap on connections still speaking HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scada.server.httpprotocol import ScadaHttpProtocol


class HttpGate:
    """Connections still speaking HTTP: at most `limit`; idle keep-alive ones make room first.

    WebSocket connections leave the gate when they upgrade (`server.max_connections` bounds
    those), so the file descriptors the server can be made to hold stay budgeted.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: set[ScadaHttpProtocol] = set()
        self.idle: dict[ScadaHttpProtocol, None] = {}  # oldest first

    def admit(self, proto: ScadaHttpProtocol) -> bool:
        if len(self.live) >= self.limit:
            victim = next(iter(self.idle), None)
            if victim is None:
                return False
            self.leave(victim)
            victim.transport.close()
        self.live.add(proto)
        return True

    def leave(self, proto: ScadaHttpProtocol) -> None:
        self.live.discard(proto)
        self.idle.pop(proto, None)

    def set_idle(self, proto: ScadaHttpProtocol, idle: bool) -> None:
        if not idle:
            self.idle.pop(proto, None)
        elif proto in self.live:
            self.idle[proto] = None
