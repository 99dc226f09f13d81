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
