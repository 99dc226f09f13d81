"""Events a node recorded but the cluster's record does not hold reach it late.

A node keeps such events in its journal's `pending_events` (scada.alarms.journal): a tick's
batch the bus did not accept in time (the node was cut off from Redis, or Redis lost its data
under it), or a tail its journal held above a record that lost its data and went on under
those ids. Whatever its role, once it reaches Redis the node's `LateForwarder` appends each
pending event to the `<p>:late` stream, and drops it once the record holds it (its own journal
has the event: mirrored as a standby, journaled itself as the active node). The active node's
`LateIntake` journals every entry of `<p>:late` that its record does not hold yet as a *late*
copy (`late: true`, its original time, node and occurrence kept) under the next id, through the
journal's gate like any event (so on the alarm stream, to every gateway and the standby), and
then deletes the entry. Both sides compare by content (alarm, kind, time, occurrence), so a
retry, a second forwarder or a takeover in between journals an event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scada.alarms.journal import NotAccepted
from scada.bus.conn import raise_if_cancelled
from scada.bus.keys import BusKeys
from scada.bus.publish import PAYLOAD
from scada.roles.ingest.alarmoutbox import decode_event
from scada.roles.ingest.mirror import MirroredJournal

log = logging.getLogger(__name__)

NODE = b"n"  # the node that forwarded the entry


def late_key(keys: BusKeys) -> str:
    """The stream pending events are forwarded through to the active node."""
    return f"{keys.prefix}:late"


class LateForwarder:
    """Any node: pending events → `<p>:late` until the record holds them."""

    def __init__(
        self, redis: Redis, keys: BusKeys, node: str, journal: MirroredJournal, every: float = 1.0
    ) -> None:
        self.redis = redis
        self.key = late_key(keys)
        self.node = node
        self.journal = journal
        self.every = every
        self.forwarded = 0  # entries appended to <p>:late (a retry counts again)
        self.settled = 0  # pending events dropped because the record holds them
        self.pending = 0  # events pending at the last look
        self._poke = asyncio.Event()

    def poke(self) -> None:
        self._poke.set()

    async def run(self) -> None:
        failing = False
        while True:
            raise_if_cancelled()
            try:
                await self.forward_once()
                if failing:
                    log.info("late events: Redis reachable again")
                failing = False
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("late events: cannot forward: %r", err)
                failing = True
            except Exception:  # a bug must not end forwarding for good: logged, retried
                log.exception("late events: forwarding failed")
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.every)

    async def forward_once(self) -> int:
        """Drop what the record holds, forward the rest; returns how many are still pending."""
        pending = await asyncio.to_thread(self.journal.pending)
        self.pending = len(pending)
        if not pending:
            return 0
        held = await asyncio.to_thread(
            lambda: [pid for pid, ev in pending if self.journal.contains(ev)]
        )
        if held:
            await asyncio.to_thread(self.journal.drop_pending, held)
            self.settled += len(held)
            log.info("late events: %d now in the cluster's record", len(held))
        gone = set(held)
        rest = [(pid, ev) for pid, ev in pending if pid not in gone]
        self.pending = len(rest)
        if not rest:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for _, ev in rest:
            record = ev.to_record()
            record["event_id"] = None
            pipe.xadd(self.key, {PAYLOAD: orjson.dumps(record), NODE: self.node})
        await pipe.execute()
        if self.forwarded == 0 or len(rest) != len(pending):
            log.warning(
                "late events: %d recorded by %s while it could not publish, forwarded to the "
                "active node",
                len(rest),
                self.node,
            )
        self.forwarded += len(rest)
        return len(rest)


class LateIntake:
    """The active node: `<p>:late` → its journal (late copies), then delete the entries."""

    def __init__(
        self,
        redis: Redis,
        keys: BusKeys,
        journal: MirroredJournal,
        committed: Callable[[], None] = lambda: None,
        every: float = 0.5,
    ) -> None:
        """`committed()`: after each journal write (the outbox's poke)."""
        self.redis = redis
        self.key = late_key(keys)
        self.journal = journal
        self.committed = committed
        self.every = every
        self.journaled = 0  # late events this node added to the record
        self.duplicates = 0  # entries the record already held

    async def run(self) -> None:
        failing = False
        while True:
            raise_if_cancelled()
            try:
                await self.take_once()
                failing = False
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("late events: cannot read %s: %r", self.key, err)
                failing = True
            except NotAccepted as err:
                log.warning("late events: not journaled now: %s", err)
            except Exception:  # a bug must not end the intake for good: logged, retried
                log.exception("late events: journaling failed")
            await asyncio.sleep(self.every)

    async def take_once(self, batch: int = 200) -> int:
        """Journal what `<p>:late` holds and the record lacks; returns how many."""
        entries: Any = await self.redis.xrange(self.key, count=batch)
        if not entries:
            return 0
        added = 0
        for entry, fields in entries:
            ev = decode_event(fields[PAYLOAD])
            if await asyncio.to_thread(self.journal.contains, ev):
                self.duplicates += 1
            else:
                copy = dataclasses.replace(ev, event_id=None, late=True)
                await asyncio.to_thread(self.journal.append, [copy])
                self.committed()
                added += 1
                self.journaled += 1
            await self.redis.xdel(self.key, entry)
        if added:
            log.warning("late events: %d journaled late (original time, node, occurrence)", added)
        return added
