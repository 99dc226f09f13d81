"""Screenshots of the console for docs/ (1600x1000 and 390x844), from a real server.

    python -m tests.browser.make_screenshots [OUT_DIR]

A day of history (with a one-hour gap 13-14 h ago, "server down") is written before the
server starts, faults make alarms, and the last shots are taken with the server stopped.
Prints the 24-hour trend's load time as the browser measured it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import ARGS, CHROMIUM
from tests.browser.history_fixture import write_history
from tests.conftest import ServerProcess, default_config_dict, ms, write_config
from tests.integration.test_security import cli

SIZES = {"": (1600, 1000), "-phone": (390, 844)}
PASSWORD = "shift-change-0600"


def shoot(pages: dict[str, Any], out: Path, name: str, prepare: Any = None) -> None:
    for suffix, page in pages.items():
        if prepare is not None:
            prepare(page)
        page.wait_for_timeout(400)
        page.screenshot(path=str(out / f"console-{name}{suffix}.png"))


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="console-shots-"))
    overrides = {"server": {"data_dir": str(work / "data")}}
    config = write_config(work / "plant.toml", overrides, base=default_config_dict())
    write_history(config, work / "data" / "history.sqlite", [(24.2, 14.0), (13.0, 0.02)])
    server = ServerProcess(config, work).start()
    try:
        cli(
            server,
            "users",
            "add",
            "m.berg",
            "--role",
            "operator",
            "--password-stdin",
            stdin=PASSWORD,
        )
        engineer = cli(server, "tokens", "create", "--name", "shots", "--role", "engineer")
        token = engineer.strip().splitlines()[-1]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pages = {}
            for suffix, (w, h) in SIZES.items():
                # bypass_csp: wait_for_function's string predicates need eval (as in conftest).
                context = browser.new_context(viewport={"width": w, "height": h}, bypass_csp=True)
                page = context.new_page()
                page.goto(server.http + "/login")
                page.fill("input[name=username]", "m.berg")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector('body[data-live="yes"]', timeout=ms(20))
                pages[suffix] = page
            time.sleep(3)  # sparklines fill
            shoot(pages, out, "overview")

            def fault(**body: Any) -> None:
                r = httpx.post(
                    f"{server.http}/api/simulator/faults",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 201, r.text

            fault(line="3", kind="diameter_drift", rate=0.03)
            fault(line="6", kind="heater_failure", zone=2)
            fault(line="5", kind="sensor_dropout", tag="melt_pressure")
            for page in pages.values():
                page.wait_for_function(
                    "document.querySelectorAll('#alarm-table tbody tr').length >= 4",
                    timeout=ms(60),
                )
            time.sleep(4)
            shoot(pages, out, "alarms")

            def console(page: Any) -> None:
                page.fill("#alarm-filters input[name=text]", "line")
                page.select_option("#alarm-filters select[name=state]", "unacked")
                page.evaluate("document.querySelector('.console').scrollIntoView()")

            shoot(pages, out, "alarm-console", console)

            loads = []

            def trend(page: Any) -> None:
                page.goto(
                    server.http
                    + "/#/line/1?pens=line1.diameter,line1.melt_pressure,line3.diameter&range=24h"
                )
                page.wait_for_selector('[data-testid="trend-box"][data-loaded="1"]', timeout=ms(30))
                loads.append(page.evaluate("window.consoleState.state.detail.trend.loadMs"))
                box = page.locator('[data-testid="trend"] canvas').bounding_box()
                page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)

            shoot(pages, out, "line-trend", trend)
            print(f"24-hour trend, 3 pens, load + draw in the browser: {loads} ms")

            for page in pages.values():
                page.goto(server.http + "/")
                page.wait_for_selector('body[data-live="yes"]', timeout=ms(20))
            server.stop()
            for page in pages.values():
                page.wait_for_selector('[data-testid="no-data"]:not(.hidden)', timeout=ms(20))
            time.sleep(3)
            shoot(pages, out, "no-data")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
