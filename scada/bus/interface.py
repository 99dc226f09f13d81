"""The bus seam: one `Bus` interface, two implementations (Centrifuge's Broker/MemoryBroker).

`scada.bus.redisbus.RedisBus` runs on Redis Streams (a cluster: ingest nodes and gateways in
other processes); `scada.bus.membus.MemoryBus` keeps the same streams in this process (the
all-in-one server, and tests of the delivery without Redis). Both have the same semantics:

- alarm entries carry journal ids (entry id N = journal event id N), the epoch they were
  published in, and replace their alarm's field of the state hash; an id at or below the
  stream's last generated id is refused and counted as already published; the stream is
  trimmed to a bounded length, and a follower whose cursor fell off it sees a `Gap`;
- frames are a short stream (bounded) whose newest entry is what counts;
- a publish is fenced: only the lease holder (and, for alarms, only in the current epoch);
- a follower (`follow`) yields `scada.bus.events` in order: entries checked against its
  cursor and epoch (`scada.bus.cursor`), the bus going stale and live again on its own read
  deadline (`scada.bus.deadline`);
- commands go from gateways to the active ingest node, replies back to the sender's stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from scada.bus.commandstream import Apply, Command, Lookup, Reply
from scada.bus.events import BusEvent
from scada.bus.publish import Published


class BusUnavailable(Exception):
    """The bus could not be read or written this time (down, unreachable, refused): retry."""


@dataclass(frozen=True, slots=True)
class BusStart:
    """Where a follower starts: the epoch, the state hash (alarm → its newest event's
    payload) as of journal id `cursor`, and the newest alarm entries up to `cursor` of this
    epoch (oldest first; as many as asked for and still kept)."""

    epoch: str
    cursor: int
    state: dict[str, bytes]
    history: list[tuple[int, bytes]]


class BusFollower(Protocol):
    """A follower of the alarm stream (from a cursor) and the frame stream (from now on)."""

    def events(self) -> AsyncIterator[BusEvent]:
        """Everything the consumer must act on, in order, until cancelled."""
        ...

    async def close(self) -> None: ...


class CommandChannel(Protocol):
    """The gateway side of the commands: send one, read the replies addressed to it."""

    async def send(self, kind: str, body: dict[str, Any], request_id: str | None = None) -> str:
        """Append a command; returns its request id (send the same id again to retry).
        BusUnavailable if it could not be appended."""
        ...

    async def read_replies(self, block: float = 1.0) -> list[Reply]:
        """Replies that came since the last call, waiting up to `block` s for one;
        BusUnavailable if they cannot be read."""
        ...

    async def close(self) -> None: ...


class LeaseHolder(Protocol):
    """The active/standby lease of one node, with its fencing token (scada.bus.lease.Lease)."""

    @property
    def node(self) -> str: ...

    @property
    def token(self) -> int | None: ...

    def held(self) -> bool: ...

    def fence(self) -> str:
        """The lease value to present to every publish; LeaseLost if it may have expired."""
        ...

    async def try_acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...

    async def holder(self) -> tuple[int, str] | None: ...

    async def run(self, on_change: Callable[[bool], None] | None = None) -> None: ...


class CommandHandler(Protocol):
    """The active ingest side of the commands: read, apply once, reply, acknowledge."""

    applied: int
    duplicates: int

    async def ensure_group(self) -> None: ...

    async def fetch(self, count: int = 100, block: float = 1.0) -> list[Command]: ...

    async def handle(self, command: Command) -> Reply: ...

    async def run(self) -> None: ...


class Bus(Protocol):
    # -- the ingest side ----------------------------------------------------------------

    def lease(self, node: str, **options: Any) -> LeaseHolder:
        """The lease of `node` on this bus (options: ttl, renew_every, retry_every, safety,
        token_floor, clock; see scada.bus.lease)."""
        ...

    async def ensure_epoch(self, fence: str, journal_epoch: str) -> tuple[str, bool]:
        """The bus epoch for this journal, minted if the bus has none (or another journal's):
        (epoch, minted). Minting for another journal drops the alarm stream and state."""
        ...

    async def seed_state(
        self, fence: str, epoch: str, cursor: int, states: Sequence[tuple[str, bytes]]
    ) -> None:
        """Fill a new epoch's state hash: each alarm's newest event as of journal id `cursor`."""
        ...

    async def publish_alarms(
        self,
        fence: str,
        epoch: str,
        entries: Sequence[tuple[int, bytes, str]],
        *,
        maxlen: int = 0,
    ) -> Published:
        """Append (journal id, payload, state field: '' for none) entries, fenced and in
        `epoch`; trimmed to about `maxlen` entries (0: not trimmed)."""
        ...

    async def publish_frame(self, fence: str, payload: bytes, *, maxlen: int = 100) -> str | None:
        """Append one tick's frame; returns its entry id."""
        ...

    def command_handler(
        self, lease: LeaseHolder, *, apply: Apply, lookup: Lookup, **options: Any
    ) -> CommandHandler: ...

    # -- the gateway side ---------------------------------------------------------------

    async def read_epoch(self) -> str | None:
        """The current epoch, None if nobody has minted one on this bus yet."""
        ...

    async def start(self, *, history: int, timeout: float) -> BusStart | None:
        """Epoch, state hash and recent history read together; None when the bus has no epoch
        yet or cannot be read within `timeout` s."""
        ...

    def follow(
        self,
        *,
        cursor: int | None,
        epoch: str | None,
        read_deadline: float = 2.0,
        frames: bool = True,
    ) -> BusFollower:
        """Alarm entries after `cursor` (of `epoch`), and frames from the newest one on."""
        ...

    def commands(self, node: str) -> CommandChannel:
        """The command channel of gateway `node` (its replies come on its own stream)."""
        ...

    async def close(self) -> None: ...
