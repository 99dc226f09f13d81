"""The cluster's first user: created once, by the active ingest node, valid on every node.

Real redis-server and two real `scada serve --role ingest` processes: exactly one
initial-admin-password file exists across both data dirs (the standby made none), its
password logs in at the active node and, after kill -9 of it, at the new active node; the
killed node, started again, makes none either. With real AuthStore files and AuthPublishers
(the ingest side of the auth rows): a node whose own store has an admin from running alone
seeds a fresh cluster with it (its file stays valid, no second admin), and a node whose admin
the cluster's rows replace loses its stale password file; `scada cluster`'s hint
(cluster_password_file) names the file whose password the cluster holds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from scada.auth.first_admin import PASSWORD_FILE, ensure_admin, read_password_file
from scada.auth.store import AuthStore
from scada.tools.cluster.firstlogin import cluster_password_file
from tests.conftest import eventually
from tests.integration.cluster_procs import Cluster, RoleProcess, require_roles
from tests.integration.cluster_redis import RedisServer, redis_server
from tests.integration.test_cluster_auth import KEYS, active_node

redis_server = redis_server  # the fixture, shared by the cluster tests
PREFIX = KEYS.prefix


def password_files(cluster: Cluster) -> list[Path]:
    return [
        p.data_dir / PASSWORD_FILE for p in cluster.ingests if (p.data_dir / PASSWORD_FILE).exists()
    ]


def logs_in(node: RoleProcess, user: str, password: str) -> bool:
    try:
        r = httpx.post(
            f"{node.http}/api/login", json={"username": user, "password": password}, timeout=5
        )
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def test_one_admin_for_the_cluster_made_by_the_active_node(tmp_path: Path) -> None:
    require_roles()
    cluster = Cluster(tmp_path, ingests=2, gateways=0)
    try:
        cluster.start()  # ingest-a active first, then ingest-b started (standing by)
        active, standby = cluster.active(), cluster.standby()
        files = eventually(lambda: password_files(cluster))
        assert files == [active.data_dir / PASSWORD_FILE], cluster.logs()
        found = read_password_file(files[0])
        assert found is not None and found[0] == "admin"
        user, password = found
        assert eventually(lambda: logs_in(active, user, password))
        # The hint of `scada cluster` names this file (the cluster's rows hold its password).
        candidates = [p.data_dir / PASSWORD_FILE for p in cluster.ingests]
        ingest_url = cluster.redis.url_for("ingest", prefix="scada")  # the nodes' own user
        assert cluster_password_file(ingest_url, "scada", candidates, timeout=10) == files[0]

        active.kill()  # kill -9
        new = cluster.active(timeout=15)
        assert new is standby
        assert eventually(lambda: logs_in(new, user, password), timeout=15)
        assert password_files(cluster) == files  # the new active node made none
        active.restart()  # the killed node rejoins as standby: none either
        assert cluster.active() is new
        assert password_files(cluster) == files
        assert logs_in(new, user, password)
        assert not logs_in(new, user, password + "x")
    finally:
        cluster.stop()


def alone(path: Path) -> tuple[AuthStore, Path]:
    """A node's store after it ran alone once: its own admin, its password file."""
    store = AuthStore(path / "auth.sqlite")
    written = ensure_admin(store, interactive=False)
    assert written == path / PASSWORD_FILE
    return store, written


def valid(store: AuthStore, file: Path) -> bool:
    found = read_password_file(file)
    return found is not None and store.verify_login(*found) is not None


def test_a_node_with_its_own_admin_joining(redis_server: RedisServer, tmp_path: Path) -> None:
    url = redis_server.url
    b, b_file = alone(tmp_path / "b")  # ran alone first
    a = AuthStore(tmp_path / "a" / "auth.sqlite")  # a fresh node
    a_file = tmp_path / "a" / PASSWORD_FILE
    candidates = [a_file, b_file]

    async def main() -> None:
        # B first: a cluster without users takes B's admin; B's file stays the valid one.
        async with active_node(url, b, "ingest-b", first_admin=True):
            pass
        assert [u["name"] for u in b.list_users()] == ["admin"] and valid(b, b_file)
        # A takes over: it gets B's admin, creates none, writes no file.
        async with active_node(url, a, "ingest-a", first_admin=True):
            pass
        assert not a_file.exists() and valid(a, b_file)
        assert (
            await asyncio.to_thread(cluster_password_file, url, PREFIX, candidates, timeout=5)
            == b_file
        )

    asyncio.run(main())


def test_a_stale_password_file_is_removed_at_takeover(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url
    a = AuthStore(tmp_path / "a" / "auth.sqlite")
    a_file = tmp_path / "a" / PASSWORD_FILE
    b, b_file = alone(tmp_path / "b")  # its own admin from before it joined

    async def main() -> None:
        # A first, on a cluster without users: A creates the cluster's admin and its file.
        async with active_node(url, a, "ingest-a", first_admin=True):
            pass
        assert a_file.exists() and valid(a, a_file)
        # B takes over: the cluster's admin wins over B's, B's file no longer works: removed.
        async with active_node(url, b, "ingest-b", first_admin=True):
            pass
        assert not b_file.exists()
        assert valid(b, a_file)
        assert (
            await asyncio.to_thread(cluster_password_file, url, PREFIX, [b_file, a_file], timeout=5)
            == a_file
        )

    asyncio.run(main())
