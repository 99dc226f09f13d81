"""The audit trail across a takeover: each ingest node's file ends up with every record.

The active node appends each audit record it writes to the stream `<p>:auth:audit` (fenced,
like every publish: entry fields `o` = origin "<store id>:<audit id>", `r` = the record), and
notes in the hash `<p>:auth:audit_pub` how far its own records are published (so a node that
comes back publishes what it wrote after its last publish). A node that takes over first
copies into its file what the stream holds after its own cursor (each origin once; its own
records are skipped), so `/api/audit` on the active node shows the trail from before the
failover too. The stream is trimmed to about `maxlen` entries: a node that was away longer
misses the oldest (logged; they stay in the other node's file).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from scada.auth.auditlog import AuditRecord
from scada.auth.store import AuthStore
from scada.bus.keys import BusKeys, text
from scada.bus.publish import Fenced

log = logging.getLogger("scada.auth.replica.auditsync")

# KEYS: lease, stream, published hash. ARGV: lease value, maxlen, store id, last own id, then
# (origin, record) pairs.
_SHIP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease not held by ' .. ARGV[1])
end
for i = 5, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'o', ARGV[i], 'r', ARGV[i + 1])
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

CURSOR = "audit_cursor"  # auth_meta key: the newest stream entry copied into this file
PAGE = 500


def encode_record(record: AuditRecord) -> bytes:
    return orjson.dumps({k: v for k, v in record.__dict__.items() if k != "id"})


def decode_record(payload: bytes) -> AuditRecord:
    data: dict[str, Any] = orjson.loads(payload)
    return AuditRecord(**data)


class AuditShipper:
    def __init__(
        self, redis: Redis, keys: BusKeys, store: AuthStore, *, maxlen: int = 100_000
    ) -> None:
        self.redis = redis
        self.stream = f"{keys.prefix}:auth:audit"
        self.published_key = f"{keys.prefix}:auth:audit_pub"
        self.lease_key = keys.lease
        self.store = store
        self.maxlen = maxlen
        self._script = redis.register_script(_SHIP)
        self._through: int | None = None  # own records published up to this id
        self.copied = 0
        self.shipped = 0

    def reset(self) -> None:
        """A takeover or a re-seed: copy and learn again before publishing."""
        self._through = None

    def behind(self) -> bool:
        return self._through is None

    async def take_over(self) -> int:
        """Copy what other nodes wrote into this file; learn how far ours are published."""
        raw = await self.redis.hget(self.published_key, self.store.store_id)
        cursor = await asyncio.to_thread(self.store.meta, CURSOR) or "0-0"
        first = True
        copied = 0
        while True:
            entries: Any = await self.redis.xrange(self.stream, min=f"({cursor}", count=PAGE)
            if first and entries and cursor != "0-0":
                await self._check_trimmed(cursor)
            first = False
            if not entries:
                break
            batch = [(text(f[b"o"]), decode_record(f[b"r"])) for _, f in entries]
            copied += await asyncio.to_thread(self.store.copy_audit, batch)
            cursor = text(entries[-1][0])
            await asyncio.to_thread(self.store.set_meta, CURSOR, cursor)
        self._through = int(raw) if raw is not None else 0
        self.copied += copied
        if copied:
            log.info("audit: %d record(s) of the other node copied into this node's file", copied)
        return copied

    async def _check_trimmed(self, cursor: str) -> None:
        oldest: Any = await self.redis.xrange(self.stream, count=1)
        if oldest and _after(text(oldest[0][0]), cursor):
            log.warning(
                "audit: the stream was trimmed past this node's cursor %s; records before %s "
                "are only in the other node's file",
                cursor,
                text(oldest[0][0]),
            )

    async def publish(self, fence: str) -> int:
        """Ship this file's own records written since the last call; returns how many."""
        if self._through is None:
            return 0
        shipped = 0
        while True:
            records = await asyncio.to_thread(self.store.own_audit_after, self._through, PAGE)
            if not records:
                return shipped
            last = records[-1].id or 0
            args: list[str | bytes | int] = [fence, self.maxlen, self.store.store_id, last]
            for record in records:
                args += [f"{self.store.store_id}:{record.id}", encode_record(record)]
            try:
                await self._script(
                    keys=[self.lease_key, self.stream, self.published_key], args=args
                )
            except ResponseError as err:
                if str(err).startswith("FENCED"):
                    raise Fenced(str(err)) from None
                raise
            self._through = last
            shipped += len(records)
            self.shipped += len(records)


def _after(a: str, b: str) -> bool:
    """Stream id a > b."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) > (int(bms), int(bseq or 0))
