"""The one fixed-rate loop schedule: the broadcast tick, each device's poll loop and the
protocol simulators' updates all run on it.

Each deadline is the previous one plus the period, so the time the work takes never makes the
schedule drift; when the work overran its slot, the missed slots are skipped (the next slot is
now) instead of run back to back to catch up.
"""

from __future__ import annotations

import asyncio


class FixedRate:
    def __init__(self, period: float, *, phase: float = 0.0) -> None:
        """Slots every `period` seconds, the first `period + phase` from now (the work
        before the first `sleep()` runs at once)."""
        self.period = period
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + phase

    async def sleep(self) -> bool:
        """Sleep until the next slot. True when the work since the last slot overran it."""
        now = self._loop.time()
        self.deadline += self.period
        overran = self.deadline < now
        if overran:
            self.deadline = now
        await asyncio.sleep(self.deadline - now)
        return overran

    async def restart_after(self, delay: float) -> None:
        """Sleep `delay` (a backoff after a failure), then start a fresh grid from there."""
        self.deadline = self._loop.time() + delay
        await asyncio.sleep(delay)
