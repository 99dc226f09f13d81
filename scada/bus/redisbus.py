"""The bus on Redis Streams: the `Bus` interface over the primitives of this package (the
fenced publish script, the epoch key, the lease, the cursor reader, the command streams).

One client for what the ingest side writes; each follower and each command channel opens its
own (a blocking read must not hold up a publish).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from scada.bus import epoch as bus_epoch
from scada.bus.commandstream import Apply, CommandConsumer, CommandSender, Lookup, Reply
from scada.bus.conn import connect
from scada.bus.framestream import FramePublisher
from scada.bus.interface import BusStart, BusUnavailable, LeaseHolder
from scada.bus.keys import BusKeys, entry_id, event_id, text
from scada.bus.lease import Lease
from scada.bus.publish import EPOCH, PAYLOAD, FencedPublisher, Published
from scada.bus.reader import BusReader

log = logging.getLogger(__name__)


class RedisBus:
    def __init__(self, url: str, keys: BusKeys, *, name: str = "scada", timeout: float = 2.0):
        self.url = url
        self.keys = keys
        self.name = name
        self.timeout = timeout
        self._redis: Redis | None = None
        self._publisher: FencedPublisher | None = None

    @property
    def redis(self) -> Redis:
        """The client of the ingest side's writes (opened at first use)."""
        if self._redis is None:
            self._redis = connect(self.url, timeout=self.timeout, name=self.name)
        return self._redis

    @property
    def publisher(self) -> FencedPublisher:
        if self._publisher is None:
            self._publisher = FencedPublisher(self.redis, self.keys)
        return self._publisher

    async def close(self) -> None:
        redis, self._redis, self._publisher = self._redis, None, None
        if redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await redis.aclose()

    # -- the ingest side ----------------------------------------------------------------

    def lease(self, node: str, **options: Any) -> LeaseHolder:
        return Lease(self.redis, self.keys, node, **options)

    async def ensure_epoch(self, fence: str, journal_epoch: str) -> tuple[str, bool]:
        return await bus_epoch.ensure_epoch(self.redis, self.keys, fence, journal_epoch)

    async def seed_state(
        self, fence: str, epoch: str, cursor: int, states: Sequence[tuple[str, bytes]]
    ) -> None:
        await bus_epoch.seed_state(self.redis, self.keys, fence, epoch, cursor, list(states))

    async def publish_alarms(
        self,
        fence: str,
        epoch: str,
        entries: Sequence[tuple[int, bytes, str]],
        *,
        maxlen: int = 0,
    ) -> Published:
        return await self.publisher.publish(
            self.keys.alarms,
            fence,
            [(entry_id(ev_id), payload) for ev_id, payload, _ in entries],
            epoch=epoch,
            maxlen=maxlen,
            state=[field for _, _, field in entries],
        )

    async def publish_frame(self, fence: str, payload: bytes, *, maxlen: int = 100) -> str | None:
        result = await self.publisher.publish(
            self.keys.frames, fence, [("*", payload)], maxlen=maxlen
        )
        return result.last_id

    def frame_publisher(self, lease: Lease, *, maxlen: int = 100) -> FramePublisher:
        return FramePublisher(self.redis, self.keys, lease, maxlen=maxlen)

    def command_handler(
        self, lease: LeaseHolder, *, apply: Apply, lookup: Lookup, **options: Any
    ) -> CommandConsumer:
        assert isinstance(lease, Lease), "a Redis bus takes its own lease"
        return CommandConsumer(self.redis, self.keys, lease, apply=apply, lookup=lookup, **options)

    # -- the gateway side ---------------------------------------------------------------

    async def read_epoch(self) -> str | None:
        return await bus_epoch.read_epoch(self.redis, self.keys)

    async def start(self, *, history: int, timeout: float) -> BusStart | None:
        """Epoch and state hash in one transaction, then the history up to its cursor."""
        redis = connect(self.url, timeout=timeout, name=f"{self.name}-start")
        try:
            return await self._start(redis, history)
        except (RedisError, OSError) as err:
            log.debug("bus start not read: %r", err)
            return None
        finally:
            with contextlib.suppress(RedisError, OSError):
                await redis.aclose()

    async def _start(self, redis: Redis, history: int) -> BusStart | None:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.epoch)
            pipe.hgetall(self.keys.state)
            raw_epoch, state = await pipe.execute()
        if raw_epoch is None:
            return None
        epoch = text(raw_epoch)
        cursor = event_id(state.pop(b"_cursor", b"0-0"))
        entries: Any = (
            await redis.xrevrange(self.keys.alarms, max=str(cursor), count=history)
            if cursor and history
            else []
        )
        return BusStart(
            epoch,
            cursor,
            {text(k): v for k, v in state.items()},
            [(event_id(e), f[PAYLOAD]) for e, f in reversed(entries) if _of(f, epoch)],
        )

    def follow(
        self,
        *,
        cursor: int | None,
        epoch: str | None,
        read_deadline: float = 2.0,
        frames: bool = True,
    ) -> BusReader:
        return BusReader(
            self.url, self.keys, cursor=cursor, epoch=epoch, read_deadline=read_deadline,
            frames=frames,
        )  # fmt: skip

    def commands(self, node: str) -> RedisCommands:
        return RedisCommands(
            connect(self.url, timeout=self.timeout, name=f"scada-{node}"), self.keys, node
        )


class RedisCommands:
    """A gateway's command channel on Redis: the `commands` stream, replies on its own."""

    def __init__(self, redis: Redis, keys: BusKeys, node: str) -> None:
        self.redis = redis
        self.sender = CommandSender(redis, keys, node)

    async def send(self, kind: str, body: dict[str, Any], request_id: str | None = None) -> str:
        try:
            return await self.sender.send(kind, body, request_id)
        except (RedisError, OSError) as err:
            raise BusUnavailable(repr(err)) from err

    async def read_replies(self, block: float = 1.0) -> list[Reply]:
        try:
            return await self.sender.read_replies(block)
        except (RedisError, OSError) as err:
            raise BusUnavailable(repr(err)) from err

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()


def _of(fields: dict[bytes, bytes], epoch: str) -> bool:
    return text(fields.get(EPOCH, b"")) == epoch
