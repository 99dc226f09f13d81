"""What a client may make the server hold, on a real server over raw sockets.

Request heads are bounded in size (431, 414) and time, so are bodies; idle keep-alive
connections make room for new ones; handshakes the WebSocket parser refuses are answered and
closed; foreign Host names are refused and every response carries the security headers; the
log stays one line per kind of event.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ServerProcess, free_port, write_config

LIMITS = {
    "server": {
        "handshake_timeout": 1.0,
        "request_body_timeout": 1.0,
        "max_http_connections": 6,
    }
}
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
WAIT_S = 8.0  # far beyond the 1 s deadlines: a socket still open then is never closed


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    overrides = {"server": {**LIMITS["server"], "data_dir": str(tmp / "data")}}
    server = ServerProcess(write_config(tmp / "plant.toml", overrides), tmp).start()
    yield server
    server.stop()


def dial(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(WAIT_S)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything until the server closes (b"" if it never answers before WAIT_S)."""
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        return out + b"<still open>"
    except ConnectionResetError:
        return out + b"<reset>"
    return out


def response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head


def status(data: bytes) -> int:
    assert data.startswith(b"HTTP/1.1 "), data[:80]
    return int(data[9:12])


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (b"".join(b"X-Header-%d: v\r\n" % i for i in range(130)), 431),  # websockets allows 128
        (b"X-Long: " + b"a" * 9000 + b"\r\n", 431),  # over websockets' 8 KiB line
        (b"Content-Length: 5\r\n", 400),  # a handshake with a body: websockets says nothing
    ],
    ids=["130-headers", "9000-byte-line", "handshake-with-body"],
)
def test_refused_upgrade_is_answered_and_closed(
    limited: ServerProcess, extra: bytes, code: int
) -> None:
    with dial(limited) as sock:
        sock.sendall(UPGRADE + extra + b"\r\n" + (b"hello" if code == 400 else b""))
        assert status(answer(sock)) == code


def test_huge_cookie_refused_before_the_head_ends(limited: ServerProcess) -> None:
    """An 8 MiB Cookie used to be parsed to its end, blocking the loop: 431 after 16 KiB."""
    with dial(limited) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ")
        try:
            for _ in range(128):  # 1 MiB, never the end of the head
                sock.sendall(b"a" * 8192)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert status(answer(sock)) == 431
    assert httpx.get(f"{limited.http}/health").status_code == 200


def test_long_request_line_gets_414(limited: ServerProcess) -> None:
    with dial(limited) as sock:
        sock.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status(answer(sock)) == 414


def test_second_request_head_has_a_deadline(limited: ServerProcess) -> None:
    with dial(limited) as sock:
        sock.sendall(HEALTH)
        assert response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /hea")  # never completed
        assert answer(sock) == b""


def test_request_body_has_a_deadline(limited: ServerProcess) -> None:
    with dial(limited) as sock:
        sock.sendall(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"user'
        )
        assert answer(sock) == b""
    assert "Traceback" not in limited.log()


def test_idle_keepalive_connections_make_room_then_the_gate_closes(
    limited: ServerProcess,
) -> None:
    cap = int(LIMITS["server"]["max_http_connections"])
    idle = [dial(limited) for _ in range(cap)]
    for sock in idle:
        sock.sendall(HEALTH)
        assert response(sock).startswith(b"HTTP/1.1 200")
    with dial(limited) as newcomer:  # over the cap: the oldest idle one goes
        newcomer.sendall(HEALTH)
        assert response(newcomer).startswith(b"HTTP/1.1 200")
        assert answer(idle[0]) == b""
    for sock in idle:
        sock.close()
    busy = [dial(limited) for _ in range(cap)]
    for sock in busy:
        sock.sendall(b"GET /hea")  # heads in progress: nothing to close
    try:
        with dial(limited) as refused:
            assert status(answer(refused)) == 503
    finally:
        for sock in busy:
            sock.close()


def test_foreign_host_refused_and_security_headers_on_every_response(
    limited: ServerProcess,
) -> None:
    with dial(limited) as sock:  # a DNS-rebinding page: its name now resolves to us
        sock.sendall(UPGRADE.replace(b"127.0.0.1", b"plant.evil.example") + b"\r\n")
        assert status(answer(sock)) == 421
    rebound = httpx.get(f"{limited.http}/api/lines", headers={"Host": "plant.evil.example"})
    assert rebound.status_code == 421
    for path in ("/", "/api/lines", "/no-such-page"):
        response = httpx.get(f"{limited.http}{path}")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    local = httpx.get(f"http://localhost:{limited.port}/health")
    assert local.status_code == 200


def test_invalid_utf8_is_one_line_and_1007(limited: ServerProcess) -> None:
    async def main() -> int:
        async with connect(limited.ws) as ws:
            await ws.send(b"\xff\xfe not utf-8", text=True)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), WAIT_S)
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    assert asyncio.run(main()) == 1007
    log = limited.log()
    assert "invalid UTF-8" in log
    assert "Traceback" not in log


def test_reconnect_storm_folds_the_handshake_log_and_uses_the_raw_sink(
    limited: ServerProcess,
) -> None:
    async def main() -> dict[str, int]:
        for _ in range(20):
            async with connect(limited.ws) as ws:
                assert json.loads(await ws.recv())["type"] == "connected"
        async with connect(limited.ws) as ws:
            await ws.recv()
            health = httpx.get(f"{limited.http}/health/websocket").json()
            sinks: dict[str, int] = health["sinks"]
            return sinks

    assert asyncio.run(main()) == {"raw": 1}  # the fast path, under the pinned uvicorn
    assert limited.log().count('"WebSocket /ws" [accepted]') <= 2


def test_fd_budget_checked_at_start(tmp_path: Path) -> None:
    """max_connections beyond what the open-file limit allows: refuse to start, say why."""
    config = write_config(tmp_path / "plant.toml", {"server": {"data_dir": str(tmp_path)}})

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scada",
            "serve",
            "--config",
            str(config),
            "--port",
            str(free_port()),
        ],
        preexec_fn=low_limit,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "server.max_connections" in result.stderr
    assert "Traceback" not in result.stderr
