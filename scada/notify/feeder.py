"""Feeds the outbox from committed alarm events, by journal cursor.

The feeder never sees an event before the journal has it: it reads committed events back
from the alarm service (`replay(cursor, upto)`), so events committed while it was stopped
(or while the whole server was down) are picked up from the cursor the outbox stored with
its last rows. The alarm service only wakes it (`on_committed`); the tick never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from scada.alarms.model import AlarmEvent
from scada.notify import rules as rules_mod
from scada.notify.delivery import Db
from scada.notify.outbox import Outbox, TimerOp
from scada.notify.payload import notification
from scada.notify.settings import NotificationsConfig

log = logging.getLogger(__name__)

PAGE = 200  # journal events routed per outbox transaction
IDLE_CHECK = 30.0  # seconds between looks at the timers when nothing happens


class CommittedEvents(Protocol):
    """What the feeder needs of scada.alarms.service.AlarmService."""

    def cursor(self) -> int: ...

    async def replay(self, cursor: int, upto: int | None = None) -> list[dict[str, Any]] | None: ...

    def on_committed(self, listener: Callable[[Sequence[AlarmEvent]], None]) -> None: ...


class Feeder:
    def __init__(
        self,
        config: NotificationsConfig,
        source: CommittedEvents,
        outbox: Outbox,
        db: Db,
        clock: Callable[[], float],
        enqueued: Callable[[set[str]], None],
    ) -> None:
        self.config = config
        self.source = source
        self.outbox = outbox
        self.db = db
        self.clock = clock
        self.enqueued = enqueued  # wakes the workers of these targets
        self.targets = {t.name for t in config.targets}
        self.wake = asyncio.Event()
        self.cursor = 0
        self._full: set[str] = set()  # targets whose outbox is dropping rows

    async def open(self, skip_through: int = 0, *, handover: bool = False) -> None:
        """Read the stored cursor; a new outbox starts at the journal's newest event.

        Events up to `skip_through` are passed over (another node notified them). With
        `handover` (a cluster node taking over at the other node's delivered-through mark) a
        new outbox starts at `skip_through` too, so the events above it are notified here."""
        stored = await self.db(self.outbox.cursor)
        newest = self.source.cursor()
        if stored is not None and stored < skip_through <= newest:
            log.info(
                "notifications skip alarm events %d..%d (mirrored: notified by the node that "
                "committed them)",
                stored + 1,
                skip_through,
            )
            await self.db(self.outbox.commit, [], now=self.clock(), cursor=skip_through)
            stored = skip_through
        if stored is None and handover and skip_through <= newest:
            stored = skip_through
            await self.db(self.outbox.commit, [], now=self.clock(), cursor=stored)
            log.info("notification outbox created; notifying alarm events after id %d", stored)
        if stored is None:
            self.cursor = newest
            await self.db(self.outbox.commit, [], now=self.clock(), cursor=newest)
            log.info("notification outbox created; notifying alarm events after id %d", newest)
            return
        self.cursor = stored
        if stored > newest:
            log.warning(
                "alarm journal is behind the notification outbox (id %d < %d): a new journal; "
                "notifying its events after id %d under new event ids",
                newest,
                stored,
                newest,
            )
            await self.db(self.outbox.new_journal, newest)
            self.cursor = newest
        elif stored < newest:
            log.info(
                "notifications catching up on %d alarm event(s) committed since the last run",
                newest - stored,
            )

    def committed(self, _events: Sequence[AlarmEvent]) -> None:
        """The alarm service's on_committed listener: only a wake-up, never blocks."""
        self.wake.set()

    async def run(self) -> None:
        while True:
            self.wake.clear()
            await self._drain()
            await self._fire_due_timers()
            next_due = await self.db(self.outbox.next_due)
            timeout = IDLE_CHECK if next_due is None else max(0.0, next_due - self.clock())
            # asyncio.timeout, not wait_for: no inner task that a shutdown could strand.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout, IDLE_CHECK)):
                    await self.wake.wait()

    async def _drain(self) -> None:
        while self.cursor < (newest := self.source.cursor()):
            upto = min(newest, self.cursor + PAGE)
            events = await self.source.replay(self.cursor, upto)
            if events is None:
                log.warning(
                    "alarm journal no longer holds the events after id %d (pruned or "
                    "replaced); notifications resume after id %d",
                    self.cursor,
                    newest,
                )
                upto, events = newest, []
            # Routing and JSON encoding run on the outbox thread with the commit: a flood's
            # page of events never holds the event loop.
            rows, dropped = await self.db(self._route_and_commit, events, upto, self.clock())
            self.cursor = upto
            self._report(rows, dropped)

    def _route_and_commit(
        self, events: list[dict[str, Any]], upto: int, now: float
    ) -> tuple[list[tuple[str, str, bytes]], dict[str, int]]:
        rows, ops = self._route(events, now)
        return rows, self.outbox.commit(rows, now=now, cursor=upto, timer_ops=ops)

    def _route(
        self, events: list[dict[str, Any]], now: float
    ) -> tuple[list[tuple[str, str, bytes]], list[TimerOp]]:
        rows: list[tuple[str, str, bytes]] = []
        ops: list[TimerOp] = []
        for alarm in events:
            routing = rules_mod.route(self.config, alarm)
            ops.extend(("cancel", occ) for occ in routing.cancel)
            ops.extend(("start" if t.start else "refresh", t) for t in routing.timers)
            if not routing.deliveries:
                continue
            event_id = rules_mod.event_id(self.outbox.instance, int(alarm["event_id"]))
            for target, rule_names in routing.deliveries.items():
                body = notification(event_id, str(alarm["event"]), alarm, rule_names, now)
                rows.append((target, event_id, body))
        return rows, ops

    async def _fire_due_timers(self) -> None:
        now = self.clock()
        due = await self.db(self.outbox.due_timers, now)
        if not due:
            return
        rows: list[tuple[str, str, bytes]] = []
        for timer in due:
            event_id = rules_mod.timer_event_id(self.outbox.instance, timer)
            body = notification(
                event_id,
                rules_mod.UNACK,
                timer.alarm,
                [timer.rule],
                now,
                unacknowledged_minutes=timer.minutes,
            )
            rows += [(t, event_id, body) for t in timer.targets if t in self.targets]
        ops: list[TimerOp] = [("fired", (t.rule, t.occurrence_id)) for t in due]
        dropped = await self.db(self.outbox.commit, rows, now=now, timer_ops=ops)
        self._report(rows, dropped)

    def _report(self, rows: list[tuple[str, str, bytes]], dropped: dict[str, int]) -> None:
        """Wake the targets that got rows; log a full outbox once, until it drains."""
        targets = {r[0] for r in rows}
        for target in targets:
            if dropped.get(target) and target not in self._full:
                self._full.add(target)
                log.warning(
                    "notification outbox of %s is full (max_queued %d): dropping its oldest "
                    "notifications until it drains (counted as dropped)",
                    target,
                    self.config.max_queued,
                )
            elif not dropped.get(target) and target in self._full:
                self._full.discard(target)
                log.info(
                    "notification outbox of %s below its limit again; %d dropped in all",
                    target,
                    self.outbox.target(target).dropped,
                )
        if targets:
            self.enqueued(targets)
