"""The cursor check of a bus follower: which alarm entries follow the cursor, where the stream
has a gap, and when the epoch the cursor counts in is gone. Plain: inputs in, decisions out
(no I/O, no clock), so every case is a unit test without Redis.

Reading from a cursor older than a trimmed stream silently starts at the first kept entry, so
every entry is checked: the first must be cursor + 1, each next one its predecessor + 1,
otherwise a `Gap` comes before the entries. A different epoch (the bus lost its data, or a new
journal) yields `EpochChanged`, and the cursor starts again from the beginning of the new
epoch's stream.
"""

from __future__ import annotations

from scada.bus.events import AlarmEntries, EpochChanged, Gap


class CursorCheck:
    def __init__(self, cursor: int | None = None, epoch: str | None = None) -> None:
        """`cursor`: the last alarm event id already had (None: from the start of the stream);
        `epoch`: the epoch that cursor belongs to (None: take the current one as it is)."""
        self.cursor = cursor
        self.epoch = epoch
        self._epoch_lost = False  # the bus had no epoch at the last connect

    @property
    def read_from(self) -> int:
        """The id to read after (0: the stream's start)."""
        return self.cursor or 0

    def connected(self, epoch: str | None) -> EpochChanged | None:
        """The bus's epoch as read at a (re)connect. None from the bus means it lost its data
        and nobody has published since: nothing read there can be trusted (the caller drops
        the connection and tries again); the cursor is forgotten, once."""
        if epoch is None:
            if self.epoch is None:
                return None
            lost = EpochChanged(self.epoch, None)
            self.epoch, self.cursor, self._epoch_lost = None, None, True
            return lost
        changed = None
        if (self.epoch is not None and epoch != self.epoch) or self._epoch_lost:
            changed = EpochChanged(self.epoch, epoch)
            self.cursor = None
        self.epoch, self._epoch_lost = epoch, False
        return changed

    def entry_epoch(self, seen: str | None) -> EpochChanged | None:
        """The epoch an entry read carries: another one means the batch belongs to another
        history (drop it, reconnect, read from that epoch's start)."""
        if seen is None or seen == self.epoch:
            return None
        changed = EpochChanged(self.epoch, seen)
        self.epoch, self.cursor = seen, None
        return changed

    def entries(self, read: list[tuple[int, bytes]]) -> list[AlarmEntries | Gap]:
        """Alarm entries read after the cursor, in runs without a hole, each hole a `Gap`
        before the run after it; the cursor moves to the last one."""
        out: list[AlarmEntries | Gap] = []
        run: list[tuple[int, bytes]] = []
        expected = None if self.cursor is None else self.cursor + 1
        for ev_id, payload in read:
            if expected is not None and ev_id != expected:
                if run:
                    out.append(AlarmEntries(run))
                    run = []
                out.append(Gap(expected - 1, ev_id))
            run.append((ev_id, payload))
            expected = ev_id + 1
            self.cursor = ev_id
        if run:
            out.append(AlarmEntries(run))
        return out
