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


def test_bad_line_is_visibly_different(server: ServerProcess, page: Any) -> None:
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
