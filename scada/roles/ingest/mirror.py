"""The standby keeps its journal warm from the alarm stream, under the same ids.

The standby's alarm engine is idle, so nothing else writes its journal and SQLite's
AUTOINCREMENT hands out exactly newest + 1: appending the stream's events in order keeps
every id, which `apply` checks before each write (`append_numbered`). Entries the journal
already has (a new epoch backfills from the leader's journal) are compared with the journal's
events under the same ids, never skipped blindly: one that differs means this journal ran
ahead of a record that lost its data and went on under those ids (`MirrorDiverged`; the node
moves its own tail to pending, to reach the record late, and follows). An entry that does not follow
the journal's newest event is a hole the stream cannot fill, and the standby marks itself
unfit to take over until an operator reseeds its journal.

On takeover the node stops mirroring, `catch_up` reads what is left up to the stream's top,
and only then does the outbox start (it refuses a journal behind the stream) and the engine
restore its state from the journal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from redis.asyncio import Redis

from scada.bus.keys import BusKeys, entry_id, event_id
from scada.bus.publish import PAYLOAD
from scada.bus.reader import AlarmEntries, BusReader, EpochChanged, Gap
from scada.bus.ring import contiguous
from scada.core.alarmevent import AlarmEvent
from scada.roles.ingest.alarmoutbox import JournalSource, decode_event, encode_event

log = logging.getLogger("scada.roles.ingest.mirror")


class MirrorHole(Exception):
    """The stream lacks events this journal needs: the standby cannot take over."""


class MirrorDiverged(Exception):
    """The stream holds another event under an id this journal has: reconcile, then follow."""

    def __init__(self, event_id: int) -> None:
        super().__init__(f"the alarm stream's event {event_id} differs from the journal's")
        self.event_id = event_id


class MirroredJournal(JournalSource, Protocol):
    """What the mirror needs of the journal: the outbox's reads plus numbered appends."""

    def append(self, events: Iterable[AlarmEvent]) -> list[AlarmEvent]: ...

    def append_numbered(self, events: Iterable[AlarmEvent]) -> list[AlarmEvent]: ...

    def move_to_pending_after(self, event_id: int, now: float) -> int: ...

    def pending(self, limit: int = ...) -> list[tuple[int, AlarmEvent]]: ...

    def drop_pending(self, pids: Iterable[int]) -> int: ...

    def contains(self, ev: AlarmEvent) -> bool: ...

    def raise_occurrence_floor(self, floor: int) -> None: ...

    def token_high(self) -> int: ...

    def raise_token_high(self, token: int) -> None: ...

    def remember_commands(self, rows: list[tuple[str, dict[str, Any], float]]) -> int: ...


class Mirror:
    def __init__(self, journal: MirroredJournal, keys: BusKeys) -> None:
        self.journal = journal
        self.keys = keys
        self.fit = True  # False after a hole: this journal cannot serve a takeover
        self.mirrored = 0
        self.mirrored_through = 0  # the newest journal id this mirror wrote

    def apply(self, entries: list[tuple[int, bytes]]) -> int:
        """Journal the entries the journal does not have yet; returns how many. Entries it
        has are compared (MirrorDiverged if one differs)."""
        newest = self.journal.newest_id()
        known = [(i, p) for i, p in entries if i <= newest]
        if known:
            self._compare(known)
        fresh = [(i, p) for i, p in entries if i > newest]
        if not fresh:
            return 0
        if fresh[0][0] != newest + 1 or not contiguous(fresh):
            self.fit = False
            raise MirrorHole(f"journal at {newest}, stream goes on at {fresh[0][0]}")
        events = [decode_event(p) for _, p in fresh]
        for (i, _), ev in zip(fresh, events, strict=True):
            ev.event_id = i
        try:
            stored = self.journal.append_numbered(events)
        except ValueError as err:
            self.fit = False
            raise MirrorHole(str(err)) from None
        self.mirrored += len(stored)
        self.mirrored_through = fresh[-1][0]
        return len(stored)

    def _compare(self, known: list[tuple[int, bytes]]) -> None:
        first = known[0][0]
        mine = self.journal.since(first - 1, known[-1][0] - first + 1)
        if mine is None:
            return  # pruned here: nothing left to compare with
        ours = {ev.event_id: ev for ev in mine}
        for i, payload in known:
            ev = ours.get(i)
            if ev is not None and encode_event(ev) != payload:
                raise MirrorDiverged(i)

    async def run(self, url: str) -> None:
        """Mirror until cancelled (while standing by); returns when the journal is unfit.
        MirrorDiverged: this journal holds other events under ids the stream has."""
        # Frames too: they are the active node's heartbeat, so "stale" means it is gone.
        # Never the journal's lock on the event loop: its gate may hold it, waiting for the loop.
        newest = await asyncio.to_thread(self.journal.newest_id)
        reader = BusReader(url, self.keys, cursor=newest, frames=True)
        async for event in reader.events():
            if isinstance(event, EpochChanged):
                # The new epoch's stream starts with a backfill the journal mostly has.
                log.info("mirror: bus epoch %s → %s", event.old, event.new)
            elif isinstance(event, Gap):
                log.error("mirror: alarm stream gap after %d (next %d)", event.after, event.first)
            elif isinstance(event, AlarmEntries):
                try:
                    await asyncio.to_thread(self.apply, event.entries)
                except MirrorHole as err:
                    log.error("mirror: %s; this node is unfit to take over", err)
                    return

    async def catch_up(self, redis: Redis, batch: int = 1000) -> int:
        """Read the stream from the journal's newest event to the stream's top (on takeover)."""
        total = 0
        while True:
            start = entry_id(await asyncio.to_thread(self.journal.newest_id) + 1)
            reply: Any = await redis.xrange(self.keys.alarms, min=start, count=batch)
            entries = [(event_id(entry), fields[PAYLOAD]) for entry, fields in reply]
            if not entries:
                return total
            total += await asyncio.to_thread(self.apply, entries)
