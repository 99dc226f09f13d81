"""One ingest node of an active/standby pair: the lease decides which role it plays.

Standing by, it mirrors the alarm stream into its journal and leaves the devices alone. When
it takes the lease it catches up with the stream's tail, starts the outbox (republishing what
its journal has and the stream lacks), and only then asks the ingest process to `activate`
(restore alarm state from the journal, connect to the devices). When it loses the lease it
stops publishing and applying commands first, then asks the process to `stand_by`.

Its role is one `Role` with checked transitions: starting → standby ⇄ activating → active →
deposing → standby; any → unfit (final). Activation has a deadline: a node that holds the lease
but is not serving within it gives the lease up, says why in one log line and stands by again;
a node that stays between roles longer than that answers /health 503 (`stuck()`), so a
supervisor restarts it.

The journal writes only what the bus accepted (the outbox is its gate), so its ids never
fork. A node whose journal nevertheless ends above the cluster's record (Redis lost what it had
accepted and another node went on under those ids) moves that tail to pending when it stands
by (`Journal.move_to_pending_after`), and follows the stream; pending events reach the record
late (scada.roles.ingest.late), whatever this node's role. One whose journal shares no recent
event with the stream, or cannot be completed from it (trimmed), is `unfit`: it stops
competing for the lease and says so, until an operator reseeds its journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any, Protocol

from redis.exceptions import RedisError

from scada.bus.commandstream import Apply, CommandConsumer, Lookup
from scada.bus.conn import connect, raise_if_cancelled
from scada.bus.epoch import read_epoch
from scada.bus.framestream import FramePublisher
from scada.bus.keys import BusKeys, entry_id, event_id
from scada.bus.lease import Lease, LeaseLost
from scada.bus.ledgerstream import LedgerMirror
from scada.bus.publish import PAYLOAD, Fenced
from scada.roles.ingest.alarmoutbox import JournalBehind, Outbox, stream_top
from scada.roles.ingest.late import LateForwarder, LateIntake
from scada.roles.ingest.mirror import Mirror, MirrorDiverged, MirroredJournal, MirrorHole

log = logging.getLogger("scada.roles.ingest.node")


class Role(StrEnum):
    """An ingest node's role; `IngestNode.state` changes only along `TRANSITIONS`."""

    STARTING = "starting"
    STANDBY = "standby"
    ACTIVATING = "activating"
    ACTIVE = "active"
    DEPOSING = "deposing"
    UNFIT = "unfit"


TRANSITIONS: dict[Role, frozenset[Role]] = {
    Role.STARTING: frozenset({Role.STANDBY, Role.DEPOSING, Role.UNFIT}),
    Role.STANDBY: frozenset({Role.ACTIVATING, Role.UNFIT}),
    Role.ACTIVATING: frozenset({Role.ACTIVE, Role.DEPOSING, Role.UNFIT}),
    Role.ACTIVE: frozenset({Role.DEPOSING}),
    Role.DEPOSING: frozenset({Role.STANDBY, Role.UNFIT}),
    Role.UNFIT: frozenset(),
}
BETWEEN = (Role.STARTING, Role.ACTIVATING, Role.DEPOSING)  # roles a node must not stay in
NodeState = Role  # the name scada.roles.ingest.status used


class BadTransition(RuntimeError):
    """A role change the node's design does not allow (a bug, never a fault to retry)."""


# A rejoining node moves at most this many events of its own to pending; a longer
# divergence needs an operator (the node is unfit).
HEAL_WINDOW = 100
# Occurrence ids of a node active with fencing token T start above T * OCC_SPAN, so two nodes
# never hand out the same occurrence id, also while one of them is cut off from the bus.
OCC_SPAN = 1_000_000


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
        activation_deadline: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`adopt_epoch(journal_epoch)`: make the journal's epoch the bus's (a standby that
        mirrors the active node's journal; Journal.adopt_epoch), so a takeover keeps the
        epoch and clients resume without a snapshot. None: the epoch stays `journal_epoch`."""
        self.url = url
        self.keys = keys
        self.journal = journal
        self.process = process
        self.redis = connect(url, name=f"scada-ingest-{node}")
        self.lease = Lease(
            self.redis,
            keys,
            node,
            token_floor=journal.token_high(),
            on_floor=self._keep_floor,
            **(lease_options or {}),
        )
        self.outbox = Outbox(
            self.redis, keys, self.lease, journal, journal_epoch, maxlen=alarms_maxlen
        )
        self.outbox.on_behind = self._step_down
        self.outbox.on_refused = self._refused
        self.forwarder = LateForwarder(self.redis, keys, node, journal)
        self.intake = LateIntake(self.redis, keys, journal, self.committed)
        self.activation_deadline = activation_deadline
        self._clock = clock
        self._adopt_epoch = adopt_epoch
        self.frames = FramePublisher(self.redis, keys, self.lease, maxlen=frames_maxlen)
        self.commands = CommandConsumer(
            self.redis, keys, self.lease, apply=apply_command, lookup=lookup_command
        )
        self.mirror = Mirror(journal, keys)
        self.ledger = LedgerMirror(journal, keys)
        self.state = Role.STARTING
        self._since = clock()
        self.unfit_reason: str | None = None
        self.activations_abandoned = 0
        self.frames_dropped = 0
        self._changes: asyncio.Queue[bool | None] = asyncio.Queue()  # None: re-check state
        self._tasks: list[asyncio.Task[None]] = []
        self._lease_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stepping_down = False

    # ------------------------------------------------------------------ role

    def _become(self, role: Role) -> None:
        if role is self.state:
            return
        if role not in TRANSITIONS[self.state]:
            raise BadTransition(f"{self.name}: {self.state} → {role} is not a role change")
        self.state = role
        self._since = self._clock()

    def stuck(self) -> str | None:
        """Why this node is stuck between roles (for /health), or None."""
        if self.state in BETWEEN:
            held = self._clock() - self._since
            if held > self.activation_deadline:
                return f"{self.state} for {held:.0f} s (limit {self.activation_deadline:.0f} s)"
        return None

    def _keep_floor(self, token: int) -> None:
        """The lease saw a higher token: keep it in the journal (the floor after data loss)."""
        self._in_background(asyncio.to_thread(self.journal.raise_token_high, token), "floor")

    def _in_background(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"{self.name}-{what}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _step_down(self, why: str) -> None:
        """Give the lease up and stand by: the stream is ahead of this journal, or a write was
        refused (the lease could not be trusted, the bus did not accept a batch) and the
        tick stopped evaluating alarms. Standing by and taking over again restores the
        engine from the journal; the refused batch reaches the record late."""
        if self.state not in (Role.ACTIVE, Role.ACTIVATING) or self._stepping_down:
            return
        self._stepping_down = True
        log.error("%s steps down: %s; it stands by and may take over again", self.name, why)

        async def release() -> None:
            await self._release()
            self._changes.put_nowait(False)

        self._in_background(release(), "step-down")

    def _refused(self, why: str) -> None:
        """A journal write was refused (any thread): step down on the event loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._step_down, why)

    # ------------------------------------------------------------------ for the process

    def fence(self) -> None:
        """Call right before every journal write: LeaseLost if this node may not write."""
        if self.state not in (Role.ACTIVATING, Role.ACTIVE):
            raise LeaseLost(f"{self.lease.node} is {self.state}")
        try:
            self.lease.fence()
        except LeaseLost as err:
            self._refused(str(err))
            raise

    def committed(self) -> None:
        """Call after every journal commit: the outbox publishes it."""
        self.outbox.poke()

    async def publish_frame(self, payload: bytes) -> bool:
        """Publish one tick's records if active; False (and counted) otherwise."""
        if self.state not in (Role.ACTIVATING, Role.ACTIVE):
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
        self._loop = asyncio.get_running_loop()
        self._lease_task = asyncio.create_task(self.lease.run(self._changes.put_nowait))
        forwarding = self._spawn(self.forwarder.run(), "late-forwarder")
        try:
            await self._stand_by(was_active=False)
            while self.state is not Role.UNFIT:
                # The lease's state, not the last change reported: a lease given up and taken
                # again between two turns of its loop reports no change at all.
                if self.state is Role.STANDBY and self.lease.held():
                    await self._activate()
                elif self.state is Role.ACTIVE and not self.lease.held():
                    await self._stand_by(was_active=True)
                else:
                    await self._changes.get()
            await asyncio.Event().wait()  # unfit: stay up (health says why), never compete
        finally:
            self._lease_task.cancel()
            forwarding.cancel()
            await self._stop_tasks()
            if self.state is Role.ACTIVE:
                await self._flush()
            await self._release()
            await asyncio.wait([self._lease_task, forwarding], timeout=2.0)
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
        self._become(Role.ACTIVATING)
        await self._stop_tasks()
        started = self._clock()
        deadline = asyncio.timeout(self.activation_deadline)
        try:
            async with deadline:
                caught_up = await self._take_over()
        except MirrorHole as err:
            await self._unfit(str(err))
            return
        except (LeaseLost, Fenced, RedisError, OSError, MirrorDiverged, JournalBehind) as err:
            if deadline.expired():  # TimeoutError is an OSError
                self.activations_abandoned += 1
                log.error(
                    "%s gives the lease up: not serving %.0f s after taking it (activation "
                    "deadline); standing by",
                    self.name,
                    self._clock() - started,
                )
            else:  # let go, so this node (or the other) tries again with a clean start
                log.warning("takeover by %s failed: %r", self.lease.node, err)
            await self._release()
            await self._stand_by(was_active=True)
            return
        self._become(Role.ACTIVE)
        log.info(
            "%s active with fencing token %s (caught up %d events, journal at %d, %.1f s)",
            self.lease.node,
            self.lease.token,
            caught_up,
            self.outbox.published_through,
            self._clock() - started,
        )

    async def _take_over(self) -> int:
        """Catch up, join the epoch, start publishing, then the process; within the deadline."""
        problem = await self._reconcile()  # the mirror may have been stopped before it did
        if problem:
            raise MirrorHole(problem)
        caught_up = await self.mirror.catch_up(self.redis)
        await self.ledger.catch_up(self.redis)
        await self._adopt_bus_epoch()
        await self.outbox.start()
        token = self.lease.token or 0
        await asyncio.to_thread(self.journal.raise_occurrence_floor, token * OCC_SPAN)
        # The outbox before the tick: from the process's first commit on, what is journaled
        # is on the bus (the journal's gate), and the outbox republishes anything older.
        self._tasks = [
            self._spawn(self.outbox.run(), "outbox"),
            self._spawn(self.intake.run(), "late-intake"),
        ]
        await self.process.activate()
        await self.commands.ensure_group()
        self._tasks.append(self._spawn(self._run_commands(), "commands"))
        return caught_up

    async def _stand_by(self, was_active: bool) -> None:
        self._stepping_down = False
        if was_active:
            self._become(Role.DEPOSING)
        await self._stop_tasks()
        if was_active:
            limit = asyncio.timeout(self.activation_deadline)
            try:
                async with limit:
                    await self.process.stand_by()
            except TimeoutError:
                if not limit.expired():
                    raise
                # Stay "deposing": /health turns 503 and a supervisor restarts the process.
                log.error(
                    "%s: stopping the devices and the tick took longer than %.0f s; "
                    "this node is stuck between roles",
                    self.name,
                    self.activation_deadline,
                )
                return
        self._become(Role.STANDBY)
        self._tasks = [
            self._spawn(self._run_mirror(), "mirror"),
            self._spawn(self.ledger.run(self.redis), "ledger"),
        ]
        newest = await asyncio.to_thread(self.journal.newest_id)
        log.info("%s standing by (journal at %d)", self.lease.node, newest)

    async def _follow_record(self) -> str | None:
        """Reconcile with the stream (retried until Redis answers), adopt its epoch; the
        reason this journal cannot follow, or None."""
        failing = False
        while True:
            raise_if_cancelled()
            try:
                problem = await self._reconcile()
                break
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("%s: cannot compare its journal with the stream now: %r",
                                self.name, err)  # fmt: skip
                failing = True
                await asyncio.sleep(1.0)
        if problem is None:
            await self._adopt_bus_epoch()
        return problem

    async def _reconcile(self) -> str | None:
        """Why this journal cannot follow the stream, or None (after setting aside a tail).

        A tail above the stream's events (Redis lost what it had accepted and another node
        went on under the same ids) is not the record any more. Such a tail (at most
        HEAL_WINDOW events) is moved to the
        journal's `pending_events` (they reach the record late) and the node follows the
        stream again. RedisError: cannot tell now (the caller retries)."""
        newest = await asyncio.to_thread(self.journal.newest_id)
        if newest == 0:
            return None
        top = await stream_top(self.redis, self.keys.alarms)
        if top == 0:
            return None  # no stream (Redis lost its data): a takeover mints a new epoch
        start = min(newest, top)
        common = await self._common_id(start)
        if common is None:
            low = max(1, start - HEAL_WINDOW)
            return f"journal and alarm stream share no event in ids {low}..{start}"
        if common == newest:
            return None
        now = time.time()
        moved = await asyncio.to_thread(self.journal.move_to_pending_after, common, now)
        log.warning(
            "%s: journal events %d..%d are not the cluster's record (the stream went on "
            "without them): %d moved to pending, to reach the record late; following the "
            "stream from %d",
            self.lease.node,
            common + 1,
            newest,
            moved,
            common,
        )
        self.forwarder.poke()
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
        self._become(Role.UNFIT)
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
        while True:
            problem = await self._follow_record()
            if problem:
                await self._unfit(problem)
                return
            try:
                await self.mirror.run(self.url)  # returns only when the journal cannot follow
            except MirrorDiverged as err:
                log.warning("%s: %s; reconciling", self.name, err)
                continue
            await self._unfit("the alarm stream has a hole this journal cannot fill")
            return

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
