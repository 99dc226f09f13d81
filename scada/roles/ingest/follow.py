"""A standby's historian records what the active node publishes (the bus `frames` stream).

Without it an ingest node's history had a hole for every spell the other node was active,
and after a failover the trends (read from the active node) showed a gap that never was.
While the node stands by, each frame is decoded (scada.plant.sampledecode) into the node's own
tag arrays, which keep every tag's latest value between partial frames, and recorded at the
frame's timestamp, from the first full frame on (before it not every line is known). A quiet
bus records nothing: the historian's gap logic shows the real gap. A lost connection starts
over at the newest frame and waits for the next full one.

The process stops following before its own tick starts (`stop`, on activation) and starts
again after its tick stopped (`start`, on standing by); a frame not later than the last row
recorded (by the tick or by a frame) is skipped, so no instant is written twice. The loop
re-raises its cancellation every turn, and `stop` waits for it a bounded time (an activation
must never hang on it); a frame read after `stop` was asked is never recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from scada.bus.conn import connect, raise_if_cancelled, stream_entries
from scada.bus.keys import BusKeys
from scada.bus.publish import PAYLOAD
from scada.core.tags import Quality, TagSchema
from scada.core.timefmt import parse_time
from scada.plant.sampledecode import SampleDecoder

log = logging.getLogger(__name__)

Record = Callable[[float, np.ndarray, np.ndarray], None]


class FrameFollower:
    def __init__(
        self,
        url: str,
        keys: BusKeys,
        schema: TagSchema,
        record: Record,
        *,
        resolution_ms: int,
        last_recorded: Callable[[], float | None],
        block: float = 0.5,
    ) -> None:
        """`record(t, values, quality)`: the historian's; `last_recorded()`: epoch seconds
        of the newest row it took (None: none yet)."""
        self.url = url
        self.keys = keys
        self.decoder = SampleDecoder(schema)
        self.record = record
        self.half_step = resolution_ms / 2000
        self.last_recorded = last_recorded
        self.block = block
        self.values = np.full(schema.size, np.nan)
        self.quality = np.full(schema.size, Quality.BAD, dtype=np.uint8)
        self.whole = False  # a full frame was decoded since (re)connecting
        self.recorded = 0
        self.skipped = 0  # frames not later than the last recorded row
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def following(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.following:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name="follow")

    async def stop(self, limit: float = 3.0) -> None:
        """Stop following; waits at most `limit` s for the loop (nothing recorded after)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=limit)
            if pending:
                log.error("historian: the frame follower did not stop within %.0f s", limit)
            else:
                log.info("historian: stopped following the active node's frames")

    async def run(self) -> None:
        failing = False
        while True:
            raise_if_cancelled()
            redis = connect(self.url, timeout=self.block + 2.0, name="scada-ingest-follow")
            self.whole, cursor = False, "$"
            try:
                while True:
                    raise_if_cancelled()
                    reply: Any = await redis.xread(
                        {self.keys.frames: cursor}, count=100, block=int(self.block * 1000)
                    )
                    if failing:
                        failing = False
                        log.info("historian: following the active node's frames again")
                    for _, entries in stream_entries(reply):
                        for entry, fields in entries:
                            cursor = entry
                            self.take(fields[PAYLOAD])
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("historian: cannot read the active node's frames: %r", err)
                failing = True
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await redis.aclose()
            await asyncio.sleep(1.0)

    def metrics(self) -> Iterator[Metric]:
        """For Runtime.metric_sources."""
        yield GaugeMetricFamily(
            "scada_cluster_history_following",
            "1 while this standby's historian records the active node's frames.",
            1.0 if self.following and self.whole else 0.0,
        )
        yield CounterMetricFamily(
            "scada_cluster_history_frames_recorded",
            "Frames of the active node recorded in this node's historian while standing by.",
            float(self.recorded),
        )

    def take(self, payload: bytes) -> bool:
        """Decode one frame; record it if every line is known. True if recorded."""
        if self._stopping:
            return False  # the node's own tick records from now on
        frame = orjson.loads(payload)
        self.decoder.decode_into(frame.get("lines") or (), self.values, self.quality)
        if frame.get("full"):
            if not self.whole:
                log.info("historian: recording the active node's frames")
            self.whole = True
        if not self.whole:
            return False
        t = parse_time(frame["ts"])
        last = self.last_recorded()
        if last is not None and t < last + self.half_step:
            self.skipped += 1
            return False
        self.record(t, self.values, self.quality)
        self.recorded += 1
        return True
