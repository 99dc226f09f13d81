"""The active/standby lease: one ingest node at a time, with a fencing token.

The lease is one key, `<token>:<node>`, set with a TTL (3 s) and renewed every second by its
holder; a standby tries to take it every half second, so it takes over at most TTL + 0.5 s after
the holder's last renewal (within 5 s of its death). Tokens come from a counter that only goes
up (INCR, raised to at least the highest token this node has seen, so a Redis that lost its data
cannot hand out an old token again).

Two guards stop a node that lost the lease, whatever it believes:
- locally, `fence()` refuses once the lease may have expired: a renewal counts from the moment
  it was *sent*, minus a safety margin, on the monotonic clock (which keeps running while the
  process is stopped, so a SIGSTOPped leader wakes up already expired);
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

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
local value = token .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
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
        safety: float = 0.5,
        token_floor: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ":" in node:
            raise ValueError("a node name cannot contain ':'")
        if not 0 < renew_every < ttl - safety:
            raise ValueError("renew_every must be shorter than ttl - safety")
        self.redis = redis
        self.keys = keys
        self.node = node
        self.ttl = ttl
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.safety = safety
        self.token_floor = token_floor
        self._clock = clock
        self._value: str | None = None
        self._valid_until = 0.0
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    # ------------------------------------------------------------------ local view

    @property
    def token(self) -> int | None:
        return token_of(self._value) if self._value is not None else None

    def held(self) -> bool:
        return self._value is not None and self._clock() < self._valid_until

    def fence(self) -> str:
        """The lease value to present to Redis; LeaseLost if the lease may have expired.

        Call it right before every journal write and pass its value to every publish.
        """
        if self._value is None or self._clock() >= self._valid_until:
            raise LeaseLost(f"{self.node} does not hold the lease")
        return self._value

    # ------------------------------------------------------------------ Redis

    async def try_acquire(self) -> bool:
        sent = self._clock()
        value = await self._acquire(
            keys=[self.keys.lease, self.keys.fence],
            args=[self.node, int(self.ttl * 1000), self.token_floor],
        )
        if value is None:
            return False
        self._value = value.decode() if isinstance(value, bytes) else str(value)
        self._valid_until = sent + self.ttl - self.safety
        self.token_floor = max(self.token_floor, token_of(self._value))
        log.info("lease acquired by %s, fencing token %d", self.node, self.token)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and no longer held) if another node has it now."""
        if self._value is None:
            return False
        sent = self._clock()
        ok = await self._renew(keys=[self.keys.lease], args=[self._value, int(self.ttl * 1000)])
        if ok:
            self._valid_until = sent + self.ttl - self.safety
            return True
        self._lose("taken over or expired")
        return False

    async def release(self) -> None:
        """Give the lease up at once (clean shutdown), so a standby need not wait for the TTL."""
        value, self._value = self._value, None
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

    # ------------------------------------------------------------------ loop

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        """Hold or wait for the lease until cancelled; `on_change(held)` on every change."""
        was_held = False
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
            now_held = self.held()
            if now_held != was_held and on_change is not None:
                on_change(now_held)
            was_held = now_held
            await asyncio.sleep(self.renew_every if now_held else self.retry_every)
