"""Key names of one cluster on a Redis, and the stream-entry id of a journal event id.

A journal event id N is the stream entry id "N-0": Redis compares ids as (ms, seq) pairs, so
the order is the journal's, the shorthand "N" that XREAD and XRANGE accept means exactly
"N-0", and the number reads back from an entry id without arithmetic. ("0-N" would work as
well, but every tool then shows the useful number in the sequence half.) An id at or below the
stream's last generated id is refused by XADD, which makes republishing idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BusKeys:
    """Every key one cluster uses, under one prefix (several clusters may share a Redis)."""

    prefix: str = "scada"

    @property
    def alarms(self) -> str:
        return f"{self.prefix}:alarms"

    @property
    def frames(self) -> str:
        return f"{self.prefix}:frames"

    @property
    def state(self) -> str:
        """Hash: alarm name → its newest event, and `_cursor` → the id that state stands at."""
        return f"{self.prefix}:alarm_state"

    def commands(self, node: str) -> str:
        """Gateway `node`'s command stream: only its own ACL user may append to it, so the
        stream a command came on says which gateway sent it (scada.bus.acl)."""
        return f"{self.prefix}:commands:{node}"

    @property
    def commands_pattern(self) -> str:
        """Every gateway's command stream (SCAN MATCH); node names hold no glob characters."""
        return f"{self.prefix}:commands:*"

    def command_node(self, stream: str) -> str:
        """The gateway whose command stream `stream` is."""
        return stream[len(f"{self.prefix}:commands:") :]

    @property
    def ledger(self) -> str:
        """Applied commands (request id → result), so a standby's ledger knows them too."""
        return f"{self.prefix}:ledger"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def lease(self) -> str:
        return f"{self.prefix}:lease"

    @property
    def fence(self) -> str:
        """The counter fencing tokens are drawn from."""
        return f"{self.prefix}:fence"

    @property
    def sparkplug_bdseq(self) -> str:
        """The Sparkplug edge node's connect counter (its bdSeq), shared by the ingest nodes."""
        return f"{self.prefix}:sparkplug:bdseq"

    def replies(self, node: str) -> str:
        """The stream a gateway reads its command replies from."""
        return f"{self.prefix}:replies:{node}"


def entry_id(event_id: int) -> str:
    """Stream entry id of a journal event id."""
    if event_id < 1:
        raise ValueError(f"journal event ids start at 1, got {event_id}")
    return f"{event_id}-0"


def event_id(entry: bytes | str) -> int:
    """Journal event id of a stream entry id ("N-0" → N)."""
    ms, _, seq = text(entry).partition("-")
    if seq not in ("", "0"):
        raise ValueError(f"not a journal entry id: {entry!r}")
    return int(ms)


def text(value: bytes | str) -> str:
    """A Redis reply as str (the bus clients do not decode responses: payloads are bytes)."""
    return value.decode() if isinstance(value, bytes) else value
