"""Acknowledge 50 selected alarms from the console with one comment: 50 events, 50 audits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser.conftest import admin_token, audit_records, new_page, wait_live
from tests.conftest import ServerProcess, default_config_dict, eventually, ms

COMMENT = "shift start: all standing alarms reviewed"


@pytest.fixture(scope="module")
def fifty(module_servers: Callable[..., ServerProcess]) -> ServerProcess:
    base = default_config_dict()
    # 25 lines, each with two low-priority alarms standing from the start.
    base["lines"] = [{"id": str(i), "name": f"Line {i}"} for i in range(1, 26)]
    tags = base["line_defaults"]["tags"]
    tags["motor_current"]["limits"] = {"hi": {"value": 50.0, "severity": "low"}}
    tags["melt_pressure"]["limits"] = {"hi": {"value": 100.0, "severity": "low"}}
    base["auth"] = {"anonymous_role": "operator"}
    return module_servers(base=base)


def test_ack_of_50_selected_alarms_with_one_comment(fifty: ServerProcess, browser: Any) -> None:
    page = new_page(browser)
    page.goto(fifty.http + "/")
    wait_live(page)
    page.wait_for_function(
        "document.querySelectorAll('#alarm-table tbody tr.unacked').length === 50", timeout=ms(20)
    )
    page.check("#select-all")
    assert page.text_content('[data-testid="ack-selected"]') == "Ack selected (50)"
    page.click('[data-testid="ack-selected"]')
    page.fill("#ack-dialog textarea[name=comment]", COMMENT)
    page.click("#ack-ok")
    page.wait_for_function(
        "document.querySelectorAll('#alarm-table tbody tr.unacked').length === 0", timeout=ms(20)
    )
    # The rows turn acknowledged from the socket's events, which can come before the HTTP reply
    # that closes the dialog: wait for the reply's effect, not for a race.
    page.wait_for_selector("#ack-dialog", state="hidden", timeout=ms(20))
    events = httpx.get(f"{fifty.http}/api/alarms/history", params={"limit": "1000"}).json()[
        "events"
    ]
    acked = [e for e in events if e["event"] == "acknowledged" and e["comment"] == COMMENT]
    assert len(acked) == 50 and len({e["alarm"] for e in acked}) == 50
    token = admin_token(fifty)
    audits = eventually(
        lambda: [a for a in audit_records(fifty, token, "ack") if a["detail"] == COMMENT]
    )
    assert len(audits) == 50 and all(a["result"] == "ok" for a in audits)
    assert page.js_errors == []
    page.context.close()
