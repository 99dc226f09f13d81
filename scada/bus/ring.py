"""A gateway's recent alarm history: what a reconnecting client's resume is served from.

The ring holds the newest alarm entries of one epoch as one contiguous run of ids. A client
that resumes with (epoch, cursor) gets exactly the entries after its cursor when the ring
holds them all, and None (→ `recovered: false` and a fresh snapshot) when the epoch differs
or the run no longer reaches back to cursor + 1. A client whose cursor is ahead of this
gateway (it came from a gateway that had read further) waits until the ring catches up
(`reach`), rather than being told it missed something.

A gap reported by the bus reader breaks the run: the ring starts again after it, so no cursor
from before the gap is ever served across it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import pairwise


class AlarmRing:
    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.epoch: str | None = None
        self._entries: deque[tuple[int, bytes]] = deque(maxlen=size)
        self._newest: int | None = None  # newest id of the run; None: any first entry starts one
        self._changed = asyncio.Event()

    @property
    def newest(self) -> int:
        """The cursor a snapshot taken now stands for (0: nothing read yet)."""
        return self._newest or 0

    @property
    def oldest(self) -> int | None:
        return self._entries[0][0] if self._entries else None

    def reset(self, epoch: str | None, newest: int | None = None) -> None:
        """Forget everything: a new epoch (newest None: the stream's first entry starts the
        run), or a run broken by a gap (newest = the id before the first entry after it)."""
        self.epoch = epoch
        self._entries.clear()
        self._newest = newest
        self._wake()

    def add(self, entries: list[tuple[int, bytes]]) -> None:
        """Append contiguous entries (the reader checked them); anything else is a bug."""
        for ev_id, payload in entries:
            if self._newest is not None and ev_id != self._newest + 1:
                raise ValueError(f"alarm ring: {ev_id} does not follow {self._newest}")
            self._entries.append((ev_id, payload))
            self._newest = ev_id
        self._wake()

    def since(self, epoch: str | None, cursor: int) -> list[tuple[int, bytes]] | None:
        """Entries after `cursor`, or None when they cannot all be served.

        `epoch` None: a single-node client that sends no epoch; its cursor is taken to be of
        the current epoch (as the all-in-one server does with its one journal).
        """
        if epoch is not None and epoch != self.epoch:
            return None
        if cursor == self.newest:
            return []
        oldest = self.oldest
        if cursor > self.newest or oldest is None or cursor < oldest - 1:
            return None
        return [(i, p) for i, p in self._entries if i > cursor]

    async def reach(self, cursor: int, timeout: float) -> bool:
        """Wait until the ring has read up to `cursor`; False at the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.newest < cursor:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self.newest >= cursor
        return True

    def _wake(self) -> None:
        self._changed.set()


def contiguous(entries: list[tuple[int, bytes]]) -> bool:
    """Whether the entries' ids follow each other without a hole."""
    return all(b[0] == a[0] + 1 for a, b in pairwise(entries))
