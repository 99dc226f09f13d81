"""The bus in this process: the `Bus` interface without Redis (Centrifuge's MemoryBroker).

The all-in-one server runs its plant and its hub on one `MemoryBus`, so its hub is fed by the
same feed a gateway runs on Redis; tests drive the gateway's delivery with it. The semantics
are Redis's (see scada.bus.interface): alarm entry ids are journal ids and an id at or below
the last generated one is counted as already published; every alarm entry carries its epoch
and updates the state hash; the streams are trimmed to about `maxlen` (a follower whose
cursor fell off sees a `Gap`); every publish is fenced by the lease; followers check their
cursor and epoch with the same `CursorCheck` and keep the same `ReadDeadline` as the Redis
reader. Whatever a publish changes wakes the followers at once.

`plain_epoch=True`: the epoch is the journal's own id, not `<journal epoch>/<bus id>`. For a
bus that lives exactly as long as the one process that writes the journal (the all-in-one
server): a restart keeps the journal, so a client's cursor is still good in the same epoch.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from scada.bus.commandstream import Apply, Command, Lookup, Reply
from scada.bus.conn import raise_if_cancelled
from scada.bus.cursor import CursorCheck
from scada.bus.deadline import ReadDeadline
from scada.bus.events import BusEvent, Frames, Gap
from scada.bus.interface import BusStart, LeaseHolder
from scada.bus.keys import entry_id
from scada.bus.lease import LeaseLost, token_of
from scada.bus.publish import EpochChanged, Fenced, Published

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(slots=True)
class _Alarm:
    id: int
    payload: bytes
    epoch: str


class MemoryBus:
    def __init__(self, *, plain_epoch: bool = False, clock: Clock = time.monotonic) -> None:
        self.plain_epoch = plain_epoch
        self.clock = clock
        self.epoch: str | None = None
        self.alarms: list[_Alarm] = []  # ascending ids
        self.alarms_top = 0  # the last generated id (trimming never lowers it)
        self.state: dict[str, bytes] = {}
        self.state_cursor = 0
        # (n, payload, the last alarm id published before it): a follower interleaves the two
        # streams in publish order (a tick's alarm events before its frame).
        self.frames: deque[tuple[int, bytes, int]] = deque()
        self.frames_top = 0
        self.lease_value: str | None = None
        self.lease_expires = 0.0
        self.fence_counter = 0
        self.commands_log: list[tuple[int, dict[str, Any]]] = []
        self.command_seq = 0
        self.replies: dict[str, list[tuple[int, bytes]]] = {}
        self.reply_seq = 0
        self._changed = asyncio.Event()

    # -- news ---------------------------------------------------------------------------

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until something is published or `timeout` s pass; True if woken."""
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel
                await changed.wait()
        except TimeoutError:
            return False
        return True

    def flush(self) -> None:
        """Lose everything, as a Redis restart without persistence does (tests)."""
        self.epoch, self.alarms, self.alarms_top = None, [], 0
        self.state, self.state_cursor = {}, 0
        self.frames.clear()
        self.lease_value = None
        self._wake()

    # -- the lease ------------------------------------------------------------------------

    def lease(self, node: str, **options: Any) -> MemoryLease:
        return MemoryLease(self, node, **options)

    def lease_holder(self) -> str | None:
        if self.lease_value is not None and self.clock() >= self.lease_expires:
            self.lease_value = None  # expired, as a key with a TTL
        return self.lease_value

    def _fenced(self, fence: str) -> None:
        if self.lease_holder() != fence:
            raise Fenced(f"FENCED lease not held by {fence}")

    # -- the ingest side ----------------------------------------------------------------

    async def ensure_epoch(self, fence: str, journal_epoch: str) -> tuple[str, bool]:
        if not journal_epoch or "/" in journal_epoch:
            raise ValueError(f"bad journal epoch {journal_epoch!r}")
        self._fenced(fence)
        current = self.epoch
        if current is not None and (
            current == journal_epoch or current.startswith(journal_epoch + "/")
        ):
            return current, False
        self.alarms, self.alarms_top, self.state, self.state_cursor = [], 0, {}, 0
        self.epoch = (
            journal_epoch if self.plain_epoch else f"{journal_epoch}/{secrets.token_hex(8)}"
        )
        self._wake()
        return self.epoch, True

    async def seed_state(
        self, fence: str, epoch: str, cursor: int, states: Sequence[tuple[str, bytes]]
    ) -> None:
        self._fenced(fence)
        if self.epoch != epoch:
            raise EpochChanged(f"EPOCH the bus epoch is no longer {epoch}")
        self.state = dict(states)
        self.state_cursor = cursor

    async def publish_alarms(
        self,
        fence: str,
        epoch: str,
        entries: Sequence[tuple[int, bytes, str]],
        *,
        maxlen: int = 0,
    ) -> Published:
        return self.publish_alarms_now(fence, epoch, entries, maxlen=maxlen)

    def publish_alarms_now(
        self,
        fence: str,
        epoch: str,
        entries: Sequence[tuple[int, bytes, str]],
        *,
        maxlen: int = 0,
    ) -> Published:
        """`publish_alarms` without a wait: for a caller on the event loop that must not
        yield between its commit and the publish (the all-in-one server's commit listener)."""
        self._fenced(fence)
        if self.epoch != epoch:
            raise EpochChanged(f"EPOCH the bus epoch is no longer {epoch}")
        added = skipped = 0
        last: int | None = None
        for ev_id, payload, field in entries:
            if ev_id <= self.alarms_top:
                skipped += 1
                continue
            self.alarms.append(_Alarm(ev_id, payload, epoch))
            self.alarms_top = last = ev_id
            added += 1
            if field:
                self.state[field] = payload
                self.state_cursor = ev_id
        if maxlen and len(self.alarms) > maxlen + max(1, maxlen // 10):
            del self.alarms[: len(self.alarms) - maxlen]  # about maxlen, as MAXLEN ~
        if added:
            self._wake()
        return Published(added, skipped, entry_id(last) if last is not None else None)

    async def publish_frame(self, fence: str, payload: bytes, *, maxlen: int = 100) -> str | None:
        return self.publish_frame_now(fence, payload, maxlen=maxlen)

    def publish_frame_now(self, fence: str, payload: bytes, *, maxlen: int = 100) -> str:
        self._fenced(fence)
        self.frames_top += 1
        self.frames.append((self.frames_top, payload, self.alarms_top))
        while len(self.frames) > max(1, maxlen):
            self.frames.popleft()
        self._wake()
        return f"{self.frames_top}-0"

    def command_handler(
        self, lease: LeaseHolder, *, apply: Apply, lookup: Lookup, **options: Any
    ) -> MemoryCommandHandler:
        return MemoryCommandHandler(self, lease, apply=apply, lookup=lookup, **options)

    # -- the gateway side ---------------------------------------------------------------

    async def read_epoch(self) -> str | None:
        return self.epoch

    async def start(self, *, history: int, timeout: float) -> BusStart | None:
        if self.epoch is None:
            return None
        cursor = self.state_cursor
        upto = bisect.bisect_right(self.alarms, cursor, key=lambda a: a.id)
        kept = self.alarms[max(0, upto - history) : upto] if history else []
        entries = [(a.id, a.payload) for a in kept if a.epoch == self.epoch]
        return BusStart(self.epoch, cursor, dict(self.state), entries)

    def alarms_after(self, cursor: int, count: int) -> list[_Alarm]:
        """Up to `count` entries after `cursor`: from the first kept one if the cursor fell
        off the trimmed stream (as XREAD does; the follower's check sees the gap)."""
        start = bisect.bisect_right(self.alarms, cursor, key=lambda a: a.id)
        return self.alarms[start : start + count]

    def frames_after(self, cursor: int) -> list[tuple[int, bytes, int]]:
        out: list[tuple[int, bytes, int]] = []
        for frame in reversed(self.frames):
            if frame[0] <= cursor:
                break
            out.append(frame)
        out.reverse()
        return out

    def follow(
        self,
        *,
        cursor: int | None,
        epoch: str | None,
        read_deadline: float = 2.0,
        frames: bool = True,
        block: float = 0.5,
    ) -> MemoryFollower:
        return MemoryFollower(
            self, cursor=cursor, epoch=epoch, read_deadline=read_deadline, frames=frames,
            block=block,
        )  # fmt: skip

    def commands(self, node: str) -> MemoryCommands:
        return MemoryCommands(self, node)

    async def close(self) -> None:
        return None

    # -- the command streams -----------------------------------------------------------

    def append_command(self, fields: dict[str, Any], maxlen: int) -> None:
        self.command_seq += 1
        self.commands_log.append((self.command_seq, fields))
        if len(self.commands_log) > maxlen:
            del self.commands_log[: len(self.commands_log) - maxlen]
        self._wake()

    def append_reply(self, fence: str, node: str, payload: bytes, maxlen: int) -> None:
        self._fenced(fence)
        self.reply_seq += 1
        stream = self.replies.setdefault(node, [])
        stream.append((self.reply_seq, payload))
        if len(stream) > maxlen:
            del stream[: len(stream) - maxlen]
        self._wake()


class MemoryFollower:
    """The Redis reader's behaviour on a MemoryBus (scada.bus.reader.BusReader)."""

    def __init__(
        self,
        bus: MemoryBus,
        *,
        cursor: int | None,
        epoch: str | None,
        read_deadline: float,
        frames: bool,
        block: float = 0.5,
        batch: int = 1000,
    ) -> None:
        self.bus = bus
        self.check = CursorCheck(cursor, epoch)
        self.deadline = ReadDeadline(read_deadline, bus.clock(), block=block)
        self.with_frames = frames
        self.block = block
        self.batch = batch
        self.connected = False
        self._frame_cursor = 0  # 0: before the newest frame is delivered at connect

    async def close(self) -> None:
        self.connected = False

    async def events(self) -> AsyncIterator[BusEvent]:
        while True:
            raise_if_cancelled()
            if not self.connected:
                for event in self._connect():
                    yield event
                if not self.connected:
                    for event in self._silent("no epoch"):
                        yield event
                    await self.bus.wait(self.block)
                    continue
            batch = self._read()
            if batch is None:
                await self.bus.wait(self.block)
                batch = self._read()
            if batch is None:
                for event in self._silent("no entries"):
                    yield event
                continue
            for event in batch:
                yield event

    def _connect(self) -> list[BusEvent]:
        bus = self.bus
        changed = self.check.connected(bus.epoch)
        if bus.epoch is None:
            return [changed] if changed is not None else []
        self.connected = True
        out: list[BusEvent] = [changed] if changed is not None else []
        if self.with_frames and bus.frames:
            n, payload, _ = bus.frames[-1]
            out += self._live()
            if n != self._frame_cursor:
                self._frame_cursor = n
                out.append(Frames([(f"{n}-0", payload)]))
        return out

    def _read(self) -> list[BusEvent] | None:
        """What is new, as events; None when nothing is."""
        bus = self.bus
        alarms = bus.alarms_after(self.check.read_from, self.batch)
        frames = bus.frames_after(self._frame_cursor) if self.with_frames else []
        if not alarms and not frames:
            return None
        out = self._live()
        changed = self.check.entry_epoch(alarms[0].epoch if alarms else None)
        if changed is not None:
            self.connected = False  # re-read the epoch, as the Redis reader reconnects
            return [*out, changed]
        if frames:
            self._frame_cursor = frames[-1][0]
        # In publish order: the alarm entries published before a frame come before it.
        taken = 0
        run: list[tuple[str, bytes]] = []
        for n, payload, before in frames:
            upto = taken
            while upto < len(alarms) and alarms[upto].id <= before:
                upto += 1
            if upto > taken:
                if run:
                    out.append(Frames(run))
                    run = []
                out += self._alarm_events(alarms[taken:upto])
                taken = upto
            run.append((f"{n}-0", payload))
        if run:
            out.append(Frames(run))
        out += self._alarm_events(alarms[taken:])
        return out

    def _alarm_events(self, alarms: list[_Alarm]) -> list[BusEvent]:
        out: list[BusEvent] = []
        for event in self.check.entries([(a.id, a.payload) for a in alarms]):
            if isinstance(event, Gap):
                log.warning("alarm stream gap: after %d comes %d", event.after, event.first)
            out.append(event)
        return out

    def _live(self) -> list[BusEvent]:
        status = self.deadline.read(self.bus.clock())
        return [status] if status is not None else []

    def _silent(self, reason: str) -> list[BusEvent]:
        status = self.deadline.silent(self.bus.clock(), reason)
        if status is None:
            return []
        self.connected = False  # as the Redis reader drops its connection
        return [status]


class MemoryCommands:
    """A gateway's command channel on a MemoryBus."""

    def __init__(self, bus: MemoryBus, node: str, *, maxlen: int = 10_000) -> None:
        self.bus = bus
        self.node = node
        self.maxlen = maxlen
        self._reply_cursor: int | None = None

    def _start(self) -> None:
        if self._reply_cursor is None:
            stream = self.bus.replies.get(self.node, [])
            self._reply_cursor = stream[-1][0] if stream else 0

    async def send(self, kind: str, body: dict[str, Any], request_id: str | None = None) -> str:
        self._start()
        request_id = request_id or uuid.uuid4().hex
        fields = {"r": request_id, "k": kind, "b": orjson.dumps(body), "g": self.node}
        self.bus.append_command(fields, self.maxlen)
        return request_id

    async def read_replies(self, block: float = 1.0) -> list[Reply]:
        self._start()
        replies = self._new_replies()
        if not replies and await self.bus.wait(block):
            replies = self._new_replies()
        return replies

    def _new_replies(self) -> list[Reply]:
        cursor = self._reply_cursor or 0
        out = []
        for n, payload in self.bus.replies.get(self.node, []):
            if n > cursor:
                self._reply_cursor = n
                data = orjson.loads(payload)
                out.append(Reply(data["request_id"], data["result"], data["duplicate"]))
        return out

    async def close(self) -> None:
        return None


class MemoryCommandHandler:
    """The active node's side of the commands on a MemoryBus: a consumer group of one stream
    (delivered entries stay pending until acknowledged; one left pending `claim_idle` s is
    delivered again), the ledger lookup making a second delivery the stored answer."""

    def __init__(
        self,
        bus: MemoryBus,
        lease: LeaseHolder,
        *,
        apply: Apply,
        lookup: Lookup,
        claim_idle: float = 5.0,
        reply_maxlen: int = 1_000,
    ) -> None:
        self.bus = bus
        self.lease = lease
        self.apply = apply
        self.lookup = lookup
        self.claim_idle = claim_idle
        self.reply_maxlen = reply_maxlen
        self.applied = 0
        self.duplicates = 0
        self._delivered = 0  # the group's last delivered entry
        self._pending: dict[int, float] = {}  # entry → when delivered (bus clock)

    async def ensure_group(self) -> None:
        return None

    def _take(self, count: int) -> list[Command]:
        now = self.bus.clock()
        entries = dict(self.bus.commands_log)
        for gone in [n for n in self._pending if n not in entries]:
            del self._pending[gone]  # trimmed meanwhile
        claimed = [n for n, at in self._pending.items() if now - at >= self.claim_idle][:count]
        if not claimed:
            claimed = [n for n in entries if n > self._delivered][:count]
            if claimed:
                self._delivered = claimed[-1]
        for n in claimed:
            self._pending[n] = now
        return [_command(n, entries[n]) for n in claimed]

    async def fetch(self, count: int = 100, block: float = 1.0) -> list[Command]:
        commands = self._take(count)
        if not commands and await self.bus.wait(block):
            commands = self._take(count)
        return commands

    async def handle(self, command: Command) -> Reply:
        fence = self.lease.fence()
        stored = await asyncio.to_thread(self.lookup, command.request_id)
        if stored is None:
            self.lease.fence()  # the journal write below must not outlive the lease
            result, duplicate = await self.apply(command), False
            self.applied += 1
        else:
            result, duplicate = stored, True
            self.duplicates += 1
        reply = Reply(command.request_id, result, duplicate)
        payload = orjson.dumps(
            {"request_id": reply.request_id, "result": result, "duplicate": duplicate}
        )
        self.bus.append_reply(fence, command.reply_to, payload, self.reply_maxlen)
        self._pending.pop(int(command.entry.partition("-")[0]), None)
        return reply

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            if not self.lease.held():
                await self.bus.wait(0.2)
                continue
            for command in await self.fetch():
                await self.handle(command)


def _command(n: int, fields: dict[str, Any]) -> Command:
    return Command(
        request_id=fields["r"],
        kind=fields["k"],
        body=dict(orjson.loads(fields["b"])),
        reply_to=fields["g"],
        entry=f"{n}-0",
    )


class MemoryLease:
    """scada.bus.lease.Lease on a MemoryBus: one key with a TTL, tokens that only go up, a
    local validity that counts from when a renewal was sent, minus a safety margin."""

    def __init__(
        self,
        bus: MemoryBus,
        node: str,
        *,
        ttl: float = 3.0,
        renew_every: float = 1.0,
        retry_every: float = 0.5,
        safety: float = 0.5,
        token_floor: int = 0,
    ) -> None:
        if ":" in node:
            raise ValueError("a node name cannot contain ':'")
        if not 0 < renew_every < ttl - safety:
            raise ValueError("renew_every must be shorter than ttl - safety")
        self.bus = bus
        self._node = node
        self.ttl = ttl
        self.renew_every = renew_every
        self.retry_every = retry_every
        self.safety = safety
        self.token_floor = token_floor
        self._value: str | None = None
        self._valid_until = 0.0

    @property
    def node(self) -> str:
        return self._node

    @property
    def token(self) -> int | None:
        return token_of(self._value) if self._value is not None else None

    def held(self) -> bool:
        return self._value is not None and self.bus.clock() < self._valid_until

    def fence(self) -> str:
        if self._value is None or self.bus.clock() >= self._valid_until:
            raise LeaseLost(f"{self.node} does not hold the lease")
        return self._value

    async def try_acquire(self) -> bool:
        bus, sent = self.bus, self.bus.clock()
        if bus.lease_holder() is not None:
            return False
        bus.fence_counter = max(bus.fence_counter + 1, self.token_floor + 1)
        self._value = f"{bus.fence_counter}:{self.node}"
        bus.lease_value, bus.lease_expires = self._value, sent + self.ttl
        self._valid_until = sent + self.ttl - self.safety
        self.token_floor = bus.fence_counter
        log.info("lease acquired by %s, fencing token %d", self.node, self.token)
        return True

    async def renew(self) -> bool:
        if self._value is None:
            return False
        bus, sent = self.bus, self.bus.clock()
        if bus.lease_holder() == self._value:
            bus.lease_expires = sent + self.ttl
            self._valid_until = sent + self.ttl - self.safety
            return True
        log.warning("lease lost by %s (token %d): taken over or expired", self.node, self.token)
        self._value = None
        return False

    async def release(self) -> None:
        value, self._value = self._value, None
        if value is not None and self.bus.lease_holder() == value:
            self.bus.lease_value = None

    async def holder(self) -> tuple[int, str] | None:
        value = self.bus.lease_holder()
        if value is None:
            return None
        token, _, node = value.partition(":")
        return int(token), node

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None:
        was_held = False
        while True:
            raise_if_cancelled()
            if self._value is not None:
                await self.renew()
            else:
                await self.try_acquire()
            if self._value is not None and not self.held():
                self._value = None
            now_held = self.held()
            if now_held != was_held and on_change is not None:
                on_change(now_held)
            was_held = now_held
            await asyncio.sleep(self.renew_every if now_held else self.retry_every)
