"""Users, roles, audit and the hardened WebSocket on a running server."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import ServerProcess, scaled
from tests.integration.test_websocket import close_code, production_frames, recv, until

ADMIN_LINE = re.compile(r"Created the first user: admin / (\S+)")


def cli(server: ServerProcess, *args: str, stdin: str = "") -> str:
    return server.cli(*args, stdin=stdin)


def token(server: ServerProcess, role: str, name: str = "t") -> str:
    return server.token(role, name)


def admin_password(server: ServerProcess) -> str:
    """Not on a terminal, the first start writes the password to a 0600 file, not the log."""
    path = server.workdir / "data" / "initial-admin-password"
    assert path.stat().st_mode & 0o777 == 0o600
    # The password alone, so the file's whole content can be pasted into the login form.
    content = path.read_text()
    password = content.strip()
    assert content == f"{password}\n" and len(content.split()) == 1
    assert password not in server.log()
    assert re.search(r"its password is in \S+initial-admin-password \(mode 0600", server.log())
    assert not ADMIN_LINE.search(server.log())
    return password


def login(server: ServerProcess, user: str, password: str) -> str:
    r = httpx.post(f"{server.http}/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return str(r.cookies["scada_session"])


def audit(server: ServerProcess, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.http}/api/audit",
        params=params,
        headers={"Authorization": f"Bearer {token(server, 'admin', 'auditor')}"},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def test_first_start_creates_admin_once_and_login_works(server_factory: Any) -> None:
    server = server_factory()
    password = admin_password(server)
    assert "its password is in" in server.log()  # the log says where, never what
    server.stop()
    server.start()
    assert server.log().count("its password is in") == 1  # not again on the second start
    cookie = login(server, "admin", password)
    me = httpx.get(f"{server.http}/api/me", cookies={"scada_session": cookie}).json()
    assert me["name"] == "admin" and me["role"] == "admin"
    bad = httpx.post(f"{server.http}/api/login", json={"username": "admin", "password": "nope"})
    assert bad.status_code == 401
    records = audit(server, action="login")
    assert [r["result"] for r in records[:2]] == ["failed", "ok"]
    # A password guesser is throttled by the service itself, not only by a proxy.
    statuses = [
        httpx.post(
            f"{server.http}/api/login", json={"username": "admin", "password": f"guess{i}"}
        ).status_code
        for i in range(6)
    ]
    assert statuses[:4] == [401] * 4 and statuses[-1] == 429
    assert any(r["result"] == "throttled" for r in audit(server, action="login"))
    assert password not in server.log().replace(f"admin / {password}", "")


def test_handshake_refuses_missing_or_bad_credentials(server_factory: Any) -> None:
    server = server_factory({"auth": {"allow_anonymous": False}})

    async def status(**kw: Any) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.ws, **kw):
                pass
        return int(info.value.response.status_code)

    assert asyncio.run(status()) == 401
    assert asyncio.run(status(additional_headers={"Authorization": "Bearer nope"})) == 401
    assert httpx.get(f"{server.http}/api/lines").status_code == 401
    good = token(server, "viewer")

    async def ok() -> str:
        async with connect(server.ws, additional_headers={"Authorization": f"Bearer {good}"}) as ws:
            return str((await recv(ws))["data"]["role"])

    assert asyncio.run(ok()) == "viewer"


def test_viewer_ack_refused_and_audited_operator_ack_records_user(server_factory: Any) -> None:
    server = server_factory({"auth": {"anonymous_role": "viewer"}})
    cli(
        server,
        "users",
        "add",
        "olga",
        "--role",
        "operator",
        "--password-stdin",
        stdin="correct horse\n",
    )
    cookie = login(server, "olga", "correct horse")
    engineer = token(server, "engineer", "eng")

    async def main() -> None:
        headers = {"Cookie": f"scada_session={cookie}"}
        async with (
            connect(server.ws) as viewer,
            connect(server.ws, additional_headers=headers) as op,
        ):
            assert (await recv(viewer))["data"]["role"] == "viewer"
            hello = (await recv(op))["data"]
            assert hello["user"] == "olga" and hello["role"] == "operator"
            r = httpx.post(
                f"{server.http}/api/simulator/faults",
                headers={"Authorization": f"Bearer {engineer}"},
                json={"line": "2", "kind": "diameter_drift", "rate": 0.04},
            )
            assert r.status_code == 201
            raised = await until(
                op,
                lambda f: (
                    f["type"] == "alarm"
                    and f["data"]["event"] == "raised"
                    and f["data"]["alarm"].startswith("line2.diameter")
                ),
            )
            occ = raised["data"]["id"]
            await viewer.send(json.dumps({"type": "ack", "id": 1, "data": {"alarm_id": occ}}))
            refused = await until(viewer, lambda f: f["type"] == "reply")
            assert refused["data"]["ok"] is False and refused["data"]["error"] == "forbidden"
            await op.send(
                json.dumps({"type": "ack", "id": 2, "data": {"alarm_id": occ, "comment": "on it"}})
            )
            acked = await until(
                op, lambda f: f["type"] == "alarm" and f["data"]["event"] == "acknowledged"
            )
            assert acked["data"]["acked_by"] == "olga"

    asyncio.run(main())
    records = audit(server)
    by_action = {(r["action"], r["result"], r["user"]) for r in records}
    assert any(
        r["action"] == "ack" and r["result"] == "forbidden" and r["role"] == "viewer"
        for r in records
    )
    assert ("ack", "ok", "olga") in by_action
    assert ("fault_inject", "ok", "eng") in by_action
    # A viewer's REST attempt at an engineer action is refused and on record too.
    r = httpx.post(f"{server.http}/api/simulator/faults", json={"line": "1", "kind": "line_stop"})
    assert r.status_code == 403
    assert any(x["action"] == "fault_inject" and x["result"] == "forbidden" for x in audit(server))


def test_cross_site_origins_refused_even_with_a_valid_cookie(server_factory: Any) -> None:
    server = server_factory()
    cookie = login(server, "admin", admin_password(server))
    own = f"http://127.0.0.1:{server.port}"

    async def status(origin: str) -> int:
        headers = {"Cookie": f"scada_session={cookie}"}
        try:
            async with connect(server.ws, origin=origin, additional_headers=headers) as ws:  # type: ignore[arg-type]
                await recv(ws)
                return 101
        except InvalidStatus as err:
            return int(err.response.status_code)

    assert asyncio.run(status(own)) == 101
    for evil in (
        "https://evil.example",
        f"http://127.0.0.1:{server.port}.evil.com",
        "http://127.0.0.1.evil.com",
        f"https://127.0.0.1:{server.port}",
        "null",
    ):
        assert asyncio.run(status(evil)) == 403, evil


def test_lookalike_of_an_allowed_origin_is_refused(server_factory: Any) -> None:
    server = server_factory({"server": {"allowed_origins": ["https://plant.example"]}})

    async def status(origin: str) -> int:
        try:
            async with connect(server.ws, origin=origin) as ws:  # type: ignore[arg-type]
                await recv(ws)
                return 101
        except InvalidStatus as err:
            return int(err.response.status_code)

    assert asyncio.run(status("https://plant.example")) == 101
    assert asyncio.run(status("https://plant.example.evil.com")) == 403
    assert asyncio.run(status("https://evilplant.example")) == 403


def test_oversized_message_closes_with_1009(server: ServerProcess) -> None:
    async def main() -> int:
        async with connect(server.ws, max_size=None) as ws:
            await recv(ws)
            await ws.send("x" * (65_536 * 4 + 1))
            return await close_code(ws)

    assert asyncio.run(main()) == 1009


def test_message_flood_is_cut_with_1008_while_others_keep_their_rate(server: ServerProcess) -> None:
    async def main() -> None:
        async with connect(server.ws) as calm, connect(server.ws) as flood:
            await until(calm, lambda f: f["type"] == "snapshot")
            first = await production_frames(calm, 1)
            errors = 0
            with pytest.raises(ConnectionClosed) as info:
                for i in range(2000):
                    await flood.send(json.dumps({"type": "heartbeat", "id": i}))
                for _ in range(10_000):
                    frame = await recv(flood)
                    errors += frame["type"] == "error" and frame["data"]["code"] == "rate_limited"
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            assert errors >= 1
            later = await production_frames(calm, 10)
            seqs = [f["seq"] for f in first + later]
            assert seqs == sorted(seqs)
            assert all(len(f["data"]) == 8 for f in later)

    asyncio.run(main())


def test_connection_limit_answers_503(server_factory: Any) -> None:
    server = server_factory({"server": {"max_connections": 3, "max_anonymous_connections": 2}})
    admin = token(server, "admin", "ops")

    async def main() -> int:
        async with connect(server.ws) as a, connect(server.ws) as b:
            await recv(a)
            await recv(b)
            with pytest.raises(InvalidStatus) as info:
                async with connect(server.ws):
                    pass
            # The slot kept from anonymous viewers still takes a logged-in user...
            headers = {"Authorization": f"Bearer {admin}"}
            async with connect(server.ws, additional_headers=headers) as c:
                assert (await recv(c))["data"]["role"] == "admin"
                # ...and then the server is full for everyone.
                with pytest.raises(InvalidStatus) as full:
                    async with connect(server.ws, additional_headers=headers):
                        pass
                assert full.value.response.status_code == 503
            return int(info.value.response.status_code)

    assert asyncio.run(main()) == 503


def test_token_in_query_string_is_never_logged(server: ServerProcess) -> None:
    secret = token(server, "viewer", "kiosk")

    async def main() -> None:
        async with connect(f"{server.ws}?token={secret}") as ws:
            assert (await recv(ws))["data"]["user"] == "kiosk"
        with pytest.raises(InvalidStatus):
            async with connect(f"{server.ws}?token={secret}x"):
                pass

    asyncio.run(main())
    httpx.get(f"{server.http}/api/lines?token={secret}")
    server.stop()
    log = server.log()
    assert "WebSocket /ws?token=<redacted>" in log
    assert secret not in log


def test_expired_session_is_closed_with_1008(server_factory: Any) -> None:
    server = server_factory({"auth": {"session_hours": 0.001}})  # 3.6 s
    cookie = login(server, "admin", admin_password(server))

    async def main() -> int:
        async with connect(
            server.ws, additional_headers={"Cookie": f"scada_session={cookie}"}
        ) as ws:
            return await close_code(ws)

    assert asyncio.run(main()) == 1008


def test_sigterm_sends_1012_to_every_client(server: ServerProcess) -> None:
    async def main() -> list[int]:
        clients = [await connect(server.ws) for _ in range(3)]
        for ws in clients:
            await until(ws, lambda f: f["type"] == "production_data")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            codes.append(await close_code(ws))
        return codes

    assert asyncio.run(main()) == [1012, 1012, 1012]
    # uvicorn re-raises the signal after a clean shutdown, so the exit status is -SIGTERM.
    assert server.proc is not None and server.proc.wait(15) in (0, -signal.SIGTERM)
    assert "journal and audit closed" in server.log()


def test_revoked_token_closes_its_open_socket(server: ServerProcess) -> None:
    secret = token(server, "viewer", "kiosk")
    token_id = cli(server, "tokens", "list").split()[0]

    async def main() -> int:
        async with connect(
            server.ws, additional_headers={"Authorization": f"Bearer {secret}"}
        ) as ws:
            await until(ws, lambda f: f["type"] == "production_data")
            # Revoked by another process (the CLI): the server notices on its periodic re-check.
            await asyncio.to_thread(cli, server, "tokens", "revoke", token_id)
            return await close_code(ws)

    assert asyncio.run(main()) == 1008


def test_cross_site_post_is_refused(server_factory: Any) -> None:
    server = server_factory({"auth": {"anonymous_role": "engineer"}})
    evil = {"Origin": "https://evil.example"}
    r = httpx.post(
        f"{server.http}/api/simulator/faults", headers=evil, json={"line": "1", "kind": "line_stop"}
    )
    assert r.status_code == 403 and r.json()["error"] == "forbidden_origin"
    r = httpx.post(
        f"{server.http}/api/login", headers=evil, json={"username": "admin", "password": "x"}
    )
    assert r.status_code == 403
    assert httpx.get(f"{server.http}/api/simulator/faults").json()["faults"] == []
    own = {"Origin": server.http}
    r = httpx.post(
        f"{server.http}/api/simulator/faults", headers=own, json={"line": "1", "kind": "line_stop"}
    )
    assert r.status_code == 201


def test_a_blocking_client_sending_an_oversized_message_reads_close_1009(
    server: ServerProcess,
) -> None:
    """A client that blocks in its send of a 300 KB message (as websocket-client does) still
    reads the close frame: the server reads and drops the rest before closing the socket,
    instead of resetting a connection whose close frame the client never got to read."""
    import base64
    import os
    import socket
    import struct

    with socket.create_connection(("127.0.0.1", server.port), timeout=scaled(10)) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        payload = b"x" * 300_000
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frame = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", len(payload)) + mask + masked
        sock.sendall(frame)  # blocks until the server has taken (and dropped) all of it
        received = head.split(b"\r\n\r\n", 1)[1]
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    # The server's frames: text frames (connected, snapshot, ...), then the close frame.
    codes = []
    at = 0
    while at + 2 <= len(received):
        opcode, length = received[at] & 0x0F, received[at + 1] & 0x7F
        at += 2
        if length == 126:
            length, at = struct.unpack(">H", received[at : at + 2])[0], at + 2
        elif length == 127:
            length, at = struct.unpack(">Q", received[at : at + 8])[0], at + 8
        if opcode == 0x8:
            codes.append(struct.unpack(">H", received[at : at + 2])[0])
        at += length
    assert codes == [1009]
