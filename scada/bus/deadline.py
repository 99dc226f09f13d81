"""A bus follower's own read deadline: stale after `deadline` s without a single entry, live
again with the next one. Plain: the caller passes `now` (monotonic) and acts on the answer
(drop the connection, tell its clients). TCP keepalive would notice a half-open connection
after minutes, if at all; the ingest node's 10 frames/s make silence mean no data.
"""

from __future__ import annotations

from typing import Literal

from scada.bus.events import Status


class ReadDeadline:
    def __init__(self, deadline: float, now: float, *, block: float | None = None) -> None:
        """`block`: how long one read may wait for news; it must end before the deadline,
        or a silent bus would only be noticed a read later."""
        if deadline <= 0:
            raise ValueError("the read deadline must be positive")
        if block is not None and not 0 <= block < deadline:
            raise ValueError("block must be shorter than read_deadline")
        self.deadline = deadline
        self.last_read = now
        self.state: Literal["live", "stale"] = "live"

    def silent_for(self, now: float) -> float:
        return now - self.last_read

    def read(self, now: float) -> Status | None:
        """Something was read at `now`: `Status("live")` if that ends a stale spell."""
        self.last_read = now
        if self.state == "live":
            return None
        self.state = "live"
        return Status("live", "reading again")

    def silent(self, now: float, reason: str) -> Status | None:
        """Nothing read this turn: `Status("stale")` once the deadline has passed (once per
        spell); None otherwise."""
        if self.state == "stale" or self.silent_for(now) < self.deadline:
            return None
        self.state = "stale"
        return Status("stale", reason)
