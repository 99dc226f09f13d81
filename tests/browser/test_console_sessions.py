"""Sessions in the console: ended elsewhere, dead cookies, continue as viewer, switch user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser.conftest import new_page, wait_live
from tests.conftest import ServerProcess, ms
from tests.integration.test_security import cli

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def viewer_plant(module_servers: Callable[..., ServerProcess]) -> ServerProcess:
    server = module_servers()
    for name in ("op1", "op2"):
        cli(server, "users", "add", name, "--role", "operator", "--password-stdin", stdin=PASSWORD)
    return server


@pytest.fixture(scope="module")
def closed_plant(module_servers: Callable[..., ServerProcess]) -> ServerProcess:
    server = module_servers({"auth": {"allow_anonymous": False}})
    cli(server, "users", "add", "op1", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    return server


def log_in_from_console(page: Any, user: str) -> None:
    page.click('[data-testid="switch-user"]')
    page.fill("#switch-form input[name=username]", user)
    page.fill("#switch-form input[name=password]", PASSWORD)
    page.click("#switch-ok")
    page.wait_for_function(
        f"document.querySelector('[data-testid=user]').textContent === '{user} (operator)'"
    )
    wait_live(page)


def test_session_ended_elsewhere_drops_the_page_to_view_only_with_a_notice(
    viewer_plant: ServerProcess, browser: Any
) -> None:
    page = new_page(browser)
    page.goto(viewer_plant.http + "/")
    wait_live(page)
    assert page.text_content('[data-testid="user"]') == "not logged in (viewer)"
    log_in_from_console(page, "op1")
    # Shift change in one step: op2 takes over, op1's session is ended.
    log_in_from_console(page, "op2")
    cookie = next(c for c in page.context.cookies() if c["name"] == "scada_session")
    # Logged out elsewhere (another tab, an admin): this page's session is gone.
    r = httpx.post(
        f"{viewer_plant.http}/api/logout",
        cookies={"scada_session": cookie["value"]},
        headers={"Origin": viewer_plant.http},
    )
    assert r.status_code == 200, r.text
    page.wait_for_selector('[data-testid="session-notice"]:not(.hidden)', timeout=ms(10))
    assert "session ended" in (page.text_content('[data-testid="session-notice"]') or "")
    page.wait_for_function(
        "document.querySelector('[data-testid=user]').textContent === 'not logged in (viewer)'"
    )
    wait_live(page)  # the page goes on streaming, view-only
    assert page.js_errors == []
    page.context.close()


def test_a_dead_cookie_never_traps_the_browser(viewer_plant: ServerProcess, browser: Any) -> None:
    page = new_page(browser)
    dead = [{"name": "scada_session", "value": "not-a-session", "url": viewer_plant.http}]
    page.context.add_cookies(dead)
    page.goto(viewer_plant.http + "/")
    wait_live(page)
    assert page.text_content('[data-testid="user"]') == "not logged in (viewer)"
    assert not [c for c in page.context.cookies() if c["name"] == "scada_session"]
    # "Continue as viewer" on the login page works with a dead cookie too.
    page.context.add_cookies(dead)
    page.goto(viewer_plant.http + "/login")
    page.click('[data-testid="continue-as-viewer"]')
    page.wait_for_url(viewer_plant.http + "/")
    wait_live(page)
    assert page.text_content('[data-testid="user"]') == "not logged in (viewer)"
    page.context.close()


def test_without_anonymous_viewing_an_ended_session_goes_to_login_with_the_reason(
    closed_plant: ServerProcess, browser: Any
) -> None:
    page = new_page(browser)
    page.goto(closed_plant.http + "/")
    page.wait_for_url("**/login**")
    page.fill("#login-form input[name=username]", "op1")
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(closed_plant.http + "/")
    wait_live(page)
    assert page.text_content('[data-testid="user"]') == "op1 (operator)"
    cli(closed_plant, "users", "disable", "op1")
    page.wait_for_url("**/login?reason=**", timeout=ms(20))
    reason = page.text_content('[data-testid="login-reason"]') or ""
    assert "session ended" in reason.lower(), reason
    page.click('[data-testid="continue-as-viewer"]')
    page.wait_for_function(
        "document.getElementById('login-error').textContent.includes('does not allow')"
    )
    page.context.close()
