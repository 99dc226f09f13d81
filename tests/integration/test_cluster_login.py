"""One login for all gateways, end to end: real redis-server, two ingest nodes and two gateways
as `scada serve --role ...` processes (tests/integration/cluster_procs.py).

A login through the active ingest node gives a cookie that both gateways' /ws accept; a
logout closes the sockets on both gateways (well within 5 s); the audit log has one row for
it, with the client's address (X-Forwarded-For from a trusted proxy), and a refusal seen by a
gateway is written once by the ingest node with the address the gateway saw; after a kill -9
of the active ingest node the standby has every user and session (the cookie still works)
and the audit records the old node wrote.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scada.auth.auditlog import audit_query
from scada.auth.store import AuthStore
from tests.conftest import eventually, scaled
from tests.integration.cluster_procs import Cluster, RoleProcess, require_roles

PASSWORD = "operator password 1"
CLIENT = "203.0.113.5"  # the browser, as the trusted proxy (127.0.0.1) names it
OVERRIDES = {"auth": {"trusted_proxies": ["127.0.0.1/32"], "allow_anonymous": False}}


def login(ingest: RoleProcess, user: str = "op1") -> str:
    r = httpx.post(
        f"{ingest.http}/api/login",
        json={"username": user, "password": PASSWORD},
        headers={"X-Forwarded-For": CLIENT},
    )
    assert r.status_code == 200, r.text
    return str(r.cookies["scada_session"])


async def open_ws(gateway: RoleProcess, cookie: str) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{gateway.port}/ws",
        additional_headers={"Cookie": f"scada_session={cookie}", "X-Forwarded-For": CLIENT},
    )
    hello = orjson.loads(await ws.recv())
    assert hello["type"] == "connected" and hello["data"]["role"] == "operator", hello
    return ws


async def closed_within(
    ws: ClientConnection, timeout: float, started: float
) -> tuple[int | None, float]:
    """(close code, seconds from `started` to the close) of a socket that is to be closed."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        return code, time.monotonic() - started


async def refused(gateway: RoleProcess, cookie: str) -> int:
    try:
        ws = await connect(
            f"ws://127.0.0.1:{gateway.port}/ws",
            additional_headers={"Cookie": f"scada_session={cookie}", "X-Forwarded-For": CLIENT},
        )
    except InvalidStatus as err:
        return int(err.response.status_code)
    await ws.close()
    return 101


def audit_rows(ingest: RoleProcess, action: str) -> list[Any]:
    return [r for r in audit_query(ingest.data_dir / "auth.sqlite") if r.action == action]


def test_one_login_for_all_gateways(tmp_path: Path) -> None:
    require_roles()
    cluster = Cluster(tmp_path, ingests=2, gateways=2, overrides=OVERRIDES)
    first = cluster.ingests[0]
    seeded = AuthStore(first.data_dir / "auth.sqlite")
    seeded.add_user("op1", "operator", PASSWORD)
    seeded.close()
    try:
        cluster.start()
        active = cluster.active()
        assert active is first
        gw1, gw2 = cluster.gateways

        async def sockets() -> None:
            cookie = login(active)
            one, two = await open_ws(gw1, cookie), await open_ws(gw2, cookie)
            metrics = httpx.get(f"{gw1.http}/metrics", cookies={"scada_session": cookie}).text
            assert "scada_auth_replica_live 1.0" in metrics  # what an operator can watch
            assert 'scada_auth_rows{kind="sessions"} 1.0' in metrics
            started = time.monotonic()
            r = httpx.post(
                f"{active.http}/api/logout",
                cookies={"scada_session": cookie},
                headers={"X-Forwarded-For": CLIENT},
            )
            assert r.status_code == 200
            ends = await asyncio.gather(
                closed_within(one, scaled(5), started), closed_within(two, scaled(5), started)
            )
            print(f"logout → sockets closed on both gateways: {[f'{s:.3f} s' for _, s in ends]}")
            assert [code for code, _ in ends] == [1008, 1008]
            # The ended session is refused at a gateway, which has the ingest audit it.
            assert await refused(gw2, cookie) == 401

        asyncio.run(sockets())
        logouts = audit_rows(active, "logout")
        assert [(r.user, r.address, r.result) for r in logouts] == [("op1", CLIENT, "ok")]
        assert [r.address for r in audit_rows(active, "login")] == [CLIENT]
        refusal = eventually(lambda: audit_rows(active, "ws_connect"))
        assert [(r.address, r.result) for r in refusal] == [(CLIENT, "unauthenticated")]
        standby = cluster.standby()
        assert audit_rows(standby, "ws_connect") == []  # written once, by the active node

        # Failover: the standby takes over with every user and session of the old node.
        cookie = login(active)
        active.kill()
        new = cluster.active(timeout=15)
        assert new is standby
        me = httpx.get(f"{new.http}/api/me", cookies={"scada_session": cookie})
        assert me.status_code == 200 and me.json()["name"] == "op1"
        cluster.wait_gateways_live(timeout=15)

        async def still_logged_in() -> None:
            for gateway in (gw1, gw2):
                ws = await open_ws(gateway, cookie)
                await ws.close()

        asyncio.run(still_logged_in())
        # The old node's audit trail came along into the new active node's file.
        assert [(r.user, r.address) for r in audit_rows(new, "logout")] == [("op1", CLIENT)]
        assert [r.address for r in audit_rows(new, "login")] == [CLIENT, CLIENT]
        assert login(new)  # the user and its password hash came along too
    finally:
        cluster.stop()
