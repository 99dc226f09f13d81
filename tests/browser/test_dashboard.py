"""The dashboard in headless Chromium: live tiles, connection indicator, reconnect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def tile_values(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            '[data-testid="tile"] [data-tag="diameter"]', "els => els.map(e => e.textContent)"
        )
    )


def test_dashboard_shows_live_lines_and_reconnects_after_restart(
    server: ServerProcess, page: Any
) -> None:
    page.goto(server.http + "/")
    page.wait_for_selector('[data-testid="connection"][data-state="connected"]', timeout=10_000)
    assert page.locator('[data-testid="tile"]').count() == 8
    first = tile_values(page)
    assert all(v not in ("", "—") for v in first)
    # Values change as production_data arrives.
    page.wait_for_function(
        """(first) => [...document.querySelectorAll('[data-testid="tile"] [data-tag="diameter"]')]
             .some((e, i) => e.textContent !== first[i])""",
        arg=first,
        timeout=5_000,
    )
    zone = page.text_content('[data-line="1"] [data-tag="body_temperature_1"]')
    assert zone is not None and 150 < float(zone) < 210
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    server.stop()
    page.wait_for_selector('[data-testid="connection"][data-state="reconnecting"]', timeout=10_000)
    label = page.text_content('[data-testid="connection"] .label') or ""
    assert "attempt" in label
    server.start()
    page.wait_for_selector('[data-testid="connection"][data-state="connected"]', timeout=30_000)
    after = tile_values(page)
    page.wait_for_function(
        """(after) => [...document.querySelectorAll('[data-testid="tile"] [data-tag="diameter"]')]
             .some((e, i) => e.textContent !== after[i])""",
        arg=after,
        timeout=5_000,
    )
    assert page.js_errors == []


def test_bad_line_is_visibly_different(open_server: ServerProcess, page: Any) -> None:
    server = open_server
    import httpx

    page.goto(server.http + "/")
    page.wait_for_selector('[data-testid="connection"][data-state="connected"]')
    r = httpx.post(
        f"{server.http}/api/simulator/faults",
        json={"line": "2", "kind": "sensor_dropout", "tag": "diameter"},
    )
    assert r.status_code == 201
    page.wait_for_selector('[data-line="2"][data-quality="bad"]', timeout=5_000)
    cls = page.get_attribute('[data-line="2"] [data-tag="diameter"]', "class") or ""
    assert "bad" in cls
    assert page.text_content('[data-line="2"] [data-tag="diameter"]') == "—"
    assert page.get_attribute('[data-line="1"]', "data-quality") == "good"


def test_diagnostics_page_counts_frames_and_sends_raw(server: ServerProcess, page: Any) -> None:
    page.goto(server.http + "/diagnostics")
    page.wait_for_selector('[data-testid="connection"][data-state="connected"]')
    page.wait_for_function("Number(document.getElementById('d-frames').textContent) > 20")
    page.fill("textarea[name=raw]", "this is not json")
    page.click("#raw-form button")
    page.wait_for_function("document.getElementById('d-log').textContent.includes('invalid_json')")


def test_ack_from_dashboard_shows_on_a_second_page(
    open_server: ServerProcess, browser: Any
) -> None:
    server = open_server
    import httpx

    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.goto(server.http + "/")
        pg.wait_for_selector('[data-testid="connection"][data-state="connected"]')
        pages.append(pg)
    one, two = pages
    r = httpx.post(
        f"{server.http}/api/simulator/faults",
        json={"line": "4", "kind": "diameter_drift", "rate": 0.04},
    )
    assert r.status_code == 201
    row = '[data-alarm="line4.diameter.hi"]'
    for pg in pages:
        pg.wait_for_selector(f'{row}[data-state="unacked_active"]', timeout=15_000)
        assert pg.get_attribute('[data-line="4"]', "data-alarm") == "alarm"
    banner = one.text_content('[data-testid="alarm-banner"]') or ""
    assert "Line 4" in banner and "high" in banner

    one.click(f'{row} button[data-action="ack"]')
    one.fill("#ack-dialog textarea[name=comment]", "gauge checked, adjusting puller")
    one.click("#ack-ok")
    for pg in pages:
        pg.wait_for_selector(f'{row}[data-state="acked_active"]', timeout=5_000)
        cells = pg.locator(f"{row} td").all_text_contents()
        assert any(c.startswith("operator") for c in cells)
    assert two.get_attribute('[data-line="4"]', "data-alarm") == "alarm-acked"
    history = httpx.get(
        f"{server.http}/api/alarms/history", params={"alarm": "line4.diameter.hi"}
    ).json()["events"]
    assert any(
        e["event"] == "acknowledged" and e["comment"] == "gauge checked, adjusting puller"
        for e in history
    )
    two.screenshot(path=str(ARTIFACTS / "dashboard-acked.png"), full_page=True)
    for pg in pages:
        pg.context.close()
