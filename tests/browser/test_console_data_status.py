"""The console believes the server's word about its plant data (docs/protocol.md, `data_status`).

A cluster gateway whose bus went quiet keeps its sockets and heartbeats alive; it says so with
`data_status` live:false, and the console must show NO LIVE DATA exactly as when frames stop,
while frames still arrive, until `data_status` live:true or a snapshot with data_live true.

Here the frames come from a real all-in-one server (which never sends `data_status`; its
snapshots say data_live true); the server's word is handed to the page's connection the way
its socket hands it every frame (`PlantConnection.receive`), while the real frames keep
arriving. tests/browser/test_console_cluster.py has the real thing: a gateway whose Redis stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import assert_nothing_shown_as_live, wait_live
from tests.conftest import OPEN_PLANT, ServerProcess, eventually, ms

SINCE = "2020-01-01T10:21:05.000Z"  # shown as 10:21:05: the pages run in UTC


@pytest.fixture(scope="module")
def plant(module_servers: Callable[..., ServerProcess]) -> ServerProcess:
    server = module_servers(OPEN_PLANT)
    r = httpx.post(
        f"{server.http}/api/simulator/faults",
        json={"line": "1", "kind": "sensor_dropout", "tag": "diameter"},
    )
    assert r.status_code == 201, r.text  # an active alarm: Ack and Shelve buttons to check
    return server


def console(browser: Any, server: ServerProcess, width: int, height: int) -> Any:
    context = browser.new_context(
        viewport={"width": width, "height": height}, bypass_csp=True, timezone_id="UTC"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.js_errors = errors
    page.goto(server.http + "/")
    wait_live(page)
    page.wait_for_selector('#alarm-table button[data-action="shelve"]:not([disabled])')
    return page


def server_says(page: Any, data: dict[str, Any]) -> None:
    page.evaluate(
        "d => window.plant.receive(JSON.stringify({type: 'data_status',"
        " timestamp: new Date().toISOString(), data: d}))",
        data,
    )


def frames_after(page: Any, count: int) -> None:
    """Wait until `count` more real frames have arrived."""
    start = page.evaluate("window.plant.framesReceived")
    page.wait_for_function(f"window.plant.framesReceived >= {start + count}")


def assert_no_live_data(page: Any) -> None:
    text = page.text_content('[data-testid="no-data"]') or ""
    assert text == (
        "no live data since 10:21:05 — plant data not reaching the server (bus stale)"
    ), text
    assert page.get_attribute("body", "data-live") == "no"
    assert_nothing_shown_as_live(page)
    assert page.text_content("#conn .label") == "connected — no data"


def test_data_status_not_live_holds_no_live_data_while_frames_arrive(
    plant: ServerProcess, browser: Any
) -> None:
    shots = os.environ.get("SCADA_SCREENSHOTS")
    pages = {"": console(browser, plant, 1400, 1000), "-phone": console(browser, plant, 390, 844)}
    for suffix, page in pages.items():
        server_says(page, {"live": False, "reason": "bus stale", "since": SINCE})
        page.wait_for_selector('[data-testid="no-data"]:not(.hidden)', timeout=ms(5))
        # Real frames keep coming (every one restarts the frame watchdog): still not live.
        frames_after(page, 20)
        assert_no_live_data(page)
        if shots:
            page.screenshot(path=str(Path(shots) / f"console-bus-stale{suffix}.png"))

    desk = pages[""]
    server_says(desk, {"live": True, "reason": "", "since": SINCE})
    desk.wait_for_selector('[data-testid="no-data"]', state="hidden", timeout=ms(5))
    wait_live(desk, timeout=ms(5))
    desk.wait_for_selector('#alarm-table button[data-action="shelve"]:not([disabled])')

    # A snapshot with data_live true clears it too (this server's answer to a resume); one
    # without the field (an older server's) does not.
    server_says(desk, {"live": False, "reason": "bus stale", "since": SINCE})
    desk.wait_for_selector('[data-testid="no-data"]:not(.hidden)', timeout=ms(5))
    desk.evaluate("window.plant.on('snapshot', (f) => { window.lastSnapshot = f; })")
    desk.evaluate(
        "(() => { const c = window.consoleState;"
        " const lines = [...c.state.lines.values()].map((e) => e.sample);"
        " window.plant.receive(JSON.stringify({type: 'snapshot', data: {lines,"
        " alarms: c.alarms.all(), alarm_cursor: window.plant.alarmCursor,"
        " epoch: window.plant.epoch}})); })()"
    )
    frames_after(desk, 5)
    assert_no_live_data(desk)
    # A resume is a heavy read: while the page's own heavy reads (two per client) still run,
    # which on a busy box they may, it is refused `too_many_requests`; ask again, as the
    # message says.
    resume = "window.plant.request('resume', {alarm_cursor: window.plant.alarmCursor})"
    eventually(lambda: desk.evaluate(resume).get("error") != "too_many_requests", timeout=15)
    # The server's snapshot may come after the request's promise settles: wait for it.
    desk.wait_for_function("window.lastSnapshot.data.data_live === true", timeout=ms(5))
    desk.wait_for_selector('[data-testid="no-data"]', state="hidden", timeout=ms(5))
    wait_live(desk, timeout=ms(5))

    # A new connection starts from its own word: the old socket's data_status goes with it.
    phone = pages["-phone"]
    phone.evaluate("window.plant.ws.close()")
    phone.wait_for_selector('[data-testid="no-data"]:not(.hidden)', timeout=ms(5))
    wait_live(phone, timeout=ms(15))
    assert phone.text_content("#conn .label") == "connected"
    for page in pages.values():
        assert page.js_errors == []
        page.context.close()


def test_a_new_journal_replaces_the_alarm_list_and_forgets_what_was_held_by_id(
    plant: ServerProcess, browser: Any
) -> None:
    """Runs last (it restarts the server): behind the same address a server with a new journal
    (new epoch) answers the page's resume with recovered false; the page takes its snapshot
    as the truth and drops the selection and the open acknowledge dialog made under old ids."""
    page = console(browser, plant, 1400, 1000)
    old_epoch = page.evaluate("window.plant.epoch")
    assert old_epoch
    page.check("#alarm-table tbody tr.unacked input[type=checkbox]")
    assert page.evaluate("window.consoleState.alarms.selected.size") == 1
    page.click('#alarm-table button[data-action="ack"]')
    assert page.evaluate("document.querySelector('#ack-dialog').open") is True
    page.evaluate(  # what the page writes to its socket, as the server reads it
        "window.sent = []; const send = WebSocket.prototype.send;"
        " WebSocket.prototype.send = function (d) { window.sent.push(d); return send.call(this, d); };"
        " true"
    )
    cursor = page.evaluate("window.plant.alarmCursor")
    page.evaluate(
        "window.resumes = []; window.later = [];"
        " window.plant.on('snapshot', (f) => { if ('recovered' in f.data) window.resumes.push(f.data); });"
        " window.plant.on('alarm', (f) => { if (window.resumes.length) window.later.push(f.data.alarm); })"
    )

    plant.stop()
    (plant.workdir / "data" / "journal.sqlite").unlink()
    plant.start()
    page.wait_for_function("window.resumes.length > 0", timeout=ms(30))
    resume = page.evaluate("window.resumes[0]")
    assert resume["recovered"] is False and resume["epoch"] != old_epoch
    assert page.evaluate("window.plant.epoch") == resume["epoch"]
    sent = [json.loads(m) for m in page.evaluate("window.sent")]
    assert [m["data"] for m in sent if m["type"] == "resume"] == [
        {"alarm_cursor": cursor, "epoch": old_epoch}
    ]
    notice = page.text_content('[data-testid="session-notice"]') or ""
    assert "alarm list was reloaded" in notice, notice
    assert page.evaluate("document.querySelector('#ack-dialog').open") is False
    assert page.evaluate("window.consoleState.alarms.selected.size") == 0
    wait_live(page)

    def table_and_state() -> tuple[list[str], list[str]]:
        shown = page.eval_on_selector_all(
            "#alarm-table tbody tr", "rs => rs.map(r => r.dataset.alarm)"
        )
        held = page.evaluate("window.consoleState.alarms.active().map((a) => a.alarm)")
        return sorted(shown), sorted(held)

    # The table is drawn on the next frame after the state changes: an alarm arriving just
    # now is held before it is shown (seen once: [] against one held), so wait for the two.
    shown, held = eventually(lambda: (pair := table_and_state())[0] == pair[1] and pair)
    assert shown == held
    # Nothing of the old journal survives: every alarm held came with the new server.
    new = {a["alarm"] for a in resume["alarms"]} | set(page.evaluate("window.later"))
    assert set(held) <= new, (held, new)
    assert page.js_errors == []
    page.context.close()
