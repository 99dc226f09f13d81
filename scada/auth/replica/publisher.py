"""The active ingest node publishes its auth rows (users, tokens, sessions) to Redis.

Every gateway keeps a replica of them (`authview`), so a login or an API token made on the
active node works on every gateway, and a logout, a revocation or a disabled user reaches
every gateway at once through the change stream. Nothing but digests and public user rows
leaves the node readable (see `rows`); password hashes and the command keys of sessions and
tokens (scada.auth.commandsig) go only sealed, to keys only the ingest nodes read (see
`sealed`).

The publisher never publishes from memory: the AuthStore's change hook only wakes it; it then
reads the store's rows, compares them with what Redis holds (as it last published) and writes
the difference, so a change made by the CLI in another process is published too (it also
looks every `check_every` s). Every write goes through one Lua script that checks the lease
(the fencing token) first, like every other publish of an ingest node.

Takeover: before its first publish the new active node merges the rows Redis holds into its
own SQLite (users, tokens and sessions made on the old active node survive the failover; see
`AuthStore.merge_rows`), then re-seeds Redis from its SQLite under a new seed id. Redis that
lost its data (no seed key) is re-seeded the same way, without a merge. With `first_admin`
(the ingest role) the takeover also creates the cluster's first user, between the merge and
the seed, if neither Redis nor the store has one (`ensure_cluster_admin`): one admin and one
password file for the cluster, made by the node that is active, never by a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from scada.auth.first_admin import ensure_cluster_admin
from scada.auth.replica.auditsync import AuditShipper
from scada.auth.replica.rows import (
    KINDS,
    AuthKeys,
    Change,
    decode_hash,
    encode_changes,
    encode_row,
    public_row,
)
from scada.auth.replica.sealed import Sealer
from scada.auth.rowset import AuthRows
from scada.auth.store import AuthStore
from scada.bus.conn import raise_if_cancelled
from scada.bus.keys import BusKeys, text
from scada.bus.lease import Lease, LeaseLost
from scada.bus.publish import Fenced

log = logging.getLogger("scada.auth.replica.publisher")

# KEYS: lease, seed, seq, stream, users, tokens, sessions, secrets, keys.
# ARGV: lease value, seed id, mode ('seed' | 'change'), stream maxlen, stream payload, the
# number of the caller's last entry, then (kind 1..5, key, row) triples (4: a user's sealed
# password hash, 5: a session's or token's sealed command key); row '' deletes the key. A seed empties the hashes first. A change is refused (RESEED) unless Redis holds the
# caller's seed at the caller's last number: a Redis restored from an AOF that lacks the
# newest writes must be seeded again, not patched. Returns the new entry's number.
_SYNC = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease not held by ' .. ARGV[1])
end
if ARGV[3] == 'seed' then
  redis.call('DEL', KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9])
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[3], 0)
elseif redis.call('GET', KEYS[2]) ~= ARGV[2] or redis.call('GET', KEYS[3]) ~= ARGV[6] then
  return redis.error_reply('RESEED the auth rows are not those of seed ' .. ARGV[2])
end
for i = 7, #ARGV, 3 do
  local h = KEYS[4 + tonumber(ARGV[i])]
  if ARGV[i + 2] == '' then
    redis.call('HDEL', h, ARGV[i + 1])
  else
    redis.call('HSET', h, ARGV[i + 1], ARGV[i + 2])
  end
end
local n = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 's', ARGV[2], 'n', n, 'c', ARGV[5])
return n
"""


class Reseed(Exception):
    """Redis no longer holds the rows this node seeded (it lost its data, or another node
    seeded since): merge and seed again."""


def diff_rows(old: AuthRows, new: AuthRows) -> list[Change]:
    """The changes that turn `old` into `new`."""
    changes: list[Change] = []
    for kind in KINDS:
        before, after = old.get(kind, {}), new.get(kind, {})
        changes += [(kind, key, row) for key, row in after.items() if before.get(key) != row]
        changes += [(kind, key, None) for key in before.keys() - after.keys()]
    return changes


def all_changes(rows: AuthRows) -> list[Change]:
    return diff_rows({}, rows)


async def read_rows(
    redis: Redis, keys: AuthKeys, sealer: Sealer | None = None
) -> tuple[str | None, AuthRows]:
    """(seed id, rows) as Redis holds them now, read atomically. A user's `password` is its
    unsealed hash, a session's or token's `command_key` its unsealed key, or None (no
    sealer, none published, or sealed under another key)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.seed)
        for kind in KINDS:
            pipe.hgetall(keys.hash(kind))
        pipe.hgetall(keys.secrets)
        pipe.hgetall(keys.command_keys)
        seed, *hashes, secrets_raw, keys_raw = await pipe.execute()
    rows = {kind: decode_hash(raw) for kind, raw in zip(KINDS, hashes, strict=True)}
    sealed = {text(k): v for k, v in (secrets_raw or {}).items()}
    for name, user in rows.get("users", {}).items():
        blob = sealed.get(name)
        user["password"] = sealer.unseal(name, blob) if sealer and blob is not None else None
    sealed_keys = {text(k): v for k, v in (keys_raw or {}).items()}
    for kind in ("sessions", "tokens"):
        for digest, row in rows.get(kind, {}).items():
            blob = sealed_keys.get(digest)
            row["command_key"] = (
                sealer.unseal(f"{kind}:{digest}", blob) if sealer and blob is not None else None
            )
    return (text(seed) if seed is not None else None), rows


def client_sealer(redis: Redis, prefix: str) -> Sealer | None:
    """The sealer of the ingest nodes whose Redis client this is (its URL's password)."""
    password = redis.connection_pool.connection_kwargs.get("password")
    return Sealer.for_password(str(password), prefix) if password else None


class AuthPublisher:
    def __init__(
        self,
        redis: Redis,
        keys: BusKeys,
        lease: Lease,
        store: AuthStore,
        *,
        maxlen: int = 1_000,
        check_every: float = 1.0,
        first_admin: bool = False,
        sealer: Sealer | None = None,
    ) -> None:
        self.redis = redis
        # Password hashes go sealed (None: not published; a takeover keeps its own).
        self.sealer = sealer or client_sealer(redis, keys.prefix)
        self.keys = AuthKeys.of(keys)
        self.lease = lease
        self.store = store
        self.maxlen = maxlen
        self.check_every = check_every
        self.first_admin = first_admin
        self._script = redis.register_script(_SYNC)
        self.audit = AuditShipper(redis, keys, store)
        self._seed: str | None = None  # the seed this node wrote last
        self._n = 0  # the number of its last entry
        self._published: AuthRows | None = None  # what Redis holds under it; None: seed first
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._requested = 0  # flush tracking: passes asked for, and done
        self._done = 0
        self._done_cond = asyncio.Condition()
        self._merged = False  # in this activation: logins may start
        self.seeds = 0
        self.changes = 0
        store.on_change(self._on_change)

    # ------------------------------------------------------------------ the store's hook

    def _on_change(self, _kind: str, _key: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # ------------------------------------------------------------------ for the ingest process

    async def activate(self, settle: float = 3.0) -> None:
        """Takeover: merge Redis' rows into the store and seed Redis (waits up to `settle` s
        for that, so logins on this node start from the merged rows), then keep publishing
        until `stand_by`."""
        await self.stand_by()
        self._loop = asyncio.get_running_loop()
        self._published = None
        self._merged = False
        self._task = asyncio.create_task(self._run(), name="auth-publisher")
        if not await self.flush(settle):
            log.warning("auth rows not seeded within %.1f s of activation; still trying", settle)

    async def stand_by(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def ready(self) -> bool:
        """Whether this node has taken the cluster's rows over (since its activation): no
        login before, or the merge could end a session made meanwhile."""
        return self._task is not None and self._merged

    async def flush(self, timeout: float = 2.0) -> bool:
        """Wait until what the store holds now is in Redis; False if not within `timeout`
        (or if this node is not publishing)."""
        if self._task is None:
            return False
        self._requested += 1
        target = self._requested
        self._wake.set()
        async with self._done_cond:
            try:
                await asyncio.wait_for(
                    self._done_cond.wait_for(lambda: self._done >= target), timeout
                )
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        failing = False
        while True:
            raise_if_cancelled()
            self._wake.clear()
            target = self._requested
            try:
                await self.sync_once()
                if failing:
                    log.info("auth rows: publishing again")
                failing = False
                async with self._done_cond:
                    self._done = max(self._done, target)
                    self._done_cond.notify_all()
            except (LeaseLost, Fenced) as err:
                log.info("auth rows: not publishing (%s)", err)
                self._published = None
            except (RedisError, OSError) as err:
                if not failing:
                    log.warning("auth rows: cannot publish: %s", err)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.check_every)

    async def sync_once(self) -> None:
        """One pass: seed if needed, else publish what changed since the last pass."""
        fence = self.lease.fence()
        if self._published is not None:
            seed, n = await self.redis.mget(self.keys.seed, self.keys.seq)
            if seed is None or text(seed) != self._seed or int(n or 0) != self._n:
                log.warning(
                    "auth rows: Redis no longer holds seed %s at %d; re-seeding",
                    self._seed,
                    self._n,
                )
                self._published = None
        if self._published is None:
            await self._take_over(fence)
        else:
            await self._publish_changes(fence)
        if self.audit.behind():
            await self.audit.take_over()
        await self.audit.publish(fence)

    async def _publish_changes(self, fence: str) -> None:
        assert self._published is not None
        rows = await asyncio.to_thread(self.store.rows)
        changes = diff_rows(self._published, rows)
        if changes:
            try:
                await self._write(fence, "change", self._seed or "", changes)
            except Reseed:
                self._published = None
                await self._take_over(fence)
                return
            self._published = rows
            self.changes += len(changes)

    async def _take_over(self, fence: str) -> None:
        seed, theirs = await read_rows(self.redis, self.keys, self.sealer)
        await asyncio.to_thread(self._fill_passwords, theirs)
        if seed is not None and seed != self._seed:
            counts = await asyncio.to_thread(self.store.merge_rows, theirs)
            log.info(
                "auth rows of seed %s merged: %s",
                seed,
                ", ".join(f"{n} {kind}" for kind, n in counts.items()),
            )
        if self.first_admin:
            users = len(theirs.get("users", {}))
            await asyncio.to_thread(ensure_cluster_admin, self.store, users)
        rows = await asyncio.to_thread(self.store.rows)
        new_seed = secrets.token_hex(8)
        await self._write(fence, "seed", new_seed, all_changes(rows))
        self._seed, self._published = new_seed, rows
        self._merged = True
        self.seeds += 1
        log.info(
            "auth rows seeded (seed %s): %s",
            new_seed,
            ", ".join(f"{len(rows[k])} {k}" for k in KINDS),
        )
        self.audit.reset()  # copy the other node's audit records next (logins need not wait)

    def _fill_passwords(self, theirs: AuthRows) -> None:
        """Users whose hash did not come (unsealable, or not published): this store's own
        hash if it has the user, else none that verifies (an admin sets a new password)."""
        missing = [n for n, u in theirs.get("users", {}).items() if u.get("password") is None]
        for name in missing:
            theirs["users"][name]["password"] = self.store.password_hash(name) or "!"
        if missing:
            log.info("auth rows: %d user(s) without a published password hash", len(missing))

    def _sealed(self, changes: list[Change]) -> list[tuple[int, str, bytes]]:
        """The script's triples: rows without their secrets; each user's hash and each
        session's or token's command key sealed apart (the kind and key as associated data,
        so a sealed value cannot be moved to another row)."""
        out: list[tuple[int, str, bytes]] = []
        secrets_kind, keys_kind = len(KINDS) + 1, len(KINDS) + 2
        for kind, key, row in changes:
            if kind == "users":
                password = None if row is None else row.get("password")
                if row is None or password is None or self.sealer is None:
                    out.append((secrets_kind, key, b""))
                else:
                    out.append((secrets_kind, key, self.sealer.seal(key, str(password))))
            else:
                secret = None if row is None else row.get("command_key")
                if secret is None or self.sealer is None:
                    out.append((keys_kind, key, b""))
                else:
                    out.append((keys_kind, key, self.sealer.seal(f"{kind}:{key}", str(secret))))
            row = None if row is None else public_row(row)
            out.append((KINDS.index(kind) + 1, key, b"" if row is None else encode_row(row)))
        return out

    async def _write(self, fence: str, mode: str, seed: str, changes: list[Change]) -> None:
        payload = b"[]" if mode == "seed" else encode_changes(changes)
        args: list[str | bytes | int] = [fence, seed, mode, self.maxlen, payload, self._n]
        for triple in self._sealed(changes):
            args += triple
        keys = [self.lease.keys.lease, self.keys.seed, self.keys.seq, self.keys.stream]
        keys += [*(self.keys.hash(k) for k in KINDS), self.keys.secrets, self.keys.command_keys]
        try:
            n = await self._script(keys=keys, args=args)
        except ResponseError as err:
            message = str(err)
            if message.startswith("FENCED"):
                raise Fenced(message) from None
            if message.startswith("RESEED"):
                raise Reseed(message) from None
            raise
        self._n = int(n)
