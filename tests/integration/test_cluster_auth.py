"""One login for all gateways, over a real redis-server and real AuthStore files.

The active ingest node's AuthPublisher (scada.auth.replica.publisher) publishes the auth rows; a
gateway's RedisAuthView (scada.auth.replica.view) answers from its replica: sessions and
tokens made on the ingest work there, their end reaches it at once (on_revoked), a takeover
by the standby's store keeps every row, Redis holds no secret but digests and password
hashes, and audit records from a gateway are written once, by the ingest node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scada.auth.audit import Auditor, AuditUnavailable
from scada.auth.auditlog import AuditRecord, audit_query
from scada.auth.identify import COOKIE, AuthMiddleware, requires
from scada.auth.identity import IdentityUnavailable
from scada.auth.passwords import token_digest
from scada.auth.replica.publisher import AuthPublisher
from scada.auth.replica.rows import AuthKeys
from scada.auth.replica.sealed import Sealer
from scada.auth.replica.view import BusAuditor, RedisAuthView, SenderChannel
from scada.auth.store import AuthStore
from scada.bus.commandstream import Command, CommandConsumer, CommandSender
from scada.bus.keys import BusKeys
from scada.bus.lease import Lease
from scada.core.config import load_config
from scada.core.timefmt import parse_time
from tests.conftest import eventually_async, scaled
from tests.integration.cluster_redis import RedisServer, connect, redis_server

KEYS = BusKeys("authtest")
redis_server = redis_server  # the fixture, shared by the cluster tests
PASSWORD = "correct horse battery"


@asynccontextmanager
async def active_node(
    url: str, store: AuthStore, node: str, **options: Any
) -> AsyncIterator[AuthPublisher]:
    """An ingest node's auth side: holds the lease (renewed), publishes while it does
    (`options`: the AuthPublisher's)."""
    redis = connect(url)
    lease = Lease(redis, KEYS, node, ttl=3.0, renew_every=0.5)
    renewing = asyncio.create_task(lease.run())
    await eventually_async(lease.held, what=f"{node} holds the lease")
    publisher = AuthPublisher(redis, KEYS, lease, store, **options)
    await publisher.activate()
    try:
        yield publisher
    finally:
        await publisher.stand_by()
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        await lease.release()
        await redis.aclose()


@asynccontextmanager
async def gateway_view(url: str) -> AsyncIterator[tuple[RedisAuthView, list[tuple[str, str]]]]:
    view = RedisAuthView(url, KEYS, node="gw-test", block=0.5)
    revoked: list[tuple[str, str]] = []
    view.on_revoked(lambda kind, key: revoked.append((kind, key)))
    assert await view.start(wait=5.0)
    try:
        yield view, revoked
    finally:
        await view.stop()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


async def thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def test_sessions_tokens_and_their_end_reach_the_gateway(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = AuthStore(tmp_path / "a" / "auth.sqlite")
    store.add_user("op1", "operator", PASSWORD)

    async def main() -> None:
        async with (
            active_node(redis_server.url, store, "ingest-a"),
            gateway_view(redis_server.url) as (view, revoked),
        ):
            # A session made on the ingest side (a login) is accepted by the gateway.
            secret, _ = await thread(store.create_session, "op1", 8)
            who = await eventually_async(lambda: view.session_identity(secret), what="session")
            assert (who.name, who.role, who.kind) == ("op1", "operator", "session")
            assert who.session == token_digest(secret)
            assert view.session_identity("x" * 43) is None  # unknown while live: invalid

            # Logout: on_revoked at once, and the re-check drops it.
            started = time.monotonic()
            digest = await thread(store.delete_session, secret)
            await eventually_async(lambda: ("session", digest) in revoked, what="logout seen")
            print(
                f"logout → on_revoked on the gateway: {1000 * (time.monotonic() - started):.1f} ms"
            )
            assert view.still_valid([digest]) == set()
            assert view.session_identity(secret) is None

            # An API token works; its revocation propagates.
            token_id, token = await thread(store.create_token, "scada-bi", "viewer", "admin")
            got = await eventually_async(lambda: view.token_identity(token), what="token")
            assert (got.name, got.role, got.kind) == ("scada-bi", "viewer", "token")
            tdigest = token_digest(token)
            assert view.still_valid([tdigest]) == {tdigest}
            await thread(store.revoke_token, token_id)
            await eventually_async(lambda: ("session", tdigest) in revoked, what="revocation")
            assert view.token_identity(token) is None
            assert view.still_valid([tdigest]) == set()

            # A disabled user: "user" and each of its sessions; none is valid any more.
            s1, _ = await thread(store.create_session, "op1", 8)
            s2, _ = await thread(store.create_session, "op1", 8)
            await eventually_async(lambda: view.session_identity(s2), what="sessions")
            both = [token_digest(s1), token_digest(s2)]
            assert view.still_valid(both) == set(both)
            await thread(store.set_disabled, "op1", True)
            await eventually_async(lambda: ("user", "op1") in revoked, what="disable seen")
            assert view.still_valid(both) == set()
            assert {("session", d) for d in both} <= set(revoked)

            # A change the CLI makes in another process (no hook here) is published too.
            cli = AuthStore(store.path)
            cli.add_user("viewer9", "viewer", PASSWORD)
            s3, _ = await thread(store.create_session, "viewer9", 8)
            await eventually_async(lambda: view.session_identity(s3), what="CLI user")

    run(main)


def test_a_takeover_keeps_every_row_of_the_old_active_node(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    a = AuthStore(tmp_path / "a" / "auth.sqlite")
    b = AuthStore(tmp_path / "b" / "auth.sqlite")
    a.add_user("admin", "admin", PASSWORD)
    b.add_user("admin", "admin", PASSWORD)  # both were set up alike once
    stale, _ = b.create_session("admin", 8)  # from an old term of B: ended since on A
    b.add_user("local1", "viewer", PASSWORD)  # made by the CLI on B while it stood by

    async def main() -> None:
        async with gateway_view_after_seed(redis_server.url) as holder:
            async with active_node(redis_server.url, a, "ingest-a"):
                view, revoked = await holder.view()
                a.add_user("op2", "operator", PASSWORD)
                a.set_password("admin", "a new password 2")
                session, _ = await thread(a.create_session, "op2", 8)
                tid, token = await thread(a.create_token, "bi", "viewer", "admin")
                revoked_id, old_token = await thread(a.create_token, "old", "viewer", "admin")
                await eventually_async(lambda: view.token_identity(old_token), what="token")
                await thread(a.revoke_token, revoked_id)
                gone = ("session", token_digest(old_token))
                await eventually_async(lambda: gone in revoked, what="revocation on A")
                assert view.session_identity(session) is not None
                before = list(revoked)
            # A is gone (lease released); B takes over and merges what Redis holds.
            async with active_node(redis_server.url, b, "ingest-b") as pub_b:
                assert pub_b.seeds == 1
                assert b.verify_login("op2", PASSWORD) is not None
                assert b.verify_login("admin", "a new password 2") is not None
                assert b.session_identity(session) is not None
                assert b.session_identity(stale) is None  # ended elsewhere: not revived
                assert b.token_identity(token) is not None
                assert [t["id"] for t in b.list_tokens() if t["name"] == "bi"] == [tid]
                assert b.token_identity(old_token) is None  # still revoked
                assert "local1" in {u["name"] for u in b.list_users()}
                # The gateway reloads under B's seed; the session goes on, nothing revoked.
                await eventually_async(lambda: view.status()["seed"] == pub_b._seed)
                assert view.session_identity(session) is not None
                assert view.session_identity(token_digest("nothing")) is None
                assert revoked == before
                # B's own changes flow on.
                await thread(b.delete_session, session)
                await eventually_async(lambda: ("session", token_digest(session)) in revoked)

    run(main)


class _Holder:
    def __init__(self, url: str) -> None:
        self._view = RedisAuthView(url, KEYS, node="gw-late", block=0.5)
        self.revoked: list[tuple[str, str]] = []
        self._view.on_revoked(lambda kind, key: self.revoked.append((kind, key)))
        self._started = False

    async def view(self) -> tuple[RedisAuthView, list[tuple[str, str]]]:
        if not self._started:
            assert await self._view.start(wait=5.0)
            self._started = True
        return self._view, self.revoked


@asynccontextmanager
async def gateway_view_after_seed(url: str) -> AsyncIterator[_Holder]:
    """A view started once the first node has seeded (so it never starts unseeded)."""
    holder = _Holder(url)
    try:
        yield holder
    finally:
        await holder._view.stop()


def test_redis_holds_no_secret_but_digests_and_sealed_password_hashes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = AuthStore(tmp_path / "auth.sqlite")
    store.add_user("admin", "admin", PASSWORD)

    async def main() -> None:
        async with active_node(redis_server.url, store, "ingest-a") as publisher:
            session, _ = await thread(store.create_session, "admin", 8)
            ended, _ = await thread(store.create_session, "admin", 8)
            await thread(store.delete_session, ended)
            _, token = await thread(store.create_token, "bi", "viewer", "admin")
            assert await publisher.flush()
            redis = connect(redis_server.url)
            dump = b""
            async for key in redis.scan_iter(match=f"{KEYS.prefix}:auth*"):
                kind = await redis.type(key)
                if kind == b"hash":
                    for field, value in (await redis.hgetall(key)).items():
                        dump += b"\n" + key + b" " + field + b" " + value
                elif kind == b"stream":
                    entries: Any = await redis.xrange(key)
                    for _, fields in entries:
                        dump += b"\n" + key + b" " + b" ".join(fields.values())
                else:
                    dump += b"\n" + key + b" " + (await redis.get(key) or b"")
            await redis.aclose()
            for secret in (session, ended, token, PASSWORD):
                assert secret.encode() not in dump
            assert token_digest(session).encode() in dump  # what is there instead
            hashed = store.password_hash("admin")
            assert hashed is not None
            assert hashed.encode() not in dump  # nowhere, not even in the users hash
            assert b"$argon2" not in dump
            # Only sealed, for the ingest nodes: their Redis password unseals it.
            redis = connect(redis_server.url)
            sealed = await redis.hget(f"{KEYS.prefix}:auth:secrets", "admin")
            await redis.aclose()
            sealer = Sealer.for_url(redis_server.url, KEYS.prefix)
            assert sealed is not None and sealer is not None
            assert sealer.unseal("admin", sealed) == hashed
            assert sealer.unseal("someone-else", sealed) is None  # bound to its user
            other = Sealer.for_url(redis_server.url_for("tools", prefix=KEYS.prefix), KEYS.prefix)
            assert other is not None and other.unseal("admin", sealed) is None

    run(main)


def test_redis_losing_its_data_keeps_the_replica_then_reseeds(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = AuthStore(tmp_path / "auth.sqlite")
    store.add_user("op1", "operator", PASSWORD)

    async def main() -> None:
        async with (
            active_node(redis_server.url, store, "ingest-a") as publisher,
            gateway_view(redis_server.url) as (view, revoked),
        ):
            known, _ = await thread(store.create_session, "op1", 8)
            await eventually_async(lambda: view.session_identity(known), what="known")
            seed = publisher._seed
            await thread(redis_server.restart)  # no persistence: every key is gone
            await eventually_async(lambda: not view.live, what="view stale")
            fresh, _ = await thread(store.create_session, "op1", 8)
            # Stale: known credentials keep working, unknown ones are "try again".
            assert view.session_identity(known) is not None
            with pytest.raises(IdentityUnavailable):
                view.session_identity(fresh)
            # The node's lease renewal takes the lease again; the publisher re-seeds.
            await eventually_async(lambda: publisher._seed != seed, timeout=15)
            await eventually_async(lambda: view.live and view.session_identity(fresh))
            assert view.live and revoked == []

    run(main)


def test_gateway_audit_records_are_written_once_by_the_ingest(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    store = AuthStore(tmp_path / "auth.sqlite")

    async def apply(command: Command) -> dict[str, Any]:
        raw = command.body["record"]
        user, role, address, action, target, result, detail = (
            str(raw[f]) for f in ("user", "role", "address", "action", "target", "result", "detail")
        )
        record = AuditRecord(
            user, role, address, action, target, result, detail, at=parse_time(raw["at"])
        )
        await thread(store.audit, record, command.request_id)
        return {"ok": True}

    async def main() -> None:
        redis = connect(redis_server.url)
        sender = CommandSender(connect(redis_server.url), KEYS, "gw-1")
        auditor = BusAuditor(SenderChannel(sender, timeout=scaled(1.0)))
        record = AuditRecord("op1", "operator", "203.0.113.9", "ack", "17", "requested")
        # No active ingest node answers: the action is refused (fail closed).
        with pytest.raises(AuditUnavailable):
            await auditor.action_record(record)
        lease = Lease(redis, KEYS, "ingest-a")
        assert await lease.try_acquire()
        holding = asyncio.create_task(lease.run())  # renewed, as an ingest node renews it
        consumer = CommandConsumer(redis, KEYS, lease, apply=apply, lookup=lambda _r: None)
        task = asyncio.create_task(consumer.run())
        await auditor.action_record(record)
        refusal = AuditRecord("-", "-", "198.51.100.7", "ws_connect", "/ws", "unauthenticated")
        await auditor.record(refusal)
        await auditor.record(refusal)  # folded: not sent again within the window
        rows = await eventually_async(
            lambda: len(audit_query(store.path)) >= 3 and audit_query(store.path)
        )
        # The unanswered first request is applied once when the consumer reads it, the
        # second once: each request id writes one row, with the client's address.
        assert sorted((r.action, r.address) for r in rows) == [
            ("ack", "203.0.113.9"),
            ("ack", "203.0.113.9"),
            ("ws_connect", "198.51.100.7"),
        ]
        # A redelivery of the same request id writes nothing.
        again = Command("dup", "audit", BusAuditor.body(record), "gw-1", "0-1")
        await apply(again)
        await apply(again)
        assert len(audit_query(store.path)) == 4
        task.cancel()
        holding.cancel()
        await asyncio.gather(task, holding, return_exceptions=True)
        await sender.redis.aclose()
        await redis.aclose()

    run(main)


def test_logins_wait_for_the_takeover_merge(redis_server: RedisServer, tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.sqlite")

    async def main() -> None:
        redis = connect(redis_server.url)
        lease = Lease(redis, KEYS, "ingest-a")
        publisher = AuthPublisher(redis, KEYS, lease, store)
        assert not publisher.ready()  # not active: no login may count on its rows
        await publisher.activate(settle=0.5)  # no lease yet: cannot take over
        assert not publisher.ready()
        assert await lease.try_acquire()
        assert await publisher.flush(5.0)
        assert publisher.ready()
        await publisher.stand_by()
        assert not publisher.ready()
        await redis.aclose()

    run(main)


def test_a_stale_replica_answers_try_again_and_keeps_the_cookie(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Over HTTP through AuthMiddleware: an unknown session while the replica cannot tell is
    refused without clearing the browser's cookie; once live, an unknown one clears it."""
    store = AuthStore(tmp_path / "auth.sqlite")
    store.add_user("op1", "operator", PASSWORD)
    config = load_config(None)

    async def me(request: Request) -> Response:
        return JSONResponse({"name": request.state.user.name})

    async def ask(view: RedisAuthView, cookie: str) -> httpx.Response:
        app = Starlette(
            routes=[Route("/api/me", requires("viewer", me))],
            middleware=[Middleware(AuthMiddleware, store=view, config=config)],
        )
        app.state.config = config
        app.state.auditor = Auditor(store)
        transport = httpx.ASGITransport(app=app)
        cookies = {COOKIE: cookie}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", cookies=cookies
        ) as c:
            return await c.get("/api/me")

    async def main() -> None:
        unseeded = RedisAuthView(redis_server.url, KEYS, node="gw-early", block=0.2)
        assert not await unseeded.start(wait=0.3)  # no ingest node has seeded yet
        secret, _ = await thread(store.create_session, "op1", 8)
        early = await ask(unseeded, secret)
        assert early.status_code == 401 and "try again" in early.json()["message"]
        assert "set-cookie" not in early.headers
        async with active_node(redis_server.url, store, "ingest-a"):
            await eventually_async(lambda: unseeded.live, what="view live")
            ok = await ask(unseeded, secret)
            assert ok.status_code == 200 and ok.json() == {"name": "op1"}
            wrong = await ask(unseeded, "y" * 43)
            assert wrong.status_code == 401 and COOKIE in wrong.headers["set-cookie"]
        await unseeded.stop()

    run(main)


def test_a_redis_that_lost_the_newest_writes_is_seeded_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """As after a restart from an AOF without its last second: the seed key survived, the
    newest change did not. The publisher notices (the entry number) and seeds again."""
    store = AuthStore(tmp_path / "auth.sqlite")
    store.add_user("op1", "operator", PASSWORD)
    keys = AuthKeys.of(KEYS)

    async def main() -> None:
        async with (
            active_node(redis_server.url, store, "ingest-a") as publisher,
            gateway_view(redis_server.url) as (view, revoked),
        ):
            secret, _ = await thread(store.create_session, "op1", 8)
            assert await publisher.flush()
            seeds = publisher.seeds
            redis = connect(redis_server.url)
            async with redis.pipeline(transaction=True) as pipe:  # the lost tail
                pipe.hdel(keys.hash("sessions"), token_digest(secret))
                pipe.decr(keys.seq)
                await pipe.execute()
            await redis.aclose()
            await eventually_async(lambda: publisher.seeds > seeds, what="seeded again")
            await eventually_async(lambda: view.status()["seed"] == publisher._seed)
            assert view.session_identity(secret) is not None
            assert revoked == []

    run(main)


def test_the_audit_trail_follows_the_active_node(redis_server: RedisServer, tmp_path: Path) -> None:
    """Each node's file ends up with every record, each once: A's records are in B's file
    after B takes over, and B's (also one written long ago, never published) in A's after A
    takes over again."""
    a = AuthStore(tmp_path / "a" / "auth.sqlite")
    b = AuthStore(tmp_path / "b" / "auth.sqlite")
    b.audit(AuditRecord("admin", "admin", "10.0.0.9", "user_add", "op9", "ok"))  # long ago

    def record(n: int) -> AuditRecord:
        return AuditRecord("op1", "operator", f"203.0.113.{n}", "ack", str(n), "ok")

    def trail(store: AuthStore) -> list[tuple[str, str]]:
        return sorted((r.target, r.address) for r in audit_query(store.path, limit=1000))

    async def main() -> None:
        async with active_node(redis_server.url, a, "ingest-a") as pub_a:
            for n in (1, 2, 3):
                await thread(a.audit, record(n))
            assert await pub_a.flush()
            assert pub_a.audit.shipped == 3
        async with active_node(redis_server.url, b, "ingest-b") as pub_b:
            assert await pub_b.flush()
            assert pub_b.audit.copied == 3 and pub_b.audit.shipped == 1  # b's old one
            await thread(b.audit, record(4))
            assert await pub_b.flush()
        assert trail(b) == [("1", "203.0.113.1"), ("2", "203.0.113.2"), ("3", "203.0.113.3"),
                            ("4", "203.0.113.4"), ("op9", "10.0.0.9")]  # fmt: skip
        for _ in range(2):  # A takes over again, twice: copies B's two, then nothing
            async with active_node(redis_server.url, a, "ingest-a") as pub_a:
                assert await pub_a.flush()
                assert pub_a.audit.shipped == 0
            assert trail(a) == trail(b)

    run(main)
