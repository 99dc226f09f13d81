"""What an operator tripped over (issue 21), in headless Chromium against one real server.

The plant has a standing low-priority alarm on line 2 (motor current over `hi`) and a standing
critical one on line 6 (motor current over a critical `hi`), so the horn has something to
sound and an acknowledgement needs a comment.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import new_page, wait_live
from tests.conftest import ServerProcess, default_config_dict, eventually, ms

DESK = (1280, 800)
PHONE = (390, 844)


def plant_config() -> dict[str, Any]:
    base = default_config_dict()
    tags = {
        "2": {"motor_current": {"limits": {"hi": {"value": 50.0, "severity": "low"}}}},
        "6": {"motor_current": {"limits": {"hi": {"value": 10.0, "severity": "critical"}}}},
    }
    for line in base["lines"]:
        if line["id"] in tags:
            line.setdefault("tags", {}).update(tags[line["id"]])
    base["auth"] = {"anonymous_role": "engineer"}
    base.setdefault("alarms", {})["require_comment"] = ["critical"]
    return base


@pytest.fixture(scope="module")
def plant(module_servers: Callable[..., ServerProcess]) -> ServerProcess:
    return module_servers(base=plant_config())


def open_console(
    browser: Any, server: ServerProcess, size: tuple[int, int] = DESK, **kw: Any
) -> Any:
    page = new_page(browser, *size, **kw)
    page.goto(server.http + "/")
    wait_live(page)
    return page


def current(server: ServerProcess, name: str) -> dict[str, Any] | None:
    alarms = httpx.get(f"{server.http}/api/alarms").json()["alarms"]
    return next((a for a in alarms if a["alarm"] == name), None)


def cell(page: Any, alarm: str, label: str) -> str:
    return (
        page.text_content(f'#alarm-table tr[data-alarm="{alarm}"] td[data-label="{label}"]') or ""
    ).strip()


def screenshot(page: Any, name: str) -> None:
    out = Path(__file__).resolve().parents[2] / "build" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=False)


# ---------------------------------------------------------------- finding 1, and 10's history bits


def test_at_raise_keeps_the_raise_value_after_the_clear_in_the_list_history_and_csv(
    plant: ServerProcess, browser: Any
) -> None:
    name = "line1.line_speed.hi"
    page = open_console(browser, plant)
    r = httpx.post(
        f"{plant.http}/api/simulator/faults",
        json={"line": "1", "kind": "step", "tag": "line_speed", "offset": 30.0},
    )
    assert r.status_code == 201, r.text
    raised = eventually(
        lambda: (a := current(plant, name)) and a["state"] == "unacked_active" and a
    )
    at_raise = f"{raised['raised_value']:.2f} m/min"
    page.wait_for_selector(f'#alarm-table tr[data-alarm="{name}"][data-state="unacked_active"]')
    assert cell(page, name, "At raise") == at_raise
    httpx.delete(f"{plant.http}/api/simulator/faults/{r.json()['id']}")
    cleared = eventually(
        lambda: (a := current(plant, name)) and a["state"] == "unacked_cleared" and a
    )
    assert abs(cleared["value"] - raised["raised_value"]) > 10  # the clear is far below
    page.wait_for_selector(f'#alarm-table tr[data-alarm="{name}"][data-state="unacked_cleared"]')
    # The cleared row still says what the alarm was raised at, not the clearing value.
    assert cell(page, name, "At raise") == at_raise
    # A page opened now builds the row from the snapshot alone: the same.
    fresh = open_console(browser, plant)
    fresh.wait_for_selector(f'#alarm-table tr[data-alarm="{name}"][data-state="unacked_cleared"]')
    assert cell(fresh, name, "At raise") == at_raise
    fresh.context.close()

    # History: the date fields in the console's format, not the browser locale's.
    page.click('.tab[data-tab="history"]')
    page.click('#history-form button[data-range="24h"]')
    since = page.input_value("#history-form input[name=since]")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", since), since
    assert page.get_attribute("#history-form input[name=since]", "type") == "text"
    row = page.locator(f'#history-table tr[data-alarm="{name}"]')
    row.wait_for()
    assert (row.locator('td[data-label="Value at raise"]').text_content() or "") == at_raise
    page.fill("#history-form input[name=since]", "06/12/2026 10:00")
    page.click("#history-form button[type=submit]")
    page.wait_for_function(
        "document.getElementById('history-status').textContent.includes('YYYY-MM-DD HH:MM')"
    )
    page.fill("#history-form input[name=since]", since)
    page.click("#history-form button[type=submit]")
    page.wait_for_function(
        "document.getElementById('history-status').textContent.includes('occurrence')"
    )
    with page.expect_download() as download:
        page.click('[data-testid="history-csv"]')
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text("utf-8"))))
    mine = [line for line in rows if line["alarm"] == name]
    assert mine and mine[0]["value_at_raise"] == f"{raised['raised_value']:.2f}"
    assert mine[0]["unit"] == "m/min"
    for line in rows:  # every time carries its zone
        for key in ("raised", "acked_at", "cleared"):
            if line[key]:
                assert line[key].endswith("Z"), (key, line[key])
                datetime.fromisoformat(line[key].replace("Z", "+00:00"))
        value = line["value_at_raise"]
        assert not value or len(value.partition(".")[2]) <= 3, value  # display precision
    assert page.js_errors == []
    page.context.close()


# ---------------------------------------------------------------- finding 10


def test_header_clock_names_utc_once_and_other_zones_with_their_offset(
    plant: ServerProcess, browser: Any
) -> None:
    utc = open_console(browser, plant, timezone_id="UTC")
    clock = utc.text_content('[data-testid="clock"]') or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", clock), clock
    utc.context.close()
    berlin = open_console(browser, plant, timezone_id="Europe/Berlin")
    clock = berlin.text_content('[data-testid="clock"]') or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+0[12]:00 Europe/Berlin", clock), clock
    berlin.context.close()


def test_a_critical_ack_without_comment_is_refused_before_submit(
    plant: ServerProcess, browser: Any
) -> None:
    name = "line6.motor_current.hi"
    page = open_console(browser, plant)
    page.click(f'#alarm-table tr[data-alarm="{name}"] button[data-action="ack"]')
    page.wait_for_selector("#ack-dialog[open]")
    assert page.is_disabled("#ack-ok")
    hint = page.text_content('[data-testid="ack-hint"]') or ""
    assert "comment is required" in hint and "critical" in hint, hint
    page.fill("#ack-dialog textarea[name=comment]", "   ")
    assert page.is_disabled("#ack-ok")  # blanks are no comment
    page.fill("#ack-dialog textarea[name=comment]", "pump motor checked")
    assert page.is_enabled("#ack-ok")
    assert page.is_hidden('[data-testid="ack-hint"]')
    page.click("#ack-ok")
    page.wait_for_selector("#ack-dialog[open]", state="detached")
    page.wait_for_selector(f'#alarm-table tr[data-alarm="{name}"][data-state="acked_active"]')
    # A low-priority alarm needs none: the button is ready at once.
    page.click('#alarm-table tr[data-alarm="line2.motor_current.hi"] button[data-action="ack"]')
    assert page.is_enabled("#ack-ok")
    page.click("#ack-dialog button[value=cancel]")
    assert page.js_errors == []
    page.context.close()


def test_silence_horn_shows_only_where_the_sound_is_on(plant: ServerProcess, browser: Any) -> None:
    page = open_console(browser, plant)  # anonymous: sound off
    r = httpx.post(
        f"{plant.http}/api/simulator/faults",
        json={"line": "7", "kind": "step", "tag": "melt_pressure", "offset": 500.0},
    )
    assert r.status_code == 201, r.text
    page.wait_for_selector('body[data-horn="flashing"]', timeout=ms(15))  # alarm, no sound
    assert page.is_hidden('[data-testid="silence"]')
    page.click('[data-testid="sound"]')
    page.wait_for_selector('body[data-horn="sounding"]')
    assert page.is_visible('[data-testid="silence"]')
    page.click('[data-testid="silence"]')
    page.wait_for_selector('body[data-horn="quiet"]')
    assert page.is_hidden('[data-testid="silence"]')
    httpx.delete(f"{plant.http}/api/simulator/faults/{r.json()['id']}")
    page.context.close()


# ---------------------------------------------------------------- finding 8


@pytest.mark.parametrize("size", [PHONE, DESK], ids=["phone", "desk"])
def test_alarm_banner_and_summary_stay_in_view_when_scrolled(
    plant: ServerProcess, browser: Any, size: tuple[int, int]
) -> None:
    page = open_console(browser, plant, size)
    page.wait_for_selector("#banner.active")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function("window.scrollY > 250")  # the page is taller than the screen
    for selector in ("#banner", "#summary", "#banner-text"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size[1] / 2, (
            selector,
            box,
        )
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    screenshot(page, f"issue21-scrolled-{size[0]}")
    page.context.close()


# ---------------------------------------------------------------- finding 4


def pens(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            '[data-testid="trend-box"] .pen', "els => els.map(e => e.dataset.pen)"
        )
    )


TREND = '[data-testid="trend-box"]'


def test_line_view_follows_a_changed_url_for_the_line_it_shows(
    plant: ServerProcess, browser: Any
) -> None:
    page = new_page(browser, *DESK)
    page.goto(plant.http + "/#/line/1?pens=line1.diameter&range=1h")
    page.wait_for_selector(f"{TREND}[data-loaded='1']")
    page.evaluate("location.hash = '#/line/1?pens=line1.line_speed,line3.diameter&range=15m'")
    page.wait_for_selector(f"{TREND}[data-loaded='2']")
    assert pens(page) == ["line1.line_speed", "line3.diameter"]
    assert page.get_attribute(f'{TREND} button[data-range="15m"]', "class") == "on"
    page.go_back()  # back to the first URL: the chart follows again
    page.wait_for_selector(f"{TREND}[data-loaded='3']")
    assert pens(page) == ["line1.diameter"]
    assert page.js_errors == []
    page.context.close()


def test_trend_opens_on_the_tag_in_alarm_and_a_tag_row_adds_a_pen(
    plant: ServerProcess, browser: Any
) -> None:
    # Straight to the URL (the alarm list arrives after the page is built) ...
    page = new_page(browser, *DESK)
    page.goto(plant.http + "/#/line/2")
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=trend-box] .pen')].map(e => e.dataset.pen).join() === 'line2.motor_current'"
    )
    # ... and from the overview.
    page.goto(plant.http + "/")
    wait_live(page)
    page.click('[data-line="2"] .zones')
    page.wait_for_selector(f"{TREND}[data-loaded]")
    assert pens(page) == ["line2.motor_current"]
    page.click('[data-tag-row="line_speed"]')
    page.wait_for_function("location.hash.includes('pens=line2.motor_current,line2.line_speed')")
    assert pens(page) == ["line2.motor_current", "line2.line_speed"]
    page.click('[data-tag-row="line_speed"]')  # again: not a second pen
    assert pens(page) == ["line2.motor_current", "line2.line_speed"]
    assert page.js_errors == []
    page.context.close()


def test_limits_of_several_pens_and_units_do_not_pile_up(
    plant: ServerProcess, browser: Any
) -> None:
    page = new_page(browser, *DESK)
    page.goto(
        plant.http + "/#/line/1?pens=line1.diameter,line2.diameter,line1.line_speed&range=15m"
    )
    wait_live(page)
    page.wait_for_selector(f"{TREND}[data-limit-pens]")
    # One pen's limits per unit: the first of each unit, until another pen is picked.
    assert page.get_attribute(TREND, "data-limit-pens") == "line1.diameter,line1.line_speed"
    # diameter: hihi, hi, lo, lolo and the setpoint at most; line speed: hi and the setpoint.
    assert 1 <= int(page.get_attribute(TREND, "data-limits-drawn") or 0) <= 7

    def labels_apart() -> None:
        labels = page.evaluate("window.consoleState.state.detail.trend.limitLabels")
        assert labels
        for side in ("left", "right"):
            boxes = sorted((b["top"], b["bottom"]) for b in labels if b["side"] == side)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(boxes)), boxes

    labels_apart()
    page.click(f'{TREND} .pen[data-pen="line2.diameter"] .pen-name')
    page.wait_for_function(
        "document.querySelector('[data-testid=trend-box]').dataset.limitPens === 'line2.diameter,line1.line_speed'"
    )
    labels_apart()
    screenshot(page, "issue21-limits-1280")
    assert page.js_errors == []
    page.context.close()


@pytest.mark.parametrize("size", [PHONE, DESK], ids=["phone", "desk"])
def test_tag_names_do_not_wrap_mid_word(
    plant: ServerProcess, browser: Any, size: tuple[int, int]
) -> None:
    page = new_page(browser, *size)
    page.goto(plant.http + "/#/line/3")
    page.wait_for_selector(f"{TREND}[data-loaded]")
    lines = page.eval_on_selector_all(
        "[data-tag-row] td:first-child .mono",
        "els => els.map(e => [e.textContent, e.getClientRects().length])",
    )
    assert len(lines) == 10 and all(n == 1 for _, n in lines), lines
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    screenshot(page, f"issue21-line-{size[0]}")
    page.context.close()


# ---------------------------------------------------------------- finding 9


def test_pasting_the_initial_admin_password_file_logs_in(
    plant: ServerProcess, browser: Any
) -> None:
    content = (plant.workdir / "data" / "initial-admin-password").read_text()
    page = new_page(browser, *DESK)
    page.goto(plant.http + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", content)  # the whole file, newline and all
    page.click("button[type=submit]")
    page.wait_for_selector('[data-testid="user"]:has-text("admin (admin)")')
    page.context.close()
