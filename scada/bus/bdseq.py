"""The Sparkplug edge node's bdSeq in a cluster: one counter in Redis for every ingest node, so
the node that takes over goes on counting (a host tells the old holder's will from the new
birth by it), drawn only by the lease holder (fenced like every publish): a deposed node that
has not noticed yet gets no bdSeq, so it cannot connect as the edge node."""

from __future__ import annotations

from redis.asyncio import Redis

from scada.bus.keys import BusKeys
from scada.bus.lease import Lease, LeaseLost

_NEXT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
return redis.call('INCR', KEYS[2])
"""


async def next_bdseq(redis: Redis, keys: BusKeys, lease: Lease) -> int:
    """The next connect's bdSeq (the counter's new value; the edge node takes it mod 256)."""
    fence = lease.fence()
    value = await redis.eval(_NEXT, 2, keys.lease, keys.sparkplug_bdseq, fence)
    if value is None:
        raise LeaseLost(f"{lease.node} no longer holds the lease: no Sparkplug connect")
    return int(value) - 1  # the first connect of a cluster is bdSeq 0
