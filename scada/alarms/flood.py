"""Alarm flood episodes (EEMUA 191 / ISA-18.2): one detector for the live console and the KPIs.

An alarm counts when it is annunciated: raised, and neither shelved nor suppressed. A flood
episode starts when more than START_ABOVE alarms are annunciated within WINDOW seconds (at the
alarm that makes it START_ABOVE + 1) and ends when fewer than END_BELOW remain in the trailing
window (at the moment the oldest one leaves it: its time + WINDOW). `count` is every alarm
annunciated in the episode, the ones in the window that started it included.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final

WINDOW: Final = 600.0
START_ABOVE: Final = 10
END_BELOW: Final = 5
TOP_CONTRIBUTORS: Final = 5


@dataclass(slots=True)
class Episode:
    started_at: float
    ended_at: float | None = None
    count: int = 0
    contributors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, object]:
        top = sorted(self.contributors.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "count": self.count,
            "top": [{"alarm": a, "count": n} for a, n in top[:TOP_CONTRIBUTORS]],
        }


class FloodDetector:
    """Feed annunciated alarms in time order (`add`) and the passing of time (`advance`).

    Memory: the alarms of one trailing window, plus the open episode's per-alarm counts.
    """

    def __init__(
        self, window: float = WINDOW, start_above: int = START_ABOVE, end_below: int = END_BELOW
    ) -> None:
        self.window = window
        self.start_above = start_above
        self.end_below = end_below
        self._recent: deque[tuple[float, str]] = deque()
        self.episode: Episode | None = None  # the open episode

    @property
    def active(self) -> bool:
        return self.episode is not None

    def in_window(self) -> int:
        return len(self._recent)

    def add(self, at: float, alarm: str) -> Episode | None:
        """Count one annunciated alarm; returns an episode that ended before it, if any."""
        ended = self.advance(at)
        self._recent.append((at, alarm))
        if self.episode is not None:
            self.episode.count += 1
            self.episode.contributors[alarm] += 1
        elif len(self._recent) > self.start_above:
            self.episode = Episode(
                started_at=at,
                count=len(self._recent),
                contributors=Counter(name for _, name in self._recent),
            )
        return ended

    def advance(self, now: float) -> Episode | None:
        """Let alarms older than the window leave it; returns the episode this ended."""
        recent = self._recent
        ended: Episode | None = None
        while recent and recent[0][0] + self.window <= now:
            left, _ = recent.popleft()
            if self.episode is not None and len(recent) < self.end_below:
                ended, self.episode = self.episode, None
                ended.ended_at = left + self.window
        return ended
