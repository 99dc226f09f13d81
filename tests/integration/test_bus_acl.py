"""Redis behind credentials and least privilege (scada.bus.acl), against a real redis-server:
a connection without credentials is refused; a gateway's ACL user reads what a gateway needs
and nothing else (no password hash in any key it can read), cannot publish frames or alarm
events and cannot take the lease; the bus works over TLS (`rediss://`) with a CA made here.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

from scada.auth.first_admin import PASSWORD_FILE, read_password_file
from scada.auth.store import AuthStore
from scada.bus.acl import GATEWAY_READS
from scada.bus.commandstream import CommandSender
from scada.bus.keys import BusKeys
from scada.bus.reader import AlarmEntries, BusReader
from tests.conftest import eventually
from tests.integration.cluster_procs import PREFIX, running_cluster
from tests.integration.cluster_redis import RedisServer, connect, redis_server
from tests.integration.test_cluster_bus import commit, make_journal, publishing

redis_server = redis_server  # the fixture, shared by the cluster tests
KEYS = BusKeys(PREFIX)


def test_a_connection_without_credentials_or_with_wrong_ones_is_refused(
    redis_server: RedisServer,
) -> None:
    with pytest.raises(AuthenticationError), Redis.from_url(redis_server.anonymous_url) as r:
        r.get(KEYS.lease)
    # On the wire: nothing but NOAUTH without credentials, and nobody logs in as `default`.
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as raw:
        raw.sendall(b"GET scada:lease\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH")
        raw.sendall(b"AUTH default \r\n")
        assert raw.recv(200).startswith(b"-WRONGPASS")
    wrong = redis_server.url.replace("@", "x@", 1)  # the right user, a wrong password
    with pytest.raises(AuthenticationError), Redis.from_url(wrong, socket_timeout=5) as r:
        r.ping()
    with Redis.from_url(redis_server.url, socket_timeout=5) as ingest:
        assert ingest.ping()


def readable(client: Redis, key: bytes, kind: bytes) -> bytes | None:
    """Everything `client` can read of `key` (of type `kind`), or None if it may not."""
    try:
        if kind == b"string":
            value = client.get(key)
            return value if isinstance(value, bytes) else b""
        if kind == b"hash":
            raw: Any = client.hgetall(key)
            return b" ".join(k + b"=" + v for k, v in raw.items())
        if kind == b"stream":
            entries: Any = client.xrange(key)
            return b" ".join(v for _, fields in entries for kv in fields.items() for v in kv)
    except NoPermissionError:
        return None
    raise AssertionError(f"a key of type {kind!r} on the bus: read it here too")


def test_a_gateway_reads_no_password_hash_and_cannot_publish_or_take_the_lease(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, ingests=1, gateways=1) as cluster:
        active = cluster.active()
        gateway_url = cluster.redis.url_for("gateway", cluster.gateways[0].node, PREFIX)
        # The cluster's first admin logs in (a session row), and makes an API token.
        found = eventually(lambda: read_password_file(active.data_dir / PASSWORD_FILE))
        user, password = found
        with httpx.Client(base_url=active.http, timeout=10) as http:
            r = http.post("/api/login", json={"username": user, "password": password})
            assert r.status_code == 200, r.text
            r = http.post("/api/tokens", json={"name": "bi", "role": "viewer"})
            assert r.status_code in (200, 201), r.text
        store = AuthStore(active.data_dir / "auth.sqlite")
        hashed = store.password_hash(user)
        store.close()
        assert hashed is not None and hashed.startswith("$argon2")
        with Redis.from_url(cluster.redis.admin_url, socket_timeout=5) as admin:
            # Until the token and the session are in Redis (the publisher's next pass).
            eventually(
                lambda: (
                    admin.hlen(f"{PREFIX}:auth:tokens") and admin.hlen(f"{PREFIX}:auth:sessions")
                )
            )
            keys = sorted(admin.scan_iter(count=1000))
            kinds = {key: admin.type(key) for key in keys}
        assert f"{PREFIX}:auth:secrets".encode() in kinds  # the sealed hashes are there

        with Redis.from_url(gateway_url, socket_timeout=5) as gateway:
            seen = {key: readable(gateway, key, kind) for key, kind in kinds.items()}
            read = {key for key, value in seen.items() if value is not None}
            everything = b" ".join(v for v in seen.values() if v)
            # What a gateway needs, it reads; no hash (nor the sealed one) in any of it.
            needs = {f"{PREFIX}:{suffix}".encode() for suffix in GATEWAY_READS}
            assert {KEYS.frames.encode(), KEYS.epoch.encode()} <= read
            assert {key for key in kinds if key in needs} <= read
            assert f"{PREFIX}:auth:users".encode() in read
            assert hashed.encode() not in everything and b"$argon2" not in everything
            assert f"{PREFIX}:auth:secrets".encode() not in read
            own = KEYS.commands(cluster.gateways[0].node)
            assert KEYS.lease.encode() not in read and own.encode() not in read
            # It appends to its own command stream (a probe that is no command: the active
            # node drops it and goes on); it cannot publish frames or alarm events, write
            # another gateway's commands or replies, nor touch the lease.
            assert gateway.xadd(own, {"k": "probe"})
            others = (KEYS.commands("gateway-2"), f"{PREFIX}:commands", KEYS.replies("gateway-2"))
            for stream in (KEYS.frames, KEYS.alarms, *others):
                with pytest.raises(NoPermissionError):
                    gateway.xadd(stream, {"e": b"forged"})
            with pytest.raises(NoPermissionError):
                gateway.set(KEYS.lease, "99:gateway-1", nx=True, px=60_000)
            with pytest.raises(NoPermissionError):
                gateway.delete(KEYS.lease)
            with pytest.raises(NoPermissionError):  # no Lua: no way round the key rules
                gateway.eval("return redis.call('DEL', KEYS[1])", 1, KEYS.lease)
            with pytest.raises(NoPermissionError):
                gateway.hset(f"{PREFIX}:auth:users", "mallory", b"{}")
            with pytest.raises(NoPermissionError):
                gateway.flushall()
        # The active node still holds the lease it had, and still answers commands.
        assert cluster.active() is active and active.cluster_state()["token"] == 1
        eventually(lambda: "not a command, dropped" in active.log())

        async def report() -> Any:
            sender = CommandSender(connect(gateway_url), KEYS, cluster.gateways[0].node)
            claim = {"user": "-", "role": "-", "address": "192.0.2.77", "action": "ws_connect",
                     "target": "/ws", "result": "forbidden"}  # fmt: skip
            try:
                return await sender.request("audit", {"record": claim}, timeout=20)
            finally:
                await sender.redis.aclose()

        assert asyncio.run(report()).result == {"ok": True}

        tools = cluster.redis.url_for("tools", prefix=PREFIX)
        with Redis.from_url(tools, socket_timeout=5) as cli:
            assert cli.get(KEYS.lease) is not None  # the CLI sees who is active
            with pytest.raises(NoPermissionError):
                cli.hgetall(f"{PREFIX}:auth:secrets")
            with pytest.raises(NoPermissionError):
                cli.set(KEYS.lease, "x")


def test_the_bus_over_tls_with_a_ca_made_here(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", tls=True).start()
    try:
        assert server.tls is not None
        gateway_url = server.url_for("gateway", "gateway-1", "test")
        assert gateway_url.startswith("rediss://")
        # Plain Redis protocol on the TLS port: no answer a client could use.
        with pytest.raises((ConnectionError, OSError)):
            Redis(host="127.0.0.1", port=server.port, socket_timeout=3).ping()
        # TLS without the CA: the server's certificate is not trusted.
        untrusted = gateway_url.split("?", 1)[0]
        with pytest.raises(ConnectionError) as refused:
            Redis.from_url(untrusted, socket_timeout=3).ping()
        assert isinstance(refused.value.__context__, ssl.SSLError) or "certificate" in str(
            refused.value
        )
        journal = make_journal(tmp_path / "journal.db")

        async def main() -> list[int]:
            # An ingest node publishes over rediss://; a gateway's ACL user reads it.
            redis, _, outbox, epoch = await publishing(server.url, journal)
            reader = BusReader(gateway_url, BusKeys("test"), cursor=0, epoch=epoch, frames=False)
            stream = reader.events()
            assert isinstance(stream, AsyncGenerator)  # closed with aclose() below
            commit(journal, 20)
            await outbox.flush()
            got: list[int] = []
            while got[-1:] != [20]:
                event = await asyncio.wait_for(anext(stream), 15)
                if isinstance(event, AlarmEntries):
                    got += [i for i, _ in event.entries]
            await stream.aclose()
            await redis.aclose()
            gateway = connect(gateway_url)
            try:
                with pytest.raises(NoPermissionError):
                    await gateway.xadd("test:alarms", {"e": b"forged"})
            finally:
                await gateway.aclose()
            return got

        assert asyncio.run(main()) == list(range(1, 21))
    finally:
        server.kill()
