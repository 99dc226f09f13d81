"""The command ledger travels to the standby: `<p>:ledger` carries each applied command's
request id and result (published, fenced, by the active node right after the commit and
before the reply), and a standby writes them into its journal's ledger. A gateway that resends
a command across a takeover (same request id) then gets the stored answer from the new active
node instead of a second application.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from scada.bus.conn import raise_if_cancelled, stream_entries
from scada.bus.keys import BusKeys
from scada.bus.publish import PAYLOAD

log = logging.getLogger("scada.alarms.ledger")

Row = tuple[str, dict[str, Any], float]


class LedgerStore(Protocol):
    def remember_commands(self, rows: list[Row]) -> int: ...


def encode(request_id: str, result: dict[str, Any], at: float) -> bytes:
    return orjson.dumps({"r": request_id, "b": result, "t": at})


def decode(payload: bytes) -> Row:
    data = orjson.loads(payload)
    return str(data["r"]), dict(data["b"]), float(data["t"])


class LedgerMirror:
    """A standby's copy of the ledger stream (all of it: it is short, MAXLEN ~10,000)."""

    def __init__(self, store: LedgerStore, keys: BusKeys) -> None:
        self.store = store
        self.keys = keys
        self.cursor = "0-0"
        self.mirrored = 0

    async def _apply(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        rows = [decode(fields[PAYLOAD]) for _, fields in entries]
        if entries:
            self.cursor = entries[-1][0]
            self.mirrored += await asyncio.to_thread(self.store.remember_commands, rows)

    async def run(self, redis: Redis, block: float = 0.5) -> None:
        """Follow the stream until cancelled (while standing by)."""
        failing = False
        while True:
            raise_if_cancelled()
            try:
                reply = await redis.xread(
                    {self.keys.ledger: self.cursor}, count=500, block=int(block * 1000)
                )
                failing = False
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("ledger mirror: %s", err)
                failing = True
                await asyncio.sleep(1.0)
                continue
            for _, entries in stream_entries(reply):
                await self._apply(entries)

    async def catch_up(self, redis: Redis, batch: int = 1000) -> None:
        """Read what is left of the stream (on takeover, before applying any command)."""
        while True:
            start = "-" if self.cursor == "0-0" else f"({self.cursor}"
            reply: Any = await redis.xrange(self.keys.ledger, min=start, count=batch)
            entries = [(e.decode() if isinstance(e, bytes) else str(e), f) for e, f in reply]
            if not entries:
                return
            await self._apply(entries)
