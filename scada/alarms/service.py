"""AlarmService: the async glue between the pure engine, the journal and the web layer.

Single writer: one asyncio.Lock covers "engine mutation + journal commit", so events reach the
journal in the order the engine made them and two concurrent acks of one occurrence cannot
both pass (the second sees the first's result). Journal calls run in a worker thread so an
fsync never stalls the event loop. Every method that returns events returns them committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from scada.alarms import kpi as kpi_mod
from scada.alarms.engine import AlarmEngine
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent

REPLAY_PAGE = 10_000


class AlarmService:
    def __init__(
        self, engine: AlarmEngine, journal: Journal, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.journal = journal
        self._clock = clock  # wall clock: event times are shown to people and stored
        self._lock = asyncio.Lock()
        self._cursor = 0
        # What clients may see: only committed state. The engine runs ahead of the journal
        # while a commit is in flight; a snapshot taken then must not show those events.
        self._committed: list[AlarmEvent] = []
        self._committed_wire: list[dict[str, Any]] = []

    async def start(self) -> None:
        """Rebuild the engine's state from the journal."""
        async with self._lock:
            events = await asyncio.to_thread(self.journal.restore_events)
            next_occ = await asyncio.to_thread(self.journal.max_occurrence_id)
            self.engine.restore(events, next_occurrence_id=next_occ + 1)
            self._cursor = await asyncio.to_thread(self.journal.newest_id)
            self._publish()

    async def tick(
        self, now: float, values: np.ndarray, quality: np.ndarray, device_ok: dict[str, bool]
    ) -> list[dict[str, Any]]:
        """Evaluate one tick; return this tick's committed events as wire dicts, in order."""
        async with self._lock:
            events = self.engine.evaluate(now, values, quality, device_ok)
            return await self._commit(events)

    async def ack(self, occurrence_id: int, user: str, comment: str) -> list[dict[str, Any]]:
        async with self._lock:
            events = self.engine.acknowledge(occurrence_id, user, comment, self._clock())
            return await self._commit(events)

    async def shelve(
        self, alarm: str, minutes: float, user: str, comment: str
    ) -> list[dict[str, Any]]:
        async with self._lock:
            events = self.engine.shelve(alarm, minutes, user, comment, self._clock())
            return await self._commit(events)

    async def unshelve(self, alarm: str, user: str, comment: str = "") -> list[dict[str, Any]]:
        async with self._lock:
            events = self.engine.unshelve(alarm, user, comment, self._clock())
            return await self._commit(events)

    async def _commit(self, events: list[AlarmEvent]) -> list[dict[str, Any]]:
        if not events:
            return []
        # The engine already moved on; if the commit fails the process must not go on
        # pretending, so the error propagates to the caller (the runtime stops the server).
        await asyncio.to_thread(self.journal.append, events)
        self._cursor = max(self._cursor, max(e.event_id or 0 for e in events))
        self._publish()
        return [e.to_wire() for e in events]

    def _publish(self) -> None:
        self._committed = self.engine.current()
        self._committed_wire = [e.to_wire() for e in self._committed]

    def current(self) -> list[dict[str, Any]]:
        """Wire dicts of every alarm not in state normal (shelved ones say "shelved"),
        as of the newest committed event (`cursor()`)."""
        return list(self._committed_wire)

    def current_events(self) -> list[AlarmEvent]:
        return list(self._committed)

    def cursor(self) -> int:
        """Journal id of the newest committed event (the snapshot's alarm_cursor)."""
        return self._cursor

    async def reconfigure(self, engine: AlarmEngine) -> None:
        """Swap in an engine built from a new config, its state rebuilt from the journal:
        alarms stay as they were, new limits apply from the next tick."""
        async with self._lock:
            events = await asyncio.to_thread(self.journal.restore_events)
            next_occ = await asyncio.to_thread(self.journal.max_occurrence_id)
            engine.restore(events, next_occurrence_id=next_occ + 1)
            self.engine = engine
            self._publish()

    async def replay(self, cursor: int, upto: int | None = None) -> list[dict[str, Any]] | None:
        """Committed events with cursor < event_id <= upto (default: the newest committed), in
        order; None when the journal no longer holds them or the cursor is not from it.

        No lock: every event up to `upto` is already committed and ids never change, so this
        read cannot see a half-written page, and the tick never waits for it.
        """
        upto = self._cursor if upto is None else upto
        if cursor > upto:
            return None  # a cursor from the future: the client saw another journal
        out: list[dict[str, Any]] = []
        while cursor < upto:
            page = await asyncio.to_thread(self.journal.since, cursor, REPLAY_PAGE)
            if page is None:
                return None
            for event in page:
                if (event.event_id or 0) > upto:
                    return out
                out.append(event.to_wire())
            if len(page) < REPLAY_PAGE:
                break
            cursor = page[-1].event_id or upto
        return out

    async def history(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        line: str | None = None,
        alarm: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        events = await asyncio.to_thread(
            self.journal.history, since, until, line, alarm, limit, before
        )
        return [e.to_wire() for e in events]

    async def kpi(self, hours: float = 24.0, *, end: float | None = None) -> dict[str, object]:
        end = self._clock() if end is None else end
        start = end - hours * 3600.0
        events = await asyncio.to_thread(self.journal.between, start, end)
        return kpi_mod.compute(events, start=start, end=end, current=self._committed)

    async def prune(self) -> int:
        """Apply retention; call it now and then (e.g. hourly)."""
        return await asyncio.to_thread(self.journal.prune, self._clock())

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self.journal.close)
