"""The console on a cluster gateway whose bus goes quiet (issue #12, liveness not TCP).

Real processes (tests/integration/cluster_procs.py): redis-server, one ingest node, one gateway,
nginx in front (the console's /api/* goes to the ingest node, / and /ws to the gateway). Redis
is stopped with SIGSTOP: its connections stay open and nothing answers. The gateway reads
nothing for `[cluster] read_deadline` and says so (`data_status` live false); the page shows
NO LIVE DATA with that reason while its socket stays open and heartbeats keep arriving, and is
live again after SIGCONT, on the same socket. `scada watch` on the gateway says it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scada.tools.watch import WatchState, receive
from tests.browser.conftest import assert_nothing_shown_as_live, new_page, wait_live
from tests.conftest import eventually, ms
from tests.integration.cluster_procs import Cluster, cluster_factory

__all__ = ["cluster_factory"]  # the fixture, for this module's tests

# Idle heartbeats every second: they must not make a quiet bus look live.
OVERRIDES = {
    # Behind nginx: X-Forwarded-Proto is believed from it, so the page's https origin is its own.
    "auth": {"anonymous_role": "engineer", "trusted_proxies": ["127.0.0.1/32"]},
    "server": {"heartbeat_interval_ms": 1000},
}
BANNER = re.compile(
    r"no live data since \d\d:\d\d:\d\d — plant data not reaching the server \(.+\)"
)


def console_without_alarm(browser: Any, url: str, width: int = 1400, height: int = 1000) -> Any:
    page = new_page(browser, width, height, ignore_https_errors=True)
    page.goto(url + "/")
    wait_live(page, timeout=ms(30))
    return page


def console(browser: Any, url: str, width: int, height: int) -> Any:
    page = console_without_alarm(browser, url, width, height)
    page.wait_for_selector('#alarm-table button[data-action="shelve"]:not([disabled])')
    # Every close of the socket is counted: the socket must outlive the stale bus.
    page.evaluate("window.closes = 0; window.plant.on('closed', () => { window.closes += 1; })")
    return page


class Watch:
    """`scada watch`'s receive loop on its own thread and event loop (Playwright's sync API
    holds this thread's)."""

    def __init__(self, url: str) -> None:
        self.st = WatchState(url)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.thread.start()

    async def _main(self) -> None:
        task = asyncio.create_task(receive(self.st, lines=None, token=None))
        while not self.stopping.is_set():
            await asyncio.sleep(0.05)
        task.cancel()

    def status(self) -> str:
        return self.st.status(time.time())

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


def test_quiet_bus_shows_no_live_data_on_an_open_socket_and_recovers(
    cluster_factory: Callable[..., Cluster], browser: Any
) -> None:
    cluster = cluster_factory(ingests=1, gateways=1, nginx=True, overrides=OVERRIDES)
    assert cluster.nginx is not None
    url = cluster.nginx.https
    r = httpx.post(
        f"{url}/api/simulator/faults",
        json={"line": "1", "kind": "sensor_dropout", "tag": "diameter"},
        verify=False,
    )
    assert r.status_code == 201, r.text  # an active alarm: Ack and Shelve buttons to check
    pages = {"": console(browser, url, 1400, 1000), "-phone": console(browser, url, 390, 844)}
    shots = os.environ.get("SCADA_SCREENSHOTS")
    watch = Watch(cluster.gateways[0].ws)
    eventually(lambda: watch.status().startswith("live "), timeout=15)

    cluster.redis.pause()
    try:
        eventually(lambda: "plant data not reaching" in watch.status(), timeout=15)
        status = watch.status()
        assert re.fullmatch(
            r"NO LIVE DATA since \d\d:\d\d:\d\d — plant data not reaching the server \(.+\)",
            status,
        ), status
        for page in pages.values():
            page.wait_for_selector('[data-testid="no-data"]:not(.hidden)', timeout=ms(15))
            page.wait_for_function(
                "document.querySelector('[data-testid=\"no-data\"]').textContent"
                ".includes('plant data not reaching the server')",
                timeout=ms(15),
            )
        for suffix, page in pages.items():
            # Heartbeats keep arriving on the open socket; the page stays at NO LIVE DATA.
            start = page.evaluate("window.plant.framesReceived")
            page.wait_for_function(f"window.plant.framesReceived >= {start + 2}", timeout=ms(15))
            text = page.text_content('[data-testid="no-data"]') or ""
            assert BANNER.fullmatch(text), text
            assert page.get_attribute("body", "data-live") == "no"
            assert_nothing_shown_as_live(page)
            assert page.evaluate("[window.plant.state, window.closes]") == ["connected", 0]
            if shots:
                page.screenshot(path=str(Path(shots) / f"console-gateway-stale{suffix}.png"))
    finally:
        cluster.redis.resume()

    eventually(lambda: watch.status().startswith("live "), timeout=30)
    watch.stop()
    for page in pages.values():
        page.wait_for_selector('[data-testid="no-data"]', state="hidden", timeout=ms(30))
        wait_live(page, timeout=ms(30))
        page.wait_for_selector('#alarm-table button[data-action="shelve"]:not([disabled])')
        assert page.evaluate("[window.plant.state, window.closes]") == ["connected", 0]
        assert page.js_errors == []
        page.context.close()


def connections(gateway: Any) -> int:
    r = httpx.get(f"{gateway.http}/health/websocket", timeout=5)
    return int(r.json()["connections_active"]) if r.status_code == 200 else -1


def test_console_resumes_on_another_gateway_with_exactly_the_missed_events(
    cluster_factory: Callable[..., Cluster], browser: Any
) -> None:
    """kill -9 of the page's gateway, an alarm while it is away: through nginx the page lands
    on the other gateway and its resume (cursor + epoch) brings that event, recovered true."""
    cluster = cluster_factory(ingests=1, gateways=2, nginx=True, overrides=OVERRIDES)
    assert cluster.nginx is not None
    url = cluster.nginx.https
    page = console_without_alarm(browser, url)
    epoch = page.evaluate("window.plant.epoch")
    assert epoch and epoch.count("/") >= 1  # the bus epoch: <journal epoch>/<bus id>...
    page.evaluate(  # what the page writes to its socket, as the gateway reads it
        "window.sent = []; const send = WebSocket.prototype.send;"
        " WebSocket.prototype.send = function (d) { window.sent.push(d); return send.call(this, d); };"
        " true"
    )
    page.evaluate(
        "window.resumes = []; window.replayed = [];"
        " window.plant.on('snapshot', (f) => { if ('recovered' in f.data) window.resumes.push(f.data); });"
        " window.plant.on('alarm', (f) => { if (!window.resumes.length) window.replayed.push(f.data.event_id); })"
    )
    cursor = page.evaluate("window.plant.alarmCursor")
    mine = eventually(lambda: next((g for g in cluster.gateways if connections(g) == 1), None))
    other = next(g for g in cluster.gateways if g is not mine)
    # The page is held away (no reconnect) until the alarm is on the bus and in the other
    # gateway's ring; then it reconnects as after any drop, through nginx.
    page.evaluate("window.plant.stopped = true")
    mine.kill()
    page.wait_for_function("window.plant.ws === null", timeout=ms(10))
    r = httpx.post(
        f"{url}/api/simulator/faults",
        json={"line": "4", "kind": "sensor_dropout", "tag": "diameter"},
        verify=False,
    )
    assert r.status_code == 201, r.text

    def raised() -> int | None:
        body = httpx.get(f"{url}/api/alarms", verify=False, timeout=5).json()
        names = {a["alarm"] for a in body["alarms"]}
        return int(body["alarm_cursor"]) if "line4.diameter.quality" in names else None

    top = eventually(raised, timeout=15)
    eventually(lambda: other.cluster_state().get("cursor", 0) >= top, timeout=15)
    page.evaluate("window.plant.stopped = false; window.plant.scheduleReconnect(1006)")
    page.wait_for_function("window.resumes.length > 0", timeout=ms(30))
    resume = page.evaluate("window.resumes[0]")
    replayed = page.evaluate("window.replayed")
    assert resume["recovered"] is True and resume["epoch"] == epoch
    sent = [json.loads(m) for m in page.evaluate("window.sent")]
    assert [m["data"] for m in sent if m["type"] == "resume"] == [
        {"alarm_cursor": cursor, "epoch": epoch}
    ]
    assert replayed and all(cursor < i <= resume["alarm_cursor"] for i in replayed)
    assert len(set(replayed)) == len(replayed)
    names = page.evaluate("window.consoleState.alarms.all().map((a) => a.alarm)")
    assert "line4.diameter.quality" in names
    wait_live(page, timeout=ms(30))
    assert page.js_errors == []
    page.context.close()
