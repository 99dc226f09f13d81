"""The fenced XADD: every entry an ingest node publishes goes through this one Lua script.

The script compares the lease key with the caller's `<token>:<node>` (and, for the alarm
stream, the epoch key with the caller's epoch) and only then appends, all in one atomic step:
a node that lost the lease, however long it was paused, cannot slip an entry in between the
check and the write. Entries with an explicit id at or below the stream's last generated id
are refused by Redis; the script counts them as already published (idempotent republish).
An entry published with an epoch carries it (field `h`), so a reader can check every entry.
A *strict* publish (the journal's gate: these ids are new events) refuses instead: if the
first id is not above the stream's last generated id, nothing is written and the caller gets
`Behind` (the stream holds those ids already, perhaps for other events).
An alarm entry also replaces its alarm's field in the state hash (every event is a full
snapshot of its alarm), with `_cursor` = its id: a gateway that starts reads the hash (the
state at `_cursor`) and then the stream after `_cursor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from scada.bus.keys import BusKeys

# KEYS: lease, epoch, stream, state hash. ARGV: lease value, epoch ('' = not checked), maxlen
# ('0' = no trimming), strict ('1': an id at or below the top is an error, BEHIND), then
# (id, payload, state field) triples; a state field other than ''
# also stores the payload under that field of the state hash, and the entry's id under
# `_cursor`, in the same step. Returns {added, already_published, last id added}.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease not held by ' .. ARGV[1])
end
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('EPOCH the bus epoch is no longer ' .. ARGV[2])
end
local added, skipped, last = 0, 0, ''
for i = 5, #ARGV, 3 do
  local cmd = {'XADD', KEYS[3]}
  if ARGV[3] ~= '0' then
    table.insert(cmd, 'MAXLEN'); table.insert(cmd, '~'); table.insert(cmd, ARGV[3])
  end
  table.insert(cmd, ARGV[i]); table.insert(cmd, 'e'); table.insert(cmd, ARGV[i + 1])
  if ARGV[2] ~= '' then
    table.insert(cmd, 'h'); table.insert(cmd, ARGV[2])
  end
  local r = redis.pcall(unpack(cmd))
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'equal or smaller', 1, true) then
      if ARGV[4] == '1' then
        return redis.error_reply('BEHIND the stream already has ' .. ARGV[i])
      end
      skipped = skipped + 1
    else
      return r
    end
  else
    added = added + 1
    last = r
    if ARGV[i + 2] ~= '' then
      redis.call('HSET', KEYS[4], ARGV[i + 2], ARGV[i + 1], '_cursor', r)
    end
  end
end
return {added, skipped, last}
"""

PAYLOAD = b"e"  # every entry's payload
EPOCH = b"h"  # the epoch an alarm entry was published in (a reader checks each entry)


class Fenced(Exception):
    """Redis refused the write: the caller's lease is no longer the current one."""


class Behind(Exception):
    """A strict publish found its first id already on the stream: nothing was written."""


class EpochChanged(Exception):
    """Redis refused the write: the bus epoch changed (Redis lost its data, or a new journal)."""


@dataclass(frozen=True, slots=True)
class Published:
    added: int
    already_published: int
    last_id: str | None


class FencedPublisher:
    def __init__(self, redis: Redis, keys: BusKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._script = redis.register_script(_PUBLISH)

    async def publish(
        self,
        stream: str,
        fence: str,
        entries: Sequence[tuple[str, bytes]],
        *,
        epoch: str = "",
        maxlen: int = 0,
        state: Sequence[str] = (),
        strict: bool = False,
    ) -> Published:
        """Append (id, payload) entries ("*" = Redis picks the id) if `fence` holds the lease.

        `state`, if given, names for each entry the field of the state hash it replaces.
        `strict`: ids at or below the stream's top are refused (Behind), not skipped.
        """
        args: list[str | bytes | int] = [fence, epoch, maxlen, "1" if strict else "0"]
        fields = state or [""] * len(entries)
        for (entry, payload), field in zip(entries, fields, strict=True):
            args += [entry, payload, field]
        try:
            added, skipped, last = await self._script(
                keys=[self.keys.lease, self.keys.epoch, stream, self.keys.state], args=args
            )
        except ResponseError as err:
            text = str(err)
            if text.startswith("FENCED"):
                raise Fenced(text) from None
            if text.startswith("EPOCH"):
                raise EpochChanged(text) from None
            if text.startswith("BEHIND"):
                raise Behind(text) from None
            raise
        return Published(int(added), int(skipped), last.decode() if last else None)
