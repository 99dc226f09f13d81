"""The active/standby lease: one ingest node at a time, with a fencing token.

The lease is one key, `<token>:<node>`, set with a TTL (3 s) and renewed every second by its
holder; a standby tries to take it every half second, so it takes over at most TTL + 0.5 s after
the holder's last renewal (within 5 s of its death). Tokens come from a counter that only goes
up (INCR, raised to at least `token_floor`: the highest token this node has *seen*, its own and
every holder's it met while trying to acquire, kept in its journal by the node, so a Redis that
lost its data cannot hand out an old token again, whichever node reaches it first).

Two guards stop a node that lost the lease, whatever it believes:
- locally, `fence()` refuses once the lease may have expired (`LeaseTiming`): validity counts
  from the moment the newest renewal that Redis *confirmed* was sent (the key's expiry is
  later than that), minus a margin larger than the standby's retry interval, on the
  monotonic clock (which keeps running while the process is stopped, so a SIGSTOPped leader
  wakes up already expired). A renewal that is sent but never answered extends nothing;
- in Redis, every publish runs a Lua script that compares the lease key with the caller's
  `<token>:<node>` and writes only if they are equal (see `publish`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scada.bus.conn import raise_if_cancelled
from scada.bus.keys import BusKeys, text

log = logging.getLogger("scada.bus.lease")

# Returns {1, value} when acquired, else {0, the holder's value, the counter}: a standby
# learns every token handed out while it waits (its floor after a Redis data loss).
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder, redis.call('GET', KEYS[2]) or '0'} end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
local value = token .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class LeaseLost(Exception):
    """This node does not (or may no longer) hold the lease: it must not publish or journal."""


def token_of(value: str) -> int:
    """The fencing token of a lease value `<token>:<node>`."""
    return int(value.partition(":")[0])


class LeaseTiming:
    """How long a held lease may be trusted, on one monotonic clock; every method takes `now`.

    Valid until (send time of the newest renewal Redis confirmed) + ttl - margin. Redis set
    the key's expiry when it ran that renewal, which is not before it was sent, so the key
    lives at least until send time + ttl, and no other node can acquire before then; this node
    stops `margin` earlier. The margin must exceed the standby's retry interval (how late
    after the expiry it may try) so a write checked just before the end still lands before any
    other node could take over, with the clock-rate difference of two processes to spare.
    """

    def __init__(self, ttl: float, margin: float) -> None:
        if not 0 < margin < ttl:
            raise ValueError("the margin must be positive and shorter than the ttl")
        self.ttl = ttl
        self.margin = margin
        self.valid_until = 0.0

    def confirmed(self, sent_at: float) -> None:
        """Redis confirmed the acquisition or renewal sent at `sent_at`."""
        self.valid_until = max(self.valid_until, sent_at + self.ttl - self.margin)

    def forget(self) -> None:
        self.valid_until = 0.0

    def valid(self, now: float) -> bool:
        return now < self.valid_until

    def remaining(self, now: float) -> float:
        """Seconds this node may still trust the lease (0: not at all)."""
        return max(0.0, self.valid_until - now)


class Lease:
    def __init__(
        self,
        redis: Redis,
        keys: BusKeys,
        node: str,
        *,
        ttl: float = 3.0,
        renew_every: float = 1.0,
        retry_every: float = 0.5,
        safety: float = 1.0,
        token_floor: int = 0,
        clock: Callable[[], float] = time.monotonic,
        on_floor: Callable[[int], None] | None = None,
    ) -> None:
        """`on_floor(token)`: called whenever the highest token seen goes up (keep it)."""
        if ":" in node:
            raise ValueError("a node name cannot contain ':'")
        if not 0 < renew_every < ttl - safety:
            raise ValueError("renew_every must be shorter than ttl - safety")
        if safety <= retry_every:
            raise ValueError("the safety margin must exceed the standby's retry interval")
        self.redis = redis
        self.keys = keys
        self.node = node
        self.ttl = ttl
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.safety = safety
        self.token_floor = token_floor
        self._clock = clock
        self._on_floor = on_floor
        self._value: str | None = None
        self.timing = LeaseTiming(ttl, safety)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    # ------------------------------------------------------------------ local view

    @property
    def token(self) -> int | None:
        return token_of(self._value) if self._value is not None else None

    def held(self) -> bool:
        return self._value is not None and self.timing.valid(self._clock())

    def remaining(self) -> float:
        """Seconds this node may still trust the lease (0: not held)."""
        return self.timing.remaining(self._clock()) if self._value is not None else 0.0

    def seen(self, token: int) -> None:
        """A token some node holds or held: the floor for the next acquisition."""
        if token > self.token_floor:
            self.token_floor = token
            if self._on_floor is not None:
                self._on_floor(token)

    def fence(self) -> str:
        """The lease value to present to Redis; LeaseLost if the lease may have expired.

        Call it right before every journal write and pass its value to every publish.
        """
        if self._value is None or not self.timing.valid(self._clock()):
            raise LeaseLost(f"{self.node} does not hold the lease")
        return self._value

    # ------------------------------------------------------------------ Redis

    async def try_acquire(self) -> bool:
        sent = self._clock()
        reply = await self._acquire(
            keys=[self.keys.lease, self.keys.fence],
            args=[self.node, int(self.ttl * 1000), self.token_floor],
        )
        if not int(reply[0]):
            holder, counter = text(reply[1]), int(text(reply[2]) or 0)
            self.seen(max(token_of(holder), counter))
            return False
        self._value = text(reply[1])
        self.timing.forget()
        self.timing.confirmed(sent)
        self.seen(token_of(self._value))
        log.info("lease acquired by %s, fencing token %d", self.node, self.token)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer held) if another node has it now."""
        if self._value is None:
            return False
        sent = self._clock()
        ok = await self._renew(keys=[self.keys.lease], args=[self._value, int(self.ttl * 1000)])
        if ok:
            self.timing.confirmed(sent)
            return True
        self._lose("taken over or expired")
        return False

    async def release(self) -> None:
        """Give the lease up at once (clean shutdown), so a standby need not wait for the TTL."""
        value, self._value = self._value, None
        self.timing.forget()
        if value is not None:
            await self._release(keys=[self.keys.lease], args=[value])
            log.info("lease released by %s", self.node)

    async def holder(self) -> tuple[int, str] | None:
        """(token, node) of the current holder, or None."""
        raw = await self.redis.get(self.keys.lease)
        if raw is None:
            return None
        token, _, node = text(raw).partition(":")
        return int(token), node

    def _lose(self, why: str) -> None:
        if self._value is not None:
            log.warning("lease lost by %s (token %d): %s", self.node, self.token, why)
        self._value = None
        self.timing.forget()

    # ------------------------------------------------------------------ loop

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Hold or wait for the lease until cancelled; `on_change(held)` on every change,
        a new acquisition included (a lease released and taken again between two turns)."""
        was: tuple[bool, str | None] = (False, None)
        failing = False
        while True:
            raise_if_cancelled()
            try:
                if self._value is not None:
                    await self.renew()
                else:
                    await self.try_acquire()
                if failing:
                    log.info("lease: Redis reachable again")
                failing = False
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("lease: Redis unreachable: %s", err)
                failing = True
            if self._value is not None and not self.held():
                self._lose("not renewed in time")
            now = (self.held(), self._value)
            if now != was and on_change is not None:
                on_change(now[0])
            was = now
            await asyncio.sleep(self.renew_every if now[0] else self.retry_every)
