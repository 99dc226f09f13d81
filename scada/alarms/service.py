"""AlarmService: the async glue between the pure engine, the journal and the web layer.

Single writer: one asyncio.Lock covers "engine mutation + journal commit", so events reach the
journal in the order the engine made them and two concurrent acks of one occurrence cannot
both pass (the second sees the first's result). Commits run on one dedicated thread (no other
work queues in front of an fsync, and the event loop never waits for one); reads (history,
replay) run in other worker threads on connections of their own and never take the writer's
lock; the heavy ones (KPIs, history pages, export pages) run in the heavy-read worker process
(`offload`, scada.core.offload) when the app gives one, so their Python work never holds the GIL the
tick needs. Every method that returns events returns them committed.

Operator requests are planned by the engine, committed, and only then applied: a request whose
commit fails changes nothing and is refused with `journal_unavailable`.

Timing (delays, debounce, rate windows, shelving expiry) runs on the monotonic clock; the wall
clock only stamps events, so a clock step cannot stretch or shorten any of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from scada.alarms import reads
from scada.alarms.engine import AlarmEngine
from scada.alarms.flood import Episode, FloodDetector
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent, AlarmRequestError
from scada.core.errors import WriteFenced
from scada.core.offload import Offload, run_off
from scada.core.timefmt import iso_or_none

log = logging.getLogger(__name__)

REPLAY_PAGE = 10_000
# Called with each committed batch, in commit order, on the event loop (must not block).
CommitListener = Callable[[Sequence[AlarmEvent]], None]
# Called with the flood state (the `alarm_flood` frame's data) whenever it changes.
FloodListener = Callable[[dict[str, Any]], None]
# Called right before every journal write; raises if this process may not write (a cluster
# node that is not the active one, scada.roles.ingest.node.IngestNode.fence).
Fence = Callable[[], object]
ANNUNCIATED_HIDDEN = ("shelved", "suppressed")
_T = TypeVar("_T")


class AlarmService:
    def __init__(
        self,
        engine: AlarmEngine,
        journal: Journal,
        *,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        offload: Offload | None = None,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.offload = offload  # None: heavy reads in a thread of this process
        self._clock = clock  # wall clock: event times are shown to people and stored
        self._mono = mono  # what every delay and expiry is measured on
        self._lock = asyncio.Lock()
        # The journal's own thread: commits never queue behind other blocking work.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-journal")
        self._listeners: list[CommitListener] = []
        self._flood_listeners: list[FloodListener] = []
        self._flood = self._new_detector(engine)
        self._flood_state: dict[str, Any] = _flood_data(False, 0, None, None)
        self._flood_start: tuple[Episode, float] | None = None  # (episode, its wall start)
        self._cursor = 0
        # What clients may see: only committed state. The engine runs ahead of the journal
        # while a commit is in flight; a snapshot taken then must not show those events.
        self._committed: list[AlarmEvent] = []
        self._committed_wire: list[dict[str, Any]] = []
        self._fence: Fence | None = None

    def set_fence(self, fence: Fence | None) -> None:
        """Ask `fence()` right before every journal write (ticks and operator requests); when
        it raises, nothing is committed: a tick raises WriteFenced, a request is refused."""
        self._fence = fence

    def _fenced(self) -> None:
        if self._fence is None:
            return
        try:
            self._fence()
        except Exception as err:
            raise WriteFenced(str(err)) from err

    def _append(
        self, events: list[AlarmEvent], request_id: str | None, result: Any
    ) -> list[AlarmEvent]:
        """On the journal's thread: the fence, then the commit, nothing in between."""
        self._fenced()
        if request_id is None:
            return self.journal.append(events)
        return self.journal.append(events, request_id=request_id, result=result, at=self._clock())

    def on_committed(self, listener: CommitListener) -> None:
        """Call `listener(events)` after every commit, with the committed AlarmEvents (each
        with its `event_id`), in journal order, on the event loop; it must not block (hand
        the events to a queue). A listener that raises is logged and does not stop others.
        Catching up after a restart: remember the last event_id handled and read on with
        `replay(cursor)` (or `journal.since`) at start."""
        self._listeners.append(listener)

    def now(self) -> float:
        """The service's wall clock (event stamps, KPI and export windows)."""
        return self._clock()

    def on_flood(self, listener: FloodListener) -> None:
        """Call `listener(data)` whenever the flood state changes (start, count, end)."""
        self._flood_listeners.append(listener)

    def flood(self) -> dict[str, Any]:
        """The plant's alarm flood state: the `alarm_flood` frame's data."""
        return dict(self._flood_state)

    @staticmethod
    def _new_detector(engine: AlarmEngine) -> FloodDetector:
        s = engine.config.alarms
        return FloodDetector(s.flood_window, s.flood_start_above, s.flood_end_below)

    def _track_flood(self, events: Sequence[AlarmEvent], wall: float, mono: float) -> None:
        """Count annunciated raises; end an episode once the trailing window thins out.

        Measured on the tick's monotonic clock; reported as wall times (a start is the
        stamp of the raise that started it)."""
        ended: Episode | None = None
        for e in events:
            if e.event == "raised" and e.state not in ANNUNCIATED_HIDDEN:
                ended = self._flood.add(mono, e.alarm) or ended
        ended = self._flood.advance(mono) or ended
        open_ = self._flood.episode
        episode = open_ or ended
        if episode is None:
            return
        # The wall time of the start, converted once per episode: converting it again at
        # every tick moved it by the millisecond between the tick's two clock reads, and each
        # such move re-sent the `alarm_flood` frame (seen under load).
        if self._flood_start is None or self._flood_start[0] is not episode:
            self._flood_start = (episode, wall - (mono - episode.started_at))
        started = self._flood_start[1]
        if open_ is not None:
            data = _flood_data(True, open_.count, started, None)
        else:
            assert ended is not None
            end = wall - (mono - (ended.ended_at or mono))
            data = _flood_data(False, ended.count, started, end)
        if data != self._flood_state:
            if open_ is not None and not self._flood_state["active"]:
                log.warning("alarm flood started: %d alarms in the window", open_.count)
            elif open_ is None and ended is not None:
                log.warning("alarm flood ended: %d alarms", ended.count)
            self._flood_state = data
            # After this tick's alarm frames: the caller publishes them once tick() returns.
            asyncio.get_running_loop().call_soon(self._tell_flood, data)

    def _tell_flood(self, data: dict[str, Any]) -> None:
        for listener in self._flood_listeners:
            try:
                listener(dict(data))
            except Exception:
                log.exception("alarm flood listener %r failed", listener)

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def start(self) -> None:
        """Rebuild the engine's state from the journal."""
        async with self._lock:
            await self._restore(self.engine)
            self._cursor = await self._write(self.journal.newest_id)
            self._publish()

    async def _restore(self, engine: AlarmEngine) -> None:
        events = await self._write(self.journal.restore_events)
        next_occ = await self._write(self.journal.max_occurrence_id)
        engine.restore(events, next_occurrence_id=next_occ + 1)

    async def tick(
        self,
        now: float,
        values: np.ndarray,
        quality: np.ndarray,
        device_ok: dict[str, bool],
        *,
        mono: float | None = None,
    ) -> list[dict[str, Any]]:
        """Evaluate one tick; return this tick's committed events as wire dicts, in order.

        `now` stamps the events; `mono` (default: the service's monotonic clock) times them.
        A failed commit propagates: the engine already moved on, so the caller must stop.
        """
        async with self._lock:
            self._fenced()  # a deposed node does not even evaluate
            mono = self._mono() if mono is None else mono
            events = self.engine.evaluate(now, values, quality, device_ok, mono=mono)
            if events:
                await self._write(self._append, events, None, None)
            wire = self._committed_batch(events)
            self._track_flood(events, now, mono)
            return wire

    async def ack(
        self, occurrence_id: int, user: str, comment: str, *, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """`request_id` (a cluster command's): remembered with the commit (the ledger)."""
        async with self._lock:
            events = self.engine.acknowledge(occurrence_id, user, comment, self._clock())
            return await self._commit_request(events, request_id)

    async def ack_many(
        self,
        occurrence_ids: list[int],
        user: str,
        comment: str,
        *,
        request_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Acknowledge several occurrences with one comment: each gets its own event, and
        each its own result, in request order: `{"alarm_id": n, "ok": true}` or
        `{"alarm_id": n, "ok": false, "error": code, "message": why}`. One commit for all;
        if it fails, nothing changes and every planned ack answers `journal_unavailable`.
        Returns (results, the committed events as wire dicts)."""
        async with self._lock:
            now = self._clock()
            results: list[dict[str, Any]] = []
            planned: list[AlarmEvent] = []
            seen: set[int] = set()
            for occurrence in occurrence_ids:
                try:
                    if occurrence in seen:
                        raise AlarmRequestError("duplicate", f"{occurrence} is listed twice")
                    seen.add(occurrence)
                    planned += self.engine.acknowledge(occurrence, user, comment, now)
                except AlarmRequestError as err:
                    results.append(_refused(occurrence, err))
                    continue
                results.append({"alarm_id": occurrence, "ok": True})
            if not planned:
                return results, []
            try:
                wire = await self._commit_request(
                    planned, request_id, lambda _events: {"results": results}
                )
            except AlarmRequestError as err:
                failed = {e.occurrence_id for e in planned}
                results = [_refused(r["alarm_id"], err) if r["alarm_id"] in failed and r["ok"]
                           else r for r in results]  # fmt: skip
                return results, []
            return results, wire

    async def shelve(
        self,
        alarm: str,
        minutes: float,
        user: str,
        comment: str,
        *,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        async with self._lock:
            events = self.engine.shelve(
                alarm, minutes, user, comment, self._clock(), mono=self._mono()
            )
            return await self._commit_request(events, request_id)

    async def unshelve(
        self, alarm: str, user: str, comment: str = "", *, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        async with self._lock:
            events = self.engine.unshelve(alarm, user, comment, self._clock())
            return await self._commit_request(events, request_id)

    async def _commit_request(
        self,
        events: list[AlarmEvent],
        request_id: str | None = None,
        result: Callable[[list[AlarmEvent]], dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Commit an operator request's planned events, then apply them; nothing on failure.

        With `request_id` the ledger remembers the request in the same commit, with
        `result(events)` (default: the reply to a single command, {"events": [...]})."""
        if result is None:
            result = _events_result
        try:
            await self._write(self._append, events, request_id, result)
        except WriteFenced as err:
            raise AlarmRequestError(
                "not_active",
                "this server is not the active alarm node; nothing was changed",
            ) from err
        except Exception as err:
            log.error("alarm journal refused an operator action (%s); nothing changed", err)
            raise AlarmRequestError(
                "journal_unavailable",
                "the alarm journal could not record this action; nothing was changed",
            ) from err
        self.engine.apply(events)
        return self._committed_batch(events)

    def _committed_batch(self, events: list[AlarmEvent]) -> list[dict[str, Any]]:
        if not events:
            return []
        self._cursor = max(self._cursor, max(e.event_id or 0 for e in events))
        self._publish()
        for listener in self._listeners:
            try:
                listener(list(events))
            except Exception:
                log.exception("alarm commit listener %r failed", listener)
        return [e.to_wire() for e in events]

    def _publish(self) -> None:
        self._committed = self.engine.current()
        self._committed_wire = [e.to_wire() for e in self._committed]

    def current(self) -> list[dict[str, Any]]:
        """Wire dicts of every alarm not in state normal (shelved ones say "shelved"),
        as of the newest committed event (`cursor()`)."""
        return list(self._committed_wire)

    def epoch(self) -> str:
        """The journal's epoch: what a resume cursor is relative to (`snapshot.epoch`)."""
        return self.journal.epoch

    def cursor(self) -> int:
        """Journal id of the newest committed event (the snapshot's alarm_cursor)."""
        return self._cursor

    async def reconfigure(self, engine: AlarmEngine) -> None:
        """Swap in an engine built from a new config, its state rebuilt from the journal:
        alarms stay as they were, new limits apply from the next tick."""
        async with self._lock:
            await self._restore(engine)
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
        return await run_off(
            self.offload,
            reads.history_page,
            self.journal.path,
            since,
            until,
            line,
            alarm,
            limit,
            before,
        )

    async def history_body(
        self,
        *,
        since: float | None,
        until: float | None,
        line: str | None,
        alarm: str | None,
        limit: int,
        before: int | None,
    ) -> bytes:
        """`/api/alarms/history`'s body, read and encoded off the server process."""
        return await run_off(
            self.offload,
            reads.history_body,
            self.journal.path,
            since,
            until,
            line,
            alarm,
            limit,
            before,
        )

    async def kpi(self, hours: float = 720.0, *, end: float | None = None) -> dict[str, object]:
        """KPIs over the last `hours` (default 30 days), aggregated in SQL on a read
        connection off the event loop (the worker process): never the writer's lock."""
        return await run_off(self.offload, reads.kpi_figures, *self._kpi_args(hours, end))

    async def kpi_body(self, hours: float) -> bytes:
        """`/api/alarms/kpi`'s body: the figures encoded in the worker too."""
        return await run_off(self.offload, reads.kpi_body, *self._kpi_args(hours, None))

    def _kpi_args(self, hours: float, end: float | None) -> tuple[Any, ...]:
        end = self._clock() if end is None else end
        start = end - hours * 3600.0
        detector = self._new_detector(self.engine)
        current = list(self._committed)
        return self.journal.path, start, end, current, self.engine.kpi_info(), detector

    async def export_page(
        self, since: float, until: float, after_id: int, limit: int, fmt: str
    ) -> tuple[bytes, int, int]:
        """One export page read and encoded off the server process: (bytes, events, last id)."""
        return await run_off(
            self.offload, reads.export_page, self.journal.path, since, until, after_id, limit, fmt
        )

    async def prune(self) -> int:
        """Apply retention; call it now and then (e.g. hourly)."""
        return await self._write(self.journal.prune, self._clock())

    async def close(self) -> None:
        async with self._lock:
            await self._write(self.journal.close)
        self._writer.shutdown(wait=False)


def _flood_data(
    active: bool, count: int, started_at: float | None, ended_at: float | None
) -> dict[str, Any]:
    return {
        "active": active,
        "count": count,
        "started_at": iso_or_none(started_at),
        "ended_at": iso_or_none(ended_at),
    }


def _events_result(events: list[AlarmEvent]) -> dict[str, Any]:
    return {"events": [e.to_wire() for e in events]}


def _refused(occurrence: int, err: AlarmRequestError) -> dict[str, Any]:
    return {"alarm_id": occurrence, "ok": False, "error": err.code, "message": err.message}
