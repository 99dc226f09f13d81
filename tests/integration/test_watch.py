"""`scada watch` tells the truth: live, no live data (with the attempt), cannot connect."""

from __future__ import annotations

import asyncio
import time

from scada.tools.watch import WatchState, receive, render
from tests.conftest import ServerProcess, free_port


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
