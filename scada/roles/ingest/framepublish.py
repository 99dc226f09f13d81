"""Each tick's production data on the bus `frames` stream (docs/cluster.md, the frame payload).

One frame per tick, also when no line changed: the frames are the gateways' heartbeat. A frame
carries the records of the lines that changed; every `FULL_EVERY`-th frame (the first after an
activation included) carries every line, so a gateway that starts or lost frames is whole
again within a second. The tick never waits for Redis: one publish is in flight at a time and
a frame that finds the previous one still in flight is dropped (counted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from scada.plant.runtime import Runtime

log = logging.getLogger(__name__)

FULL_EVERY = 10


def frame_payload(
    stamp: str, lines: list[dict[str, Any]], full: bool, flood: dict[str, Any]
) -> bytes:
    return orjson.dumps(
        {"ts": stamp, "lines": lines, "full": full, "flood": flood},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


class FrameTap:
    """Runtime.on_frame listener publishing through `publish` (IngestNode.publish_frame)."""

    def __init__(
        self,
        runtime: Runtime,
        flood: Callable[[], dict[str, Any]],
        publish: Callable[[bytes], Coroutine[Any, Any, bool]],
    ) -> None:
        self.runtime = runtime
        self.flood = flood
        self.publish = publish
        self.count = 0
        self.skipped = 0  # frames dropped because the previous publish was still in flight
        self._inflight: asyncio.Task[bool] | None = None

    def reset(self) -> None:
        """The next frame is a full one (call on activation)."""
        self.count = 0

    def __call__(self, stamp: str, changed: list[dict[str, Any]]) -> None:
        full = self.count % FULL_EVERY == 0
        if self._inflight is not None and not self._inflight.done():
            self.skipped += 1
            return  # the next frame is full instead, if this one was to be
        self.count += 1
        lines = self.runtime.line_samples() if full else changed
        payload = frame_payload(stamp, lines, full, self.flood())
        self._inflight = asyncio.get_running_loop().create_task(self.publish(payload))
        self._inflight.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("frame publish failed: %r", task.exception())
