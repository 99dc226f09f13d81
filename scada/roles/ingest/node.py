"""One ingest node of an active/standby pair: the lease decides which role it plays.

Standing by, it mirrors the alarm stream into its journal and leaves the devices alone. When
it takes the lease it catches up with the stream's tail, starts the outbox (republishing what
its journal has and the stream lacks), and only then asks the ingest process to `activate`
(restore alarm state from the journal, connect to the devices). When it loses the lease it
stops publishing and applying commands first, then asks the process to `stand_by`.

A node whose journal ends in events the stream does not hold (it journaled while it was
already deposed, e.g. paused, or died between a commit and its publish) sets that tail aside
when it stands by (`Journal.set_aside_after`) and follows the stream. One whose journal shares
no recent event with the stream, or cannot be completed from it (trimmed), is `unfit`: it
stops competing for the lease and says so, until an operator reseeds its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, Protocol

from redis.exceptions import RedisError

from scada.bus.commandstream import Apply, CommandConsumer, Lookup
from scada.bus.conn import connect, raise_if_cancelled
from scada.bus.epoch import read_epoch
from scada.bus.framestream import FramePublisher
from scada.bus.keys import BusKeys, entry_id, event_id
from scada.bus.lease import Lease, LeaseLost
from scada.bus.ledgerstream import LedgerMirror
from scada.bus.publish import PAYLOAD, Fenced
from scada.roles.ingest.alarmoutbox import Outbox, stream_top
from scada.roles.ingest.mirror import Mirror, MirroredJournal, MirrorHole

log = logging.getLogger("scada.roles.ingest.node")

NodeState = Literal["starting", "standby", "active", "unfit"]
# A rejoining node sets aside at most this many unpublished events of its own; a longer
# divergence needs an operator (the node is unfit).
HEAL_WINDOW = 100


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
        alarms_maxlen: int = 100_000,
        adopt_epoch: Callable[[str], None] | None = None,
    ) -> None:
        """`adopt_epoch(journal_epoch)`: make the journal's epoch the bus's (a standby that
        mirrors the active node's journal; Journal.adopt_epoch), so a takeover keeps the
        epoch and clients resume without a snapshot. None: the epoch stays `journal_epoch`."""
        self.url = url
        self.keys = keys
        self.journal = journal
        self.process = process
        self.redis = connect(url, name=f"scada-ingest-{node}")
        self.lease = Lease(self.redis, keys, node, **(lease_options or {}))
        self.outbox = Outbox(
            self.redis, keys, self.lease, journal, journal_epoch, maxlen=alarms_maxlen
        )
        self._adopt_epoch = adopt_epoch
        self.frames = FramePublisher(self.redis, keys, self.lease, maxlen=frames_maxlen)
        self.commands = CommandConsumer(
            self.redis, keys, self.lease, apply=apply_command, lookup=lookup_command
        )
        self.mirror = Mirror(journal, keys)
        self.ledger = LedgerMirror(journal, keys)
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
            if self.state == "active":
                await self._flush()
            await self._release()
            await self.redis.aclose()

    @property
    def name(self) -> str:
        return self.lease.node

    async def active_node(self) -> str | None:
        """The name of the node holding the lease now (None: nobody, or Redis unreachable)."""
        try:
            holder = await self.lease.holder()
        except (RedisError, OSError):
            return None
        return holder[1] if holder else None

    async def _adopt_bus_epoch(self) -> None:
        """A journal that follows the stream (same ids, same events) takes the bus's journal
        epoch: after a takeover clients resume with their cursors, no snapshot needed."""
        if self._adopt_epoch is None:
            return
        try:
            epoch = await read_epoch(self.redis, self.keys)
        except (RedisError, OSError):
            return
        journal_epoch = (epoch or "").partition("/")[0]
        if not journal_epoch or journal_epoch == self.outbox.journal_epoch:
            return
        if await self._diverged() is not None:
            return  # another journal's stream: this one mints its own epoch on takeover
        await asyncio.to_thread(self._adopt_epoch, journal_epoch)
        self.outbox.journal_epoch = journal_epoch
        log.info("%s follows journal epoch %s", self.lease.node, journal_epoch)

    async def _activate(self) -> None:
        await self._stop_tasks()
        try:
            caught_up = await self.mirror.catch_up(self.redis)
            await self.ledger.catch_up(self.redis)
            await self._adopt_bus_epoch()
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
        # Active before the process starts its tick: its first journal write asks fence().
        self.state = "active"
        await self.process.activate()
        await self.commands.ensure_group()
        self._tasks = [
            self._spawn(self.outbox.run(), "outbox"),
            self._spawn(self._run_commands(), "commands"),
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
        problem = await self._reconcile()
        if problem:
            await self._unfit(problem)
            return
        await self._adopt_bus_epoch()
        self._tasks = [
            self._spawn(self._run_mirror(), "mirror"),
            self._spawn(self.ledger.run(self.redis), "ledger"),
        ]
        log.info("%s standing by (journal at %d)", self.lease.node, self.journal.newest_id())

    async def _reconcile(self) -> str | None:
        """Why this journal cannot follow the stream, or None (after setting aside a tail).

        A tail this node journaled after it lost the lease (paused, or killed between commit
        and publish) was never published: the stream went on under the same ids with the
        new active node's events. Such a tail (at most HEAL_WINDOW events) is moved to the
        journal's `diverged_events` table and the node follows the stream again."""
        newest = await asyncio.to_thread(self.journal.newest_id)
        if newest == 0:
            return None
        try:
            top = await stream_top(self.redis, self.keys.alarms)
            if top == 0:
                return None  # no stream (Redis lost its data): a takeover mints a new epoch
            start = min(newest, top)
            common = await self._common_id(start)
        except (RedisError, OSError):
            return None  # cannot tell now; the mirror checks every entry it writes
        if common is None:
            low = max(1, start - HEAL_WINDOW)
            return f"journal and alarm stream share no event in ids {low}..{start}"
        if common == newest:
            return None
        now = time.time()
        moved = await asyncio.to_thread(self.journal.set_aside_after, common, now)
        log.error(
            "%s: journal events %d..%d were never published (journaled after this node lost "
            "the lease): %d set aside in the journal's diverged_events table; following the "
            "stream from %d",
            self.lease.node,
            common + 1,
            newest,
            moved,
            common,
        )
        return None

    async def _common_id(self, start: int) -> int | None:
        """The newest id <= start whose event is the same in the journal and the stream."""
        low = max(1, start - HEAL_WINDOW)
        entries: Any = await self.redis.xrange(
            self.keys.alarms, min=entry_id(low), max=entry_id(start)
        )
        theirs = {event_id(entry): fields[PAYLOAD] for entry, fields in entries}
        mine = await asyncio.to_thread(self.journal.since, low - 1, start - low + 1)
        if mine is None:
            return None  # pruned: cannot compare
        ours = {ev.event_id: self.outbox.encode(ev) for ev in mine}
        for i in range(start, low - 1, -1):
            if i not in theirs:
                return None  # trimmed: cannot compare
            if theirs[i] == ours.get(i):
                return i
        return None

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

    async def _flush(self) -> None:
        """On a clean stop: publish what is committed, so the standby's journal has it."""
        try:
            added = await asyncio.wait_for(self.outbox.flush(), 2.0)
        except Exception as err:  # stopping anyway; unpublished events stay in this journal
            log.warning("%s: outbox not flushed at stop: %r", self.lease.node, err)
        else:
            if added:
                log.info("%s published %d event(s) at stop", self.lease.node, added)

    async def _release(self) -> None:
        if self.lease.token is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()

    async def _run_mirror(self) -> None:
        await self.mirror.run(self.url)  # returns only when the journal cannot follow
        await self._unfit("the alarm stream has a hole this journal cannot fill")

    async def _run_commands(self) -> None:
        while True:
            raise_if_cancelled()
            try:
                await self.commands.run()
            except (LeaseLost, Fenced):
                await asyncio.sleep(0.2)
            except (RedisError, OSError) as err:
                log.warning("commands: %s", err)
                await asyncio.sleep(1.0)

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=f"{self.lease.node}-{what}")
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("%s: %s stopped: %r", self.lease.node, task.get_name(), err, exc_info=err)

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
