"""Real nginx with the shipped nginx/scada.conf in front of a real server: wss, heartbeats,
client addresses in the audit log, the https redirect, security headers and the dashboard's CSP.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scada.core.config import deep_merge
from scada.tools.cluster.selfsigned import make_certificate
from tests.conftest import ServerProcess, eventually
from tests.integration.nginx_helpers import (
    SHIPPED_CONF,
    NginxProcess,
    client_ssl_context,
    nginx_binary,
)
from tests.integration.test_security import audit, token
from tests.integration.test_websocket import (
    assert_every_frame_in_order,
    production_frames,
    recv,
    until,
)

pytestmark = pytest.mark.nginx

CLIENT_ADDRESS = "127.0.0.2"  # all of 127/8 is loopback on Linux; nginx itself is 127.0.0.1
BEHIND_NGINX: dict[str, Any] = {
    "auth": {"trusted_proxies": ["127.0.0.1"]},
    "server": {"heartbeat_interval_ms": 1000},
}
ALARMS_ONLY = json.dumps({"type": "subscribe", "id": "sub", "data": {"types": ["alarm"]}})


class Stack:
    def __init__(self, server: ServerProcess, nginx: NginxProcess) -> None:
        self.server = server
        self.nginx = nginx

    def connect(self, *, local_address: str | None = None, query: str = "", **kw: Any) -> Any:
        """A wss:// client through nginx, trusting the test certificate only."""
        options: dict[str, Any] = {
            "ssl": client_ssl_context(self.nginx.cert),
            "ping_interval": None,  # only the server's frames may keep the connection busy
            "open_timeout": 10,
        }
        if local_address is not None:
            sock = socket.socket()
            sock.bind((local_address, 0))
            sock.connect(("127.0.0.1", self.nginx.https_port))
            sock.setblocking(False)
            options.update(sock=sock, server_hostname="127.0.0.1")
        return connect(self.nginx.wss + query, **options, **kw)


@pytest.fixture
def stack_factory(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[Callable[..., Stack]]:
    started: list[NginxProcess] = []

    def make(overrides: dict[str, Any] | None = None, ws_read_timeout: str = "3s") -> Stack:
        nginx_binary()  # skip (or fail) before starting a server nginx could not front
        server = server_factory(deep_merge(BEHIND_NGINX, overrides or {}))
        nginx = NginxProcess(
            tmp_path / f"nginx{len(started)}",
            upstream_port=server.port,
            ws_read_timeout=ws_read_timeout,
        )
        started.append(nginx)
        nginx.start()
        return Stack(server, nginx)

    yield make
    for nginx in started:
        nginx.stop()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory()


# ------------------------------------------------------------------------ the shipped file


def test_shipped_config_is_valid_and_has_the_required_pieces(tmp_path: Path) -> None:
    """`nginx -t` on the shipped file with only certificate and log paths changed."""
    text = SHIPPED_CONF.read_text()
    live = re.sub(r"#.*", "", text)
    assert re.search(r"upstream scada \{[^}]*server 127\.0\.0\.1:8000[^}]*keepalive \d+;", live)
    assert re.search(r"map \$http_upgrade \$connection_upgrade", live)
    ws = re.search(r"location = /ws \{(.*?)\n    \}", live, flags=re.DOTALL)
    assert ws is not None
    block = ws.group(1)
    for needle in (
        "proxy_http_version 1.1",  # server level, inherited
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_buffering off",
        "proxy_set_header X-Forwarded-For",
        "proxy_set_header X-Forwarded-Proto $scheme",
        "proxy_set_header X-Real-IP",
        "proxy_set_header Host",
        "proxy_send_timeout",
    ):
        assert needle in (live if needle.startswith("proxy_http_version") else block), needle
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", block)
    assert read_timeout is not None
    assert int(read_timeout.group(1)) > 15  # above the default heartbeat interval (15 s)
    login = re.search(r"location = /api/login \{(.*?)\}", live, flags=re.DOTALL)
    assert login is not None and "limit_req zone=scada_login" in login.group(1)
    assert "limit_req_zone" in live
    assert "return 301 https://" in live
    log_format = re.search(r"log_format scada_redacted ([^;]*);", live)
    assert log_format is not None and "access_log" in live
    for leaky in ("$request ", "$request_uri", "$args", "$query_string", "$arg_"):
        assert leaky not in log_format.group(1), leaky
    assert len(re.findall(r"access_log \S+ scada_redacted;", live)) == live.count("access_log")

    cert, key = make_certificate(tmp_path / "tls")
    logs = tmp_path / "logs"
    logs.mkdir()
    rendered = text.replace("/etc/ssl/scada/fullchain.pem", str(cert))
    rendered = rendered.replace("/etc/ssl/scada/privkey.pem", str(key))
    rendered = rendered.replace("/var/log/nginx/", f"{logs}/")
    # nginx -t parses, loads the certificate and checks every directive.
    NginxProcess(tmp_path / "check", upstream_port=8000, rendered=rendered).check()


# --------------------------------------------------------------------------- through nginx


def test_wss_client_gets_every_production_frame_in_order(stack: Stack) -> None:
    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with stack.connect() as ws:
            connected = await recv(ws)
            return connected, await production_frames(ws, 25)

    connected, frames = asyncio.run(main())
    assert connected["type"] == "connected" and connected["data"]["protocol"] == 1
    assert connected["data"]["heartbeat_interval_ms"] == 1000
    assert_every_frame_in_order(frames)
    assert all(len(f["data"]) > 0 for f in frames)


async def _hold(ws: ClientConnection, seconds: float) -> tuple[list[dict[str, Any]], Exception]:
    """Read frames until the deadline; (frames, the close or timeout that ended the read)."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return frames, TimeoutError()
        try:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except (ConnectionClosed, TimeoutError) as err:
            return frames, err


def test_idle_connection_outlives_the_read_timeout_thanks_to_heartbeats(stack: Stack) -> None:
    """nginx's /ws read timeout is 3 s here, the heartbeat 1 s: 8 s idle stay connected."""

    async def main() -> tuple[list[dict[str, Any]], Exception]:
        async with stack.connect() as ws:
            await ws.send(ALARMS_ONLY)
            await until(ws, lambda f: f["type"] == "reply")
            frames, ended = await _hold(ws, 8.0)
            # Still usable afterwards: a request gets its answer.
            await ws.send(json.dumps({"type": "heartbeat", "id": "hb", "data": {"n": 1}}))
            await until(ws, lambda f: f["type"] == "heartbeat" and f["data"] == {"n": 1})
            return frames, ended

    frames, ended = asyncio.run(main())
    assert isinstance(ended, TimeoutError), f"connection closed while idle: {ended!r}"
    kinds = {f["type"] for f in frames}
    assert "production_data" not in kinds
    heartbeats = [f for f in frames if f["type"] == "heartbeat"]
    # Idle clients are scanned once per housekeeping second, so two heartbeats are 1 to 2 s
    # apart: 8 s idle hold at least 3, and any 2 already span more than the 3 s read timeout.
    assert len(heartbeats) >= 3, frames


def test_control_without_heartbeats_in_time_nginx_closes_the_idle_connection(
    stack_factory: Callable[..., Stack],
) -> None:
    """The same idle client, heartbeats every 60 s: nginx's 2 s read timeout cuts it.

    Shows the read timeout in the previous test is real, so heartbeats are what kept it open.
    """
    stack = stack_factory({"server": {"heartbeat_interval_ms": 60_000}}, ws_read_timeout="2s")

    async def main() -> tuple[list[dict[str, Any]], Exception]:
        async with stack.connect() as ws:
            await ws.send(ALARMS_ONLY)
            await until(ws, lambda f: f["type"] == "reply")
            return await _hold(ws, 20.0)

    frames, ended = asyncio.run(main())
    assert isinstance(ended, ConnectionClosed), "nginx kept an idle connection open"
    assert not [f for f in frames if f["type"] in ("heartbeat", "production_data")]
    # Cut by nginx (no close frame, code 1006), not closed by the server.
    assert ended.rcvd is None, ended
    assert re.search(r'"GET /ws HTTP/1.1" 101 .* upstream_time=2\.\d+', stack.nginx.access_log())


def test_audit_log_shows_the_clients_own_address(stack: Stack) -> None:
    """A client at 127.0.0.2 through nginx (at 127.0.0.1, a trusted proxy): its address is on
    record, over wss and https, and a forged X-Forwarded-For changes nothing."""

    async def refused_ack() -> dict[str, Any]:
        async with stack.connect(local_address=CLIENT_ADDRESS) as ws:
            assert (await recv(ws))["data"]["role"] == "viewer"
            await ws.send(json.dumps({"type": "ack", "id": 7, "data": {"alarm_id": 1}}))
            return await until(ws, lambda f: f["type"] in ("reply", "error"))

    reply = asyncio.run(refused_ack())
    assert reply["data"]["ok"] is False and reply["data"]["error"] == "forbidden"

    transport = httpx.HTTPTransport(
        verify=client_ssl_context(stack.nginx.cert), local_address=CLIENT_ADDRESS
    )
    with httpx.Client(transport=transport, base_url=stack.nginx.https) as client:
        r = client.post(
            "/api/login",
            json={"username": "mallory", "password": "guess"},
            headers={"X-Forwarded-For": "10.9.9.9", "X-Real-IP": "10.9.9.9"},
        )
    assert r.status_code == 401, r.text

    def records() -> list[dict[str, Any]]:
        found = audit(stack.server)
        ack = [x for x in found if x["action"] == "ack" and x["result"] == "forbidden"]
        login = [x for x in found if x["action"] == "login" and x["target"] == "mallory"]
        return ack + login if ack and login else []

    found = eventually(records, timeout=10)
    assert {x["address"] for x in found} == {CLIENT_ADDRESS}, found
    # Why nginx overwrites X-Forwarded-For instead of appending: the service believes the
    # header from 127.0.0.1 (a trusted proxy), so whatever a proxy passes on is what is recorded.
    # Here a local process at 127.0.0.1 talks to the service directly with a forged header.
    r = httpx.post(
        f"{stack.server.http}/api/login",
        json={"username": "direct", "password": "x"},
        headers={"X-Forwarded-For": "10.9.9.9"},
    )
    assert r.status_code == 401
    direct = eventually(lambda: [x for x in audit(stack.server) if x["target"] == "direct"])
    assert direct[0]["address"] == "10.9.9.9"


def test_plain_http_is_redirected_to_https(stack: Stack) -> None:
    for path in ("/", "/api/lines?x=1"):
        r = httpx.get(stack.nginx.http + path, follow_redirects=False)
        assert r.status_code in (301, 308), r.status_code
        assert r.headers["location"] == f"https://127.0.0.1{path}"
    # The service itself is never reached over plain http through nginx.
    assert "GET / " not in stack.server.log().split("Uvicorn running")[-1]


def test_login_requests_are_rate_limited(stack: Stack) -> None:
    transport = httpx.HTTPTransport(verify=client_ssl_context(stack.nginx.cert))
    with httpx.Client(transport=transport, base_url=stack.nginx.https) as client:
        codes = [
            client.post("/api/login", json={"username": "x", "password": "y"}).status_code
            for _ in range(12)
        ]
        assert client.get("/api/lines").status_code == 200  # other paths are not limited
    assert codes[0] == 401 and 429 in codes, codes
    assert set(codes) == {401, 429}


def test_query_token_stays_out_of_the_nginx_logs(stack: Stack) -> None:
    """`?token=` works through nginx and appears in no nginx log line, even when nginx logs an
    error for the request (the service is down: 502)."""
    secret = token(stack.server, "viewer", "kiosk")

    async def user() -> str:
        async with stack.connect(query=f"?token={secret}") as ws:
            return str((await recv(ws))["data"]["user"])

    async def status(query: str) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with stack.connect(query=query):
                pass
        return int(info.value.response.status_code)

    assert asyncio.run(user()) == "kiosk"
    eventually(lambda: "/ws" in stack.nginx.access_log())
    stack.server.stop()
    assert asyncio.run(status(f"?token={secret}")) == 502
    assert asyncio.run(status("?other=1")) == 502
    # The error log does record failed upstream connections (so the check below is not
    # vacuous), just not the one that carried a token.
    eventually(lambda: stack.nginx.logs().count("connect() failed") == 1)
    assert "?other=1" in stack.nginx.logs()
    assert secret not in stack.nginx.logs()
    assert secret not in stack.server.log()


# ------------------------------------------------------------------- headers and dashboard


def test_security_headers_on_the_dashboard(stack: Stack) -> None:
    transport = httpx.HTTPTransport(verify=client_ssl_context(stack.nginx.cert))
    with httpx.Client(transport=transport, base_url=stack.nginx.https) as client:
        for path in ("/", "/login", "/static/app.js", "/api/nope"):
            r = client.get(path)
            h = r.headers
            assert h["strict-transport-security"].startswith("max-age="), path
            csp = h["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
            assert h["x-content-type-options"] == "nosniff"
            assert h["referrer-policy"] == "no-referrer"
            assert "nginx/" not in h.get("server", "")


def test_dashboard_runs_under_the_csp_through_nginx(stack: Stack) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("SCADA_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("chromium is required (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(chromium),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--ignore-certificate-errors",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            console: list[str] = []
            errors: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.add_init_script(
                """window.__csp = [];
                document.addEventListener('securitypolicyviolation', (e) =>
                  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));"""
            )
            response = page.goto(stack.nginx.https + "/")
            assert response is not None and response.status == 200
            assert "content-security-policy" in response.headers
            page.wait_for_selector(
                '[data-testid="connection"][data-state="connected"]', timeout=15_000
            )
            page.wait_for_selector('[data-testid="tile"]', timeout=5_000)
            # Live values keep arriving over wss through nginx.
            first = page.text_content('[data-line="1"] [data-tag="diameter"]')
            page.wait_for_function(
                """(first) => document.querySelector('[data-line="1"] [data-tag="diameter"]')
                     .textContent !== first""",
                arg=first,
                timeout=5_000,
            )
            violations = page.evaluate("window.__csp")
            assert violations == [], violations
            assert not [m for m in console if "Content Security Policy" in m], console
            assert errors == [], errors
            assert page.evaluate("location.protocol") == "https:"
            # The other pages load their own module scripts and the stylesheet under the CSP.
            for path in ("/login", "/diagnostics"):
                page.goto(stack.nginx.https + path, wait_until="load")
                assert page.evaluate("window.__csp") == [], path
            assert not [m for m in console if "Content Security Policy" in m], console
            assert errors == [], errors
        finally:
            browser.close()
