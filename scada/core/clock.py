"""The clocks the service reads, behind one injectable object.

Deadlines, re-checks, throttles and rate limits run on `monotonic()`, which never steps; wall
time (`wall()`) only stamps events and records shown to people. Tests pass their own clock, or
shift the wall clock of a whole server process (tests/clockshift.py), to prove that a step of
the machine's clock moves no deadline.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()


def wall_to_monotonic(clock: Clock, epoch: float) -> float:
    """A wall-clock instant (e.g. a session's expiry) as a monotonic deadline, fixed now:
    a later step of the wall clock does not move it."""
    return clock.monotonic() + (epoch - clock.wall())
