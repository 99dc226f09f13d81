"""Each tick's encoded records on the `frames` stream: short, the latest value is what counts.

Trimmed to about `maxlen` entries (MAXLEN ~: Redis trims whole nodes, cheaply); ids are Redis's
own (time-based). Fenced like every publish: a node that lost the lease shows no stale data.
"""

from __future__ import annotations

from redis.asyncio import Redis

from scada.bus.keys import BusKeys
from scada.bus.lease import Lease
from scada.bus.publish import FencedPublisher


class FramePublisher:
    def __init__(self, redis: Redis, keys: BusKeys, lease: Lease, *, maxlen: int = 100) -> None:
        self.keys = keys
        self.lease = lease
        self.maxlen = maxlen
        self.publisher = FencedPublisher(redis, keys)

    async def publish(self, payload: bytes) -> str | None:
        """Append one tick's payload; returns its entry id. LeaseLost/Fenced if not the leader."""
        result = await self.publisher.publish(
            self.keys.frames, self.lease.fence(), [("*", payload)], maxlen=self.maxlen
        )
        return result.last_id
