"""Login throttling and the password-hashing executor.

Failed logins are counted per client address AND in total: a guesser spread over many
addresses still meets the global budget (then every login waits, which is the price of not
letting a spray through). Password checks run in their own small executor with a bounded
queue, never in the pool the journal or the audit use, so a login flood costs at most
`password_hash_threads` cores and a short queue; beyond it logins get 429 at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from scada.core.clock import SYSTEM_CLOCK, Clock
from scada.core.config import AuthSettings
from scada.core.errors import Refused
from scada.core.ratelimit import FailureWindow

T = TypeVar("T")
EVERYONE = "*"


def too_many(message: str, wait: float) -> Refused:
    err = Refused("too_many_attempts", message, 429)
    err.retry_after = int(wait) + 1  # type: ignore[attr-defined]
    return err


class LoginGate:
    def __init__(self, settings: AuthSettings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        window = settings.login_window_seconds
        self.per_address = FailureWindow(settings.login_failures_per_address, window)
        self.everyone = FailureWindow(settings.login_failures_total, window)
        self.max_pending = settings.password_hash_queue
        self._pending = 0
        self._executor = ThreadPoolExecutor(
            max_workers=settings.password_hash_threads, thread_name_prefix="password-hash"
        )

    def admit(self, address: str) -> None:
        """Raise 429 if this address, or everyone together, failed too often; otherwise
        count the attempt as failed up front (parallel guesses cannot all slip through)."""
        now = self.clock.monotonic()
        wait = self.per_address.blocked_for(address, now)
        if wait > 0:
            raise too_many(f"too many failed logins; try again in {wait:.0f} s", wait)
        wait = self.everyone.blocked_for(EVERYONE, now)
        if wait > 0:
            raise too_many(
                f"too many failed logins on this server; try again in {wait:.0f} s", wait
            )
        self.per_address.fail(address, now)
        self.everyone.fail(EVERYONE, now)

    def succeeded(self, address: str) -> None:
        self.per_address.forgive_one(address)
        self.everyone.forgive_one(EVERYONE)

    async def hash(self, fn: Callable[..., T], *args: object) -> T:
        """Run a password check (or hash) in the password executor, or refuse at once."""
        if self._pending >= self.max_pending:
            raise too_many("the server is busy checking other logins; try again", 1.0)
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
