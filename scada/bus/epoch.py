"""The bus epoch: which history a cursor belongs to.

The epoch is `<journal epoch>/<bus id>`: the journal's random id (minted when the journal was
created: its ids mean nothing in another journal) and a random id minted when this Redis first
saw that journal. A Redis that lost its data (restart without persistence, flush, a new
instance) no longer has the key, so the active ingest node mints a new bus id and every gateway
sees a different epoch: its clients get `recovered: false` and a fresh snapshot instead of a
history with a silent hole. A new journal on the same Redis replaces the alarm stream (its ids
start again at 1) under a new epoch as well. A new epoch's state hash is seeded with the
newest event of every alarm (`seed_state`), so a gateway can start from it.

Only the lease holder mints (the script checks the fence), so two nodes never race to it.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from scada.bus.keys import BusKeys, entry_id
from scada.bus.publish import EpochChanged, Fenced

# KEYS: lease, epoch, alarm stream, state hash. ARGV: lease value, journal epoch, fresh bus id.
# Returns {epoch, 1 if minted now else 0}.
_ENSURE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease not held by ' .. ARGV[1])
end
local current = redis.call('GET', KEYS[2])
if current and string.sub(current, 1, #ARGV[2] + 1) == ARGV[2] .. '/' then
  return {current, 0}
end
redis.call('DEL', KEYS[3], KEYS[4])
local minted = ARGV[2] .. '/' .. ARGV[3]
redis.call('SET', KEYS[2], minted)
return {minted, 1}
"""


def new_journal_epoch() -> str:
    """A random id for a new journal (the journal stores it once, at creation)."""
    return f"{secrets.randbits(63):016x}"  # what scada.alarms.journal mints


async def ensure_epoch(
    redis: Redis, keys: BusKeys, fence: str, journal_epoch: str
) -> tuple[str, bool]:
    """The bus epoch for this journal, minting it if Redis has none (or another journal's).

    Returns (epoch, minted). Minting for another journal deletes the alarm stream, whose ids
    belong to that journal. Fenced if `fence` is not the current lease.
    """
    if not journal_epoch or "/" in journal_epoch:
        raise ValueError(f"bad journal epoch {journal_epoch!r}")
    script = redis.register_script(_ENSURE)
    try:
        epoch, minted = await script(
            keys=[keys.lease, keys.epoch, keys.alarms, keys.state],
            args=[fence, journal_epoch, secrets.token_hex(8)],
        )
    except ResponseError as err:
        if str(err).startswith("FENCED"):
            raise Fenced(str(err)) from None
        raise
    return epoch.decode(), bool(minted)


# KEYS: lease, epoch, state hash. ARGV: lease value, epoch, cursor id, then field, payload pairs.
_SEED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease not held by ' .. ARGV[1])
end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('EPOCH the bus epoch is no longer ' .. ARGV[2])
end
redis.call('DEL', KEYS[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[3], '_cursor', ARGV[3])
return 1
"""


async def seed_state(
    redis: Redis,
    keys: BusKeys,
    fence: str,
    epoch: str,
    cursor: int,
    states: list[tuple[str, bytes]],
) -> None:
    """Fill a new epoch's state hash: each alarm's newest event as of journal id `cursor`."""
    args: list[str | bytes] = [fence, epoch, entry_id(cursor) if cursor else "0-0"]
    for field, payload in states:
        args += [field, payload]
    script = redis.register_script(_SEED)
    try:
        await script(keys=[keys.lease, keys.epoch, keys.state], args=args)
    except ResponseError as err:
        if str(err).startswith("FENCED"):
            raise Fenced(str(err)) from None
        if str(err).startswith("EPOCH"):
            raise EpochChanged(str(err)) from None
        raise


async def read_epoch(redis: Redis, keys: BusKeys) -> str | None:
    """The current bus epoch, None if no ingest node has minted one on this Redis yet."""
    raw = await redis.get(keys.epoch)
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)
