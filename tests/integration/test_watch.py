"""`scada watch` tells the truth: live, no live data (with the attempt), cannot connect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from scada.tools.watch import WatchState, receive, render, ws_url
from tests.conftest import ServerProcess, eventually, free_port, scaled


def test_watch_goes_from_live_to_no_live_data_when_the_server_stops(server: ServerProcess) -> None:
    async def main() -> None:
        st = WatchState(server.ws)
        task = asyncio.create_task(receive(st, lines=None, token=None))
        try:
            deadline = time.monotonic() + 10
            while not (st.live(time.time()) and st.lines) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert st.live(time.time()) and len(st.lines) == 8
            assert st.status(time.time()).startswith("live ")
            await asyncio.to_thread(server.stop)
            deadline = time.monotonic() + 10
            while st.live(time.time()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            status = st.status(time.time())
            assert status.startswith("NO LIVE DATA since "), status
            screen = render(st.lines, st.alarms, status, live=False)
            assert "connected" not in screen.splitlines()[0].replace("connected but", "")
            assert "unknown" in screen and "running" not in screen
        finally:
            task.cancel()

    asyncio.run(main())


def test_watch_says_connecting_until_the_first_attempt_fails() -> None:
    # Its first screen (piped: its first block) comes before the first attempt ends: it
    # said "cannot connect to URL: connecting (attempt 0)" of a server that was up.
    st = WatchState("ws://127.0.0.1:1/ws")
    status = st.status(time.time())
    assert "connecting to ws://127.0.0.1:1/ws (attempt 0)" in status, status
    assert "cannot connect" not in status
    st.last_error = "Connect call failed"
    assert "cannot connect to ws://127.0.0.1:1/ws: Connect call failed" in st.status(time.time())


def test_watch_says_when_it_cannot_connect() -> None:
    async def main() -> None:
        url = f"ws://127.0.0.1:{free_port()}/ws"
        st = WatchState(url)
        task = asyncio.create_task(receive(st, lines=None, token=None))
        try:
            deadline = time.monotonic() + 10
            while st.attempt < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            status = st.status(time.time())
            assert f"cannot connect to {url}" in status and "attempt 1" in status, status
        finally:
            task.cancel()

    asyncio.run(main())


def test_the_url_may_be_the_servers_page_and_anything_else_is_a_clear_error() -> None:
    assert ws_url("http://10.0.0.5:8000/") == "ws://10.0.0.5:8000/ws"
    assert ws_url("https://plant.example") == "wss://plant.example/ws"
    assert ws_url("ws://h:1/ws?x=1") == "ws://h:1/ws?x=1"
    assert ws_url("127.0.0.1:8000") == "ws://127.0.0.1:8000/ws"
    with pytest.raises(ValueError, match="not a server URL"):
        ws_url("ftp://h/")
    bad = subprocess.run(
        [sys.executable, "-m", "scada", "watch", "ftp://h/"],
        capture_output=True, text=True, timeout=scaled(60),
    )  # fmt: skip
    assert bad.returncode == 2 and "not a server URL" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_piped_watch_of_an_http_url_writes_plain_blocks(server: ServerProcess) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scada", "watch", f"{server.http}/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout = proc.stdout
    assert stdout is not None
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.extend(iter(stdout.readline, b"")))
    reader.start()
    try:
        eventually(lambda: b"alarms:" in b"".join(received) and b"live ws://" in b"".join(received))
    finally:
        proc.terminate()
        proc.wait(scaled(10))
        reader.join(scaled(10))
    text = b"".join(received)
    assert b"\x1b" not in text  # no clear-screen, no colour codes in a file
    assert f"live ws://127.0.0.1:{server.port}/ws".encode() in text
    assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
