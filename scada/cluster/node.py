"""One ingest node of an active/standby pair: the lease decides which role it plays.

Standing by, it mirrors the alarm stream into its journal and leaves the devices alone. When
it takes the lease it catches up with the stream's tail, starts the outbox (republishing what
its journal has and the stream lacks), and only then asks the ingest process to `activate`
(restore alarm state from the journal, connect to the devices). When it loses the lease it
stops publishing and applying commands first, then asks the process to `stand_by`.

A node whose journal holds an event the stream does not (it journaled while it was already
deposed, e.g. paused) or cannot be completed from the stream (trimmed) is `unfit`: it stops
competing for the lease and says so, until an operator reseeds its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Literal, Protocol

from redis.exceptions import RedisError

from scada.cluster.commands import Apply, CommandConsumer, Lookup
from scada.cluster.conn import connect
from scada.cluster.frames import FramePublisher
from scada.cluster.keys import BusKeys, entry_id
from scada.cluster.lease import Lease, LeaseLost
from scada.cluster.mirror import Mirror, MirroredJournal, MirrorHole
from scada.cluster.outbox import Outbox, stream_top
from scada.cluster.publish import PAYLOAD, Fenced

log = logging.getLogger("scada.cluster.node")

NodeState = Literal["starting", "standby", "active", "unfit"]


class IngestProcess(Protocol):
    """What the node asks of the process around it."""

    async def activate(self) -> None:
        """Restore alarm state from the journal, connect the devices, run the engine."""

    async def stand_by(self) -> None:
        """Disconnect the devices and stop writing the journal."""


class IngestNode:
    def __init__(
        self,
        url: str,
        keys: BusKeys,
        node: str,
        journal: MirroredJournal,
        journal_epoch: str,
        process: IngestProcess,
        *,
        apply_command: Apply,
        lookup_command: Lookup,
        lease_options: dict[str, Any] | None = None,
        frames_maxlen: int = 100,
    ) -> None:
        self.url = url
        self.keys = keys
        self.journal = journal
        self.process = process
        self.redis = connect(url, name=f"scada-ingest-{node}")
        self.lease = Lease(self.redis, keys, node, **(lease_options or {}))
        self.outbox = Outbox(self.redis, keys, self.lease, journal, journal_epoch)
        self.frames = FramePublisher(self.redis, keys, self.lease, maxlen=frames_maxlen)
        self.commands = CommandConsumer(
            self.redis, keys, self.lease, apply=apply_command, lookup=lookup_command
        )
        self.mirror = Mirror(journal, keys)
        self.state: NodeState = "starting"
        self.unfit_reason: str | None = None
        self.frames_dropped = 0
        self._changes: asyncio.Queue[bool | None] = asyncio.Queue()  # None: re-check state
        self._tasks: list[asyncio.Task[None]] = []
        self._lease_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ for the process

    def fence(self) -> None:
        """Call right before every journal write: LeaseLost if this node may not write."""
        if self.state != "active":
            raise LeaseLost(f"{self.lease.node} is {self.state}")
        self.lease.fence()

    def committed(self) -> None:
        """Call after every journal commit: the outbox publishes it."""
        self.outbox.poke()

    async def publish_frame(self, payload: bytes) -> bool:
        """Publish one tick's records if active; False (and counted) otherwise."""
        if self.state != "active":
            return False
        try:
            await self.frames.publish(payload)
            return True
        except (LeaseLost, Fenced, RedisError, OSError):
            self.frames_dropped += 1
            return False

    # ------------------------------------------------------------------ the role loop

    async def run(self) -> None:
        """Stand by, take over, step down, until cancelled."""
        self._lease_task = asyncio.create_task(self.lease.run(self._changes.put_nowait))
        try:
            await self._stand_by(was_active=False)
            while self.state != "unfit":
                held = await self._changes.get()
                if held and self.state == "standby":
                    await self._activate()
                elif held is False and self.state == "active":
                    await self._stand_by(was_active=True)
            await asyncio.Event().wait()  # unfit: stay up (health says why), never compete
        finally:
            self._lease_task.cancel()
            await self._stop_tasks()
            await self._release()
            await self.redis.aclose()

    async def _activate(self) -> None:
        await self._stop_tasks()
        try:
            caught_up = await self.mirror.catch_up(self.redis)
            await self.outbox.start()
        except MirrorHole as err:
            await self._unfit(str(err))
            return
        except (LeaseLost, Fenced, RedisError, OSError) as err:
            # Let go, so this node (or the other) tries again with a clean start.
            log.warning("takeover by %s failed: %s", self.lease.node, err)
            await self._release()
            await self._stand_by(was_active=False)
            return
        await self.process.activate()
        self.state = "active"
        await self.commands.ensure_group()
        self._tasks = [
            asyncio.create_task(self.outbox.run()),
            asyncio.create_task(self._run_commands()),
        ]
        log.info(
            "%s active with fencing token %s (caught up %d events, journal at %d)",
            self.lease.node,
            self.lease.token,
            caught_up,
            self.outbox.published_through,
        )

    async def _stand_by(self, was_active: bool) -> None:
        self.state = "standby"
        await self._stop_tasks()
        if was_active:
            await self.process.stand_by()
        problem = await self._diverged()
        if problem:
            await self._unfit(problem)
            return
        self._tasks = [asyncio.create_task(self._run_mirror())]
        log.info("%s standing by (journal at %d)", self.lease.node, self.journal.newest_id())

    async def _diverged(self) -> str | None:
        """Why this journal cannot follow the stream, or None."""
        newest = await asyncio.to_thread(self.journal.newest_id)
        if newest == 0:
            return None
        try:
            top = await stream_top(self.redis, self.keys.alarms)
            same: Any = await self.redis.xrange(
                self.keys.alarms, min=entry_id(newest), max=entry_id(newest)
            )
        except (RedisError, OSError):
            return None  # cannot tell now; the mirror checks every entry it writes
        if newest > top > 0:
            return f"journal at {newest} is ahead of the alarm stream at {top}"
        if same:
            mine = await asyncio.to_thread(self.journal.since, newest - 1, 1)
            if mine and self.outbox.encode(mine[0]) != same[0][1][PAYLOAD]:
                return f"journal event {newest} differs from the stream's"
        return None

    async def _unfit(self, why: str) -> None:
        self.state = "unfit"
        self.unfit_reason = why
        log.error("%s unfit to take over: %s; reseed its journal", self.lease.node, why)
        if self._lease_task is not None:
            self._lease_task.cancel()
        await self._release()
        self._changes.put_nowait(None)

    async def _release(self) -> None:
        if self.lease.token is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()

    async def _run_mirror(self) -> None:
        await self.mirror.run(self.url)  # returns only when the journal cannot follow
        await self._unfit("the alarm stream has a hole this journal cannot fill")

    async def _run_commands(self) -> None:
        while True:
            try:
                await self.commands.run()
            except (LeaseLost, Fenced):
                await asyncio.sleep(0.2)
            except (RedisError, OSError) as err:
                log.warning("commands: %s", err)
                await asyncio.sleep(1.0)

    async def _stop_tasks(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait: our own cancellation still propagates, theirs is not re-raised,
            # and a task that ignores its cancellation cannot stall the role change.
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            for task in stuck:
                log.error("%s: task %s did not stop when cancelled", self.lease.node, task)
