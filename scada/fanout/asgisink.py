"""The frame sink for ASGI servers without the raw one: a queue and a writer task."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from scada.fanout.wsframes import OTHER, frame_payload

log = logging.getLogger(__name__)


class AsgiSink:
    """Every message goes through the server's ASGI `send` (re-encoded per client)."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self._queue: asyncio.Queue[tuple[bytes, int, str] | None] = asyncio.Queue()
        self._bytes = 0
        self._closed = False
        self._stuck_since: float | None = None
        self._task = asyncio.create_task(self._writer())

    framing = OTHER
    kind = "asgi"

    @property
    def dead(self) -> bool:
        return self._closed

    def send(self, frame: bytes) -> object:
        return self.write_frame(frame)

    def write_frame(self, frame: bytes) -> bool:
        return self.write(frame_payload(frame))

    def probe(self, now: float) -> None:
        return None

    def detach(
        self,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> bool:
        return False  # any ASGI server: the handler keeps its receive loop

    def write(self, payload: bytes) -> bool:
        if self._closed:
            return False
        self._bytes += len(payload)
        if self._stuck_since is None:
            self._stuck_since = time.monotonic()
        self._queue.put_nowait((payload, 0, ""))
        return True

    def buffered(self) -> int:
        return self._bytes

    def blocked_for(self, now: float) -> float:
        return 0.0 if self._stuck_since is None else now - self._stuck_since

    def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait((b"", code, reason))

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                payload, code, reason = item
                if code:
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                await self._send({"type": "websocket.send", "text": payload.decode()})
                self._bytes -= len(payload)
                self._stuck_since = None if self._queue.empty() else time.monotonic()
        except Exception as err:
            log.debug("ASGI sink writer stopped: %s", err)
            self._closed = True
