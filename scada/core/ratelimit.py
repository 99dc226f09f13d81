"""Token bucket for client messages: refuse over the rate, report abuse well past it."""

from __future__ import annotations


class TokenBucket:
    OK = 0
    REFUSE = 1  # over the rate: answer with an error frame, change nothing
    ABUSE = 2  # kept going after being refused for a whole burst: close the connection

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.refused = 0
        self.last: float | None = None

    def take(self, now: float) -> int:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            if self.tokens >= self.burst - 1:
                self.refused = 0  # back to a full bucket: forgiven
            return self.OK
        self.refused += 1
        return self.ABUSE if self.refused > self.burst else self.REFUSE


class FailureWindow:
    """Counts failures per key (a client address) in a sliding window; for login throttling,
    so a password guesser gets 429 even where no proxy limits /api/login."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return 0.0
        return self.window - (now - times[-self.limit])

    def fail(self, key: str, now: float) -> None:
        if len(self._failures) >= self.max_keys and key not in self._failures:
            self._failures.pop(next(iter(self._failures)))  # bounded memory under a spray
        self._failures.setdefault(key, []).append(now)

    def forgive_one(self, key: str) -> None:
        """A successful attempt takes back its own mark only: a guesser who also owns an
        account cannot reset the count by logging in between guesses."""
        times = self._failures.get(key)
        if times:
            times.pop()
