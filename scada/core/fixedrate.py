"""The one fixed-rate loop schedule: the broadcast tick, each device's poll loop and the
protocol simulators' updates all run on it.

Each deadline is the previous one plus the period, so the time the work takes never makes the
schedule drift; when the work overran its slot, the missed slots are skipped (the next slot is
now) instead of run back to back to catch up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class FixedRate:
    def __init__(
        self,
        period: float,
        *,
        phase: float = 0.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Slots every `period` seconds, the first `period + phase` from now (the work
        before the first `sleep()` runs at once). `clock` (default: the running loop's
        time) and `sleep` are the time it keeps and how it waits (tests pass their own)."""
        self.period = period
        self._clock = clock or asyncio.get_running_loop().time
        self._sleep = sleep
        self.deadline = self._clock() + phase

    async def sleep(self) -> bool:
        """Sleep until the next slot. True when the work since the last slot overran it."""
        now = self._clock()
        self.deadline += self.period
        overran = self.deadline < now
        if overran:
            self.deadline = now
        await self._sleep(self.deadline - now)
        return overran

    async def restart_after(self, delay: float) -> None:
        """Sleep `delay` (a backoff after a failure), then start a fresh grid from there."""
        self.deadline = self._clock() + delay
        await self._sleep(delay)
