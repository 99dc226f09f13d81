"""After a reconnect the console asks for the alarm events it missed again while the server
refuses the resume as busy (docs/protocol.md: a resume is a heavy read, `too_many_requests`),
within a bound, and says so when it gives up (scada/static/ws.js, RESUME_RETRY).

The real all-in-one server runs in a thread of this process (tests/inprocess.py), so the test
can hold the heavy-read limiter's slots itself (`app.state.heavy`, on the server's loop): the
page's first resume is refused, and is served once the slots are free. The outage is the page's
socket closed while its reconnects go to a port nothing listens on; alarm events happen
meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import new_page, wait_live
from tests.conftest import eventually, free_port, ms
from tests.inprocess import Served, serve_in_thread

# What the page sent, answered and got, for the test to read (the page's own PlantConnection).
WATCH = """() => {
  window.sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) { window.sent.push(JSON.parse(d)); return send.call(this, d); };
  window.refused = []; window.snapshots = []; window.alarmIds = [];
  window.plant.on('reply', (f) => { if (f.data.error === 'too_many_requests') window.refused.push(f.data.id); });
  window.plant.on('error', (f) => { if (f.data.code === 'too_many_requests') window.refused.push(null); });
  window.plant.on('snapshot', (f) => window.snapshots.push(
    {cursor: f.data.alarm_cursor, recovered: f.data.recovered ?? null}));
  window.plant.on('alarm', (f) => window.alarmIds.push(f.data.event_id));
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_in_thread(tmp_path_factory.mktemp("resume") / "data") as served:
        yield served


def console(browser: Any, served: Served) -> Any:
    page = new_page(browser)
    page.goto(served.http + "/")
    wait_live(page)
    page.evaluate(WATCH)
    return page


def outage_with_alarm_events(page: Any, served: Served, fault: dict[str, str]) -> tuple[str, int]:
    """Close the page's socket, keep it from reconnecting and raise alarm events meanwhile;
    returns the page's socket URL (to restore) and its alarm cursor before the outage."""
    url = page.evaluate("window.plant.url")
    # At once: a closing socket delivers no more frames, so nothing moves the cursor after it.
    cursor = page.evaluate(
        "dead => { const c = window.plant.alarmCursor; window.plant.url = dead;"
        " window.plant.ws.close(); return c; }",
        f"ws://127.0.0.1:{free_port()}/ws",
    )
    assert isinstance(cursor, int)
    page.wait_for_function("window.plant.state === 'reconnecting'", timeout=ms(10))
    r = httpx.post(f"{served.http}/api/simulator/faults", json=fault)
    assert r.status_code == 201, r.text
    eventually(lambda: served.newest_journal_id() > cursor, timeout=30)
    return url, cursor


def resumes(page: Any) -> list[dict[str, Any]]:
    return [m for m in page.evaluate("window.sent") if m["type"] == "resume"]


def test_a_resume_refused_as_busy_is_asked_again_and_replays_the_missed_events(
    served: Served, browser: Any
) -> None:
    page = console(browser, served)
    epoch = page.evaluate("window.plant.epoch")
    url, cursor = outage_with_alarm_events(
        page, served, {"line": "1", "kind": "sensor_dropout", "tag": "diameter"}
    )
    served.hold_anonymous_slots()
    page.evaluate("url => { window.plant.url = url; }", url)
    # The new connection's resume is refused while the slots are held ...
    page.wait_for_function("window.refused.length > 0", timeout=ms(30))
    assert page.evaluate("window.snapshots.some((s) => s.recovered !== null)") is False
    served.free_slots()
    # ... and asked again: the missed events arrive, then the resume's snapshot.
    page.wait_for_function("window.snapshots.some((s) => s.recovered !== null)", timeout=ms(30))
    snapshots = page.evaluate("window.snapshots")
    first = snapshots[0]  # the new connection's own, before the resume was served
    assert first["recovered"] is None and first["cursor"] > cursor
    assert [s["recovered"] for s in snapshots[1:]] == [True]
    missed = served.journal_ids(cursor, first["cursor"])
    assert missed, "no alarm event happened during the outage"
    received = page.evaluate("window.alarmIds")
    assert [i for i in received if cursor < i <= first["cursor"]] == missed
    # Every ask was for the same events: the cursor and epoch from before the outage.
    asked = resumes(page)
    assert len(asked) >= 2
    assert {(m["data"]["alarm_cursor"], m["data"].get("epoch")) for m in asked} == {(cursor, epoch)}
    assert page.is_hidden('[data-testid="session-notice"]')
    assert page.js_errors == []
    page.context.close()


def test_a_resume_refused_past_the_bound_gives_up_and_says_so(served: Served, browser: Any) -> None:
    page = console(browser, served)
    # A shorter bound than the console's (6 asks over about 23 s): the same code path.
    page.evaluate(
        "window.plant.resumeRetry = {tries: 3, initialMs: 200, factor: 2, maxMs: 400, jitter: 0}"
    )
    url, cursor = outage_with_alarm_events(
        page, served, {"line": "2", "kind": "sensor_dropout", "tag": "diameter"}
    )
    served.hold_anonymous_slots()
    try:
        page.evaluate("url => { window.plant.url = url; }", url)
        notice = page.wait_for_selector(
            '[data-testid="session-notice"]:not(.hidden)', timeout=ms(30)
        )
        text = notice.text_content() or ""
        assert "could not be replayed: the server stayed busy (asked 3 times)" in text, text
        # Exactly the bound: three asks, each refused, and nothing more asked.
        assert [m["data"]["alarm_cursor"] for m in resumes(page)] == [cursor] * 3
        assert len(page.evaluate("window.refused")) == 3
        assert page.evaluate("window.plant.unreplayed") is None
    finally:
        served.free_slots()
    # The connection's snapshot still shows the current alarm state, and the page is live.
    wait_live(page)
    shown = page.eval_on_selector_all("#alarm-table tbody tr", "rs => rs.map(r => r.dataset.alarm)")
    held = page.evaluate("window.consoleState.alarms.active().map((a) => a.alarm)")
    assert sorted(shown) == sorted(held)
    assert page.evaluate("window.snapshots.every((s) => s.recovered === null)") is True
    assert page.js_errors == []
    page.context.close()
