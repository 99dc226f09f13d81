"""The flat tag index: every (line, tag) pair gets one position in the store's numpy arrays.

Each line's tags are contiguous, so a line is a slice; vectorised code (staleness, alarms,
history) works on whole arrays and per-line code works on slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from scada.core.config import LineConfig, TagConfig


class Quality(IntEnum):
    """Ordered by how bad: a line's quality is the worst of its tags'."""

    GOOD = 0
    UNCERTAIN = 1
    STALE = 2
    BAD = 3

    @property
    def label(self) -> str:
        return self.name.lower()


QUALITY_LABELS = tuple(q.label for q in Quality)


@dataclass(frozen=True, slots=True)
class TagRef:
    index: int
    line_id: str
    name: str
    config: TagConfig

    @property
    def path(self) -> str:
        return f"line{self.line_id}.{self.name}"


class TagSchema:
    """Positions of all tags of all lines, built once from the config."""

    def __init__(self, lines: list[LineConfig]) -> None:
        self.lines = list(lines)
        self.line_ids: list[str] = [line.id for line in lines]
        self.refs: list[TagRef] = []
        self.line_slices: dict[str, slice] = {}
        self._index: dict[tuple[str, str], int] = {}
        for line in lines:
            start = len(self.refs)
            for name, tag in line.tags.items():
                ref = TagRef(len(self.refs), line.id, name, tag)
                self._index[(line.id, name)] = ref.index
                self.refs.append(ref)
            self.line_slices[line.id] = slice(start, len(self.refs))
        self.size = len(self.refs)
        # Position of each tag's line, for per-line reductions.
        self.line_of = np.empty(self.size, dtype=np.int32)
        for pos, line_id in enumerate(self.line_ids):
            self.line_of[self.line_slices[line_id]] = pos
        self.line_starts = np.array(
            [self.line_slices[lid].start for lid in self.line_ids], dtype=np.intp
        )
        self.stale_after = np.array(
            [line.stale_after for line in lines for _ in line.tags], dtype=np.float64
        )

    def index(self, line_id: str, tag: str) -> int:
        return self._index[(line_id, tag)]

    def has(self, line_id: str, tag: str) -> bool:
        return (line_id, tag) in self._index

    def line_indices(self, line_ids: list[str]) -> np.ndarray:
        """All tag positions of the given lines, in schema order."""
        parts = [np.arange(s.start, s.stop) for s in (self.line_slices[lid] for lid in line_ids)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.intp)
