"""What a follower of the bus tells its consumer, in order: alarm entries, frames, a gap, a new
epoch, the bus going stale or live again. The same events from the Redis reader and the
in-memory bus, so the gateway's feed cannot tell which bus it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class AlarmEntries:
    """Contiguous alarm entries: [(event_id, payload)], oldest first."""

    entries: list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class Frames:
    """Frames read since the last batch, oldest first: [(entry id, payload)]."""

    frames: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Gap:
    """The stream no longer holds the events after `after`: it goes on at `first`."""

    after: int
    first: int


@dataclass(frozen=True, slots=True)
class EpochChanged:
    """The bus epoch is not the one the cursor belonged to (new=None: the bus has none yet)."""

    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class Status:
    """`stale`: nothing read for the read deadline (data on screen must be marked stale);
    `live`: reading again."""

    state: Literal["live", "stale"]
    reason: str


BusEvent = AlarmEntries | Frames | Gap | EpochChanged | Status
