"""Notifications across a takeover: the active node's delivered-through mark in Redis.

Only the active ingest node notifies. It records in `<p>:notify:through` ("<journal epoch>:<id>",
fenced like every publish, never lowered within an epoch) the newest journal id up to which
every event's notifications are delivered or dropped, and no higher than what the alarm stream
holds. A node that takes over starts its notification outbox at that mark: the events above it
(mirrored into its journal under the same ids) are notified by it, at least once. A duplicate
is possible only for events the old node delivered after its last mark (at most `every` s).
Without a mark of this journal epoch the node skips what it mirrored, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from scada.bus.conn import raise_if_cancelled
from scada.bus.keys import BusKeys, text
from scada.bus.lease import Lease, LeaseLost
from scada.bus.publish import Fenced

log = logging.getLogger("scada.bus.notifymark")

# KEYS: lease, mark. ARGV: lease value, epoch, id. Returns 1 if the mark moved.
_MARK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease not held by ' .. ARGV[1])
end
local cur = redis.call('GET', KEYS[2])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[2]
     and tonumber(string.sub(cur, sep + 1)) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[2], ARGV[2] .. ':' .. ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class NotifyStart:
    """Where a node that becomes active starts notifying (Notifier.start's arguments)."""

    skip_through: int
    handover: bool  # skip_through is the other node's mark
    instance: str  # the journal epoch: notification ids equal on both nodes


class NotifyMark:
    def __init__(
        self,
        redis: Redis,
        keys: BusKeys,
        lease: Lease,
        *,
        epoch: Callable[[], str],
        published_through: Callable[[], int],
        mirrored_through: Callable[[], int],
        every: float = 0.5,
    ) -> None:
        self.redis = redis
        self.key = f"{keys.prefix}:notify:through"
        self.lease = lease
        self.epoch = epoch  # the journal epoch the bus follows
        self.published_through = published_through  # the alarm stream holds events up to
        self.mirrored_through = mirrored_through
        self.every = every
        self.marked: int | None = None  # the mark this node wrote last
        self._script = redis.register_script(_MARK)
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> int | None:
        """The mark of this journal epoch, or None (none yet, or another epoch's)."""
        raw = await self.redis.get(self.key)
        if raw is None:
            return None
        epoch, _, through = text(raw).partition(":")
        return int(through) if epoch == self.epoch() and through.isdigit() else None

    async def start_at(self) -> NotifyStart:
        """For a node becoming active: the other node's mark, else skip what was mirrored."""
        epoch = self.epoch()
        try:
            mark = await self.read()
        except (RedisError, OSError) as err:
            log.warning("notifications: cannot read the hand-over mark: %s", err)
            mark = None
        if mark is not None:
            log.info("notifications: taking over after id %d (delivered-through mark)", mark)
            return NotifyStart(mark, True, epoch)
        mirrored = self.mirrored_through()
        if mirrored:
            log.warning(
                "notifications: no hand-over mark for epoch %s; events up to the mirrored "
                "id %d count as notified by the other node",
                epoch,
                mirrored,
            )
        return NotifyStart(mirrored, False, epoch)

    async def publish(self, through: int) -> bool:
        """Raise the mark to `through` (capped at what the stream holds) if this node holds
        the lease; Fenced if it does not."""
        value = min(through, self.published_through())
        try:
            moved = await self._script(
                keys=[self.lease.keys.lease, self.key],
                args=[self.lease.fence(), self.epoch(), value],
            )
        except ResponseError as err:
            if str(err).startswith("FENCED"):
                raise Fenced(str(err)) from None
            raise
        self.marked = value
        return bool(moved)

    # ------------------------------------------------------------------ while active

    def activate(self, delivered: Callable[[], Awaitable[int] | None]) -> None:
        """Keep the mark up to date from `delivered()` (None: notifications are off)."""
        self.stop()
        self._task = asyncio.create_task(self._run(delivered), name="notify-mark")

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def finish(self, delivered: Callable[[], Awaitable[int] | None]) -> None:
        """Standing by cleanly: stop the loop and record the mark one last time."""
        self.stop()
        await self._once(delivered)

    async def _run(self, delivered: Callable[[], Awaitable[int] | None]) -> None:
        failing = False
        while True:
            raise_if_cancelled()
            ok = await self._once(delivered, quiet=failing)
            if ok and failing:
                log.info("notifications: hand-over mark recorded again")
            failing = not ok
            await asyncio.sleep(self.every)

    async def _once(
        self, delivered: Callable[[], Awaitable[int] | None], quiet: bool = False
    ) -> bool:
        pending = delivered()
        if pending is None:
            return True
        try:
            through = await pending
            if through != self.marked:
                await self.publish(through)
        except (LeaseLost, Fenced):
            return True  # standing by soon; the new active node keeps the mark
        except (RedisError, OSError) as err:
            if not quiet:
                log.warning("notifications: cannot record the hand-over mark: %s", err)
            return False
        return True
