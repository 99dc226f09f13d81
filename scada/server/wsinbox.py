"""A detached WebSocket connection's receive side: uvicorn puts ASGI receive events into an
`Inbox` instead of a queue the app awaits, and the app is called back per message."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from scada.server.refusals import peer

if TYPE_CHECKING:
    from scada.server.wsprotocol import ScadaWebSocketProtocol

log = logging.getLogger("scada.server.uvicorn_adapter")


class _AlwaysWritable:
    """Stands in for the `writable` event of a detached connection: nothing awaits it."""

    __slots__ = ()

    def set(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def is_set(self) -> bool:
        return True

    async def wait(self) -> bool:
        return True


ALWAYS_WRITABLE = _AlwaysWritable()


class Inbox:
    """The receive queue of a detached connection: uvicorn puts ASGI receive events here.

    Messages are handled one at a time, in order; while one is handled the next wait and
    reading stays paused (uvicorn pauses it per message), as with the app's receive loop.
    """

    __slots__ = ("_busy", "_on_gone", "_on_message", "_pending", "done", "proto")

    def __init__(
        self,
        proto: ScadaWebSocketProtocol,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> None:
        self.proto = proto
        self._on_message = on_message
        self._on_gone = on_gone
        self._pending: deque[Any] | None = None  # made when a second one waits
        self._busy: asyncio.Task[None] | None = None
        self.done = False

    def put_nowait(self, message: Any) -> None:  # an ASGI receive event
        if self.done:
            return
        if self._busy is not None:
            if self._pending is None:
                self._pending = deque()
            self._pending.append(message)
            return
        self._start(message)

    def empty(self) -> bool:
        return not self._pending

    def _start(self, message: Any) -> None:
        if message["type"] == "websocket.disconnect":
            self._finish()
            return
        proto = self.proto
        task = proto.loop.create_task(self._handle(message))
        self._busy = task
        proto.tasks.add(task)  # uvicorn's shutdown waits for it, as for an app task
        task.add_done_callback(proto.on_task_complete)

    async def _handle(self, message: Any) -> None:
        try:
            go_on = await self._on_message(message)
        except Exception:
            log.exception("handling a WebSocket message from %s failed", peer(self.proto.client))
            go_on = False
        self._busy = None
        if not go_on:
            self._finish()
        elif self._pending:
            self._start(self._pending.popleft())
        else:
            self.idle_check()

    def idle_check(self) -> None:
        """Nothing waits: read again (uvicorn paused reading when the last message came)."""
        proto = self.proto
        if self._busy is None and not self._pending and proto.read_paused and not self.done:
            proto.read_paused = False
            proto.transport.resume_reading()

    def _finish(self) -> None:
        """The connection ends for the app: what its handler returning would have done."""
        self.done = True
        self._pending = None
        self._on_gone()
        # On the next turn, as when the app's task wakes up: whoever put the disconnect here
        # (a close frame being sent, uvicorn's shutdown) finishes writing first.
        self.proto.loop.call_soon(self._close)

    def _close(self) -> None:
        proto = self.proto
        if proto.close_timer is None:
            proto.transport.close()
