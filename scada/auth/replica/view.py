"""A gateway's view of the auth rows: identities from a replica, audit records to the ingest.

`RedisAuthView` answers `session_identity`, `token_identity` and `still_valid` (what the
middleware, the WebSocket admission and the session watch ask) from an in-memory replica of
the rows the active ingest node publishes (`authsync`): a full load at start, then the change
stream, so it never waits on Redis in a request. A change that ends access (session deleted,
token revoked, user disabled) calls the `on_revoked` callbacks at once, so the gateway closes
the sockets concerned without waiting for its 5 s re-check.

The replica holds digests only, which cannot sign a command. The command key of a session or
token (scada.auth.commandsig) is computed from the secret itself when a request or socket
presents it here and passes, and kept (by digest) while its row lives: `command_key(digest)`,
what the gateway signs its clients' commands with. So a gateway can act only for clients whose
credentials passed through it.

When Redis cannot be read (down, hung, or it lost the rows and the ingest has not re-seeded
yet) the replica is kept as it was: known sessions and tokens go on working, and an unknown
one is answered "cannot check now" (IdentityUnavailable) instead of "invalid", so a browser
that has just logged in keeps its cookie and simply retries.

`BusAuditor` is the Auditor of a gateway: its records go to the active ingest node as
"audit" commands (scada.bus.commandstream), which writes them once, with the client address
the gateway saw, as that gateway's claims ("reported by <gateway>"; refusals only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from scada.auth.audit import Auditor, AuditUnavailable
from scada.auth.auditlog import AuditRecord
from scada.auth.commandsig import command_key
from scada.auth.identity import Identity, IdentityUnavailable
from scada.auth.passwords import token_digest
from scada.auth.replica.rows import KINDS, AuthKeys, decode_changes, decode_hash, public_row
from scada.bus.commandstream import CommandSender
from scada.bus.conn import connect, raise_if_cancelled, stream_entries
from scada.bus.keys import BusKeys, text
from scada.core.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("scada.auth.replica.view")

RevokedKind = Literal["session", "user"]
# ("session", digest): a session ended or a token revoked (sockets carry either digest);
# ("user", name): a user disabled (or gone).
Revoked = Callable[[RevokedKind, str], None]
Rows = dict[str, dict[str, Any]]


def _ends_access(kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    if old is None:
        return False
    if new is None:
        return True
    if kind == "tokens":
        return old.get("revoked") is None and new.get("revoked") is not None
    if kind == "users":
        return not old.get("disabled") and bool(new.get("disabled"))
    return False


class RedisAuthView:
    def __init__(
        self,
        url: str,
        keys: BusKeys,
        *,
        node: str = "gateway",
        block: float = 1.0,
        retry: float = 0.5,
        timeout: float = 2.0,
    ) -> None:
        self.keys = AuthKeys.of(keys)
        self.block = block
        self.retry = retry
        # A blocked XREAD waits `block` s for news: the socket may wait that long and more.
        self.redis = connect(url, timeout=block + timeout, name=f"scada-authview-{node}")
        self._rows: dict[str, Rows] = {kind: {} for kind in KINDS}
        self._seed: str | None = None
        self._n = 0  # number of the newest applied entry within the seed
        self._cursor: str | None = None  # None: (re)load in full first
        self._callbacks: list[Revoked] = []
        # digest → command key, for credentials that passed here (dropped with their row).
        self._keys: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self.live = False
        self.problem: str | None = "not loaded yet"
        self.loads = 0
        self.applied = 0

    # ------------------------------------------------------------------ identities (sync)

    def session_identity(self, secret: str) -> Identity | None:
        digest = token_digest(secret)
        session = self._rows["sessions"].get(digest)
        if session is None:
            self._unknown()
            return None
        user = self._rows["users"].get(session["user"])
        if user is None or user["disabled"] or session["expires"] <= time.time():
            return None
        name, expires = str(session["user"]), session["expires"]
        self._keys.setdefault(digest, command_key(secret))
        return Identity(name, user["role"], "session", expires=expires, session=digest)

    def token_identity(self, secret: str) -> Identity | None:
        digest = token_digest(secret)
        token = self._rows["tokens"].get(digest)
        if token is None:
            self._unknown()
            return None
        if token["revoked"] is not None:
            return None
        self._keys.setdefault(digest, command_key(secret))
        return Identity(token["name"], token["role"], "token", session=digest)

    def command_key(self, digest: str) -> str | None:
        """The command key of a session or token whose secret passed here, while it lives."""
        return self._keys.get(digest)

    def still_valid(self, digests: list[str]) -> set[str]:
        sessions, tokens, users = (self._rows[k] for k in ("sessions", "tokens", "users"))
        valid = set()
        for digest in digests:
            session = sessions.get(digest)
            if session is not None:
                user = users.get(session["user"])
                if user is not None and not user["disabled"]:
                    valid.add(digest)
            token = tokens.get(digest)
            if token is not None and token["revoked"] is None:
                valid.add(digest)
        return valid

    def _unknown(self) -> None:
        if not self.live:
            raise IdentityUnavailable(f"auth replica stale: {self.problem}")

    def on_revoked(self, callback: Revoked) -> None:
        """`callback(kind, key)` when access ends: ("session", digest) or ("user", name)."""
        self._callbacks.append(callback)

    # ------------------------------------------------------------------ life cycle

    async def start(self, wait: float = 3.0) -> bool:
        """Start following Redis; waits up to `wait` s for the first full load (False if it
        has not happened yet: the view keeps trying, unknown credentials are 'try again')."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="auth-view")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), wait)
        return self._loaded.is_set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.redis.aclose()

    def metrics(self) -> Iterator[Metric]:
        """For a gateway's /metrics: is the replica live, how big, how often reloaded."""
        yield GaugeMetricFamily(
            "scada_auth_replica_live", "1 while the auth rows are followed.", int(self.live)
        )
        rows = GaugeMetricFamily("scada_auth_rows", "Auth rows in the replica.", labels=["kind"])
        for kind in KINDS:
            rows.add_metric([kind], len(self._rows[kind]))
        yield rows
        yield CounterMetricFamily(
            "scada_auth_loads", "Full loads of the auth rows.", value=self.loads
        )
        yield CounterMetricFamily(
            "scada_auth_changes", "Auth row changes applied.", value=self.applied
        )

    def status(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "problem": self.problem,
            "seed": self._seed,
            **{kind: len(self._rows[kind]) for kind in KINDS},
        }

    # ------------------------------------------------------------------ following Redis

    async def _run(self) -> None:
        while True:
            raise_if_cancelled()
            try:
                if self._cursor is None and not await self._load():
                    await asyncio.sleep(self.retry)
                    continue
                await self._follow()
            except (RedisError, OSError) as err:
                self._stale(f"Redis: {err}")
                await asyncio.sleep(self.retry)

    async def _load(self) -> bool:
        """Replace the replica with what Redis holds; False if Redis holds no seeded rows."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.seed)
            pipe.get(self.keys.seq)
            for kind in KINDS:
                pipe.hgetall(self.keys.hash(kind))
            pipe.xrevrange(self.keys.stream, count=1)
            seed, seq, *rest = await pipe.execute()
        if seed is None:
            self._stale("no auth rows in Redis (the active ingest node has not seeded them)")
            return False
        *hashes, last = rest
        new = {
            kind: {key: public_row(row) for key, row in decode_hash(raw).items()}
            for kind, raw in zip(KINDS, hashes, strict=True)
        }
        old, self._rows = self._rows, new
        live = new["sessions"].keys() | new["tokens"].keys()
        self._keys = {digest: key for digest, key in self._keys.items() if digest in live}
        self._seed, self._n = text(seed), int(seq or 0)
        self._cursor = text(last[0][0]) if last else "0-0"
        self.loads += 1
        self._live()
        self._loaded.set()
        log.info(
            "auth rows loaded (seed %s): %s",
            self._seed,
            ", ".join(f"{len(new[k])} {k}" for k in KINDS),
        )
        for kind in KINDS:
            for key in old[kind]:
                self._check(kind, key, old[kind][key], new[kind].get(key))
        return True

    async def _follow(self) -> None:
        """One blocking read of the change stream; with nothing new, check the seed."""
        assert self._cursor is not None
        reply = await self.redis.xread(
            {self.keys.stream: self._cursor}, count=500, block=int(self.block * 1000)
        )
        entries = [entry for _, batch in stream_entries(reply) for entry in batch]
        if not entries:
            seed = await self.redis.get(self.keys.seed)
            if seed is None or text(seed) != self._seed:
                self._cursor = None  # re-seeded (or lost): load again
                return
            self._live()
            return
        for entry, fields in entries:
            seed, n = text(fields[b"s"]), int(fields[b"n"])
            if seed != self._seed or n > self._n + 1:
                self._cursor = None  # a new seed, or entries trimmed away: load in full
                return
            self._cursor = entry
            if n <= self._n:
                continue  # already in the loaded rows
            self._n = n
            self._apply(fields[b"c"])
        self._live()

    def _apply(self, payload: bytes) -> None:
        for kind, key, row in decode_changes(payload):
            rows = self._rows[kind]
            old = rows.get(key)
            if row is None:
                rows.pop(key, None)
                self._keys.pop(key, None)
            else:
                rows[key] = row
            self.applied += 1
            self._check(kind, key, old, row)

    def _check(
        self, kind: str, key: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        if not _ends_access(kind, old, new):
            return
        revoked: RevokedKind = "user" if kind == "users" else "session"
        for callback in self._callbacks:
            try:
                callback(revoked, key)
            except Exception:
                log.exception("on_revoked callback failed for %s", revoked)

    def _live(self) -> None:
        if not self.live:
            if self.loads > 1 or self.problem != "not loaded yet":
                log.info("auth replica live again")
            self.live, self.problem = True, None

    def _stale(self, problem: str) -> None:
        if self.live or self.problem != problem:
            log.warning("auth replica stale (kept as it was): %s", problem)
        self.live, self.problem = False, problem


class SocketCloser(Protocol):
    """What closes a gateway's sockets (the Hub)."""

    def close_session(self, session: str, reason: str) -> None: ...

    def close_user(self, user: str, reason: str) -> None: ...


def close_sockets(hub: SocketCloser) -> Revoked:
    """An `on_revoked` callback that closes the sockets of what ended (close code 1008)."""

    def revoked(kind: RevokedKind, key: str) -> None:
        if kind == "user":
            hub.close_user(key, "account disabled")
        else:
            hub.close_session(key, "credentials revoked")

    return revoked


class AuditChannel(Protocol):
    """How a gateway's audit records reach the active ingest node (as "audit" commands)."""

    async def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a command and return its reply's result; raise if no reply comes in time."""
        ...

    async def post(self, kind: str, body: dict[str, Any]) -> None:
        """Send a command without waiting for its reply."""
        ...


class SenderChannel:
    """An AuditChannel on a CommandSender of its own."""

    def __init__(self, sender: CommandSender, timeout: float = 3.0) -> None:
        self.sender = sender
        self.timeout = timeout

    async def call(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.sender.request(kind, body, timeout=self.timeout)).result

    async def post(self, kind: str, body: dict[str, Any]) -> None:
        await self.sender.send(kind, body)


class BusAuditor(Auditor):
    """A gateway's Auditor: records go to the active ingest node as "audit" commands, which
    it writes once (request ids), with the client address the gateway saw.

    An action's record (`action_record`) waits for the ingest's answer: no answer, no action
    (AuditUnavailable, as when the local file cannot be written). Outcomes and refusals are
    sent without waiting (and folded as the Auditor folds them).
    """

    def __init__(self, channel: AuditChannel, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(None, clock)
        self.channel = channel

    @staticmethod
    def body(record: AuditRecord) -> dict[str, Any]:
        """The "audit" command body: {"record": AuditRecord.as_dict()} (contract 3)."""
        if record.at is None:  # when it happened here, not when the ingest wrote it
            record = AuditRecord(**{**record.__dict__, "at": time.time()})
        return {"record": record.as_dict()}

    async def _append(self, record: AuditRecord) -> None:
        error = (await self.channel.call("audit", self.body(record))).get("error")
        if error:
            raise AuditUnavailable(f"{record.action} ({error.get('code')})")

    async def _append_outcome(self, record: AuditRecord) -> None:
        await self.channel.post("audit", self.body(record))
