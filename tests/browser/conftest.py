"""Headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.core.config import deep_merge
from tests.conftest import ServerProcess, ms, write_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("SCADA_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("chromium is required (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # The server's CSP forbids eval, which wait_for_function's string predicates need; the
    # dashboard under the real CSP is checked in tests/integration/test_nginx.py.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    pg.js_errors = errors
    yield pg
    context.close()


@pytest.fixture(scope="module")
def module_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    """Servers shared by every test of a module (a server start costs a second or two)."""
    servers: list[ServerProcess] = []

    def make(
        overrides: dict[str, Any] | None = None,
        base: dict[str, Any] | None = None,
        before_start: Callable[[Path, Path], None] | None = None,
    ) -> ServerProcess:
        """before_start(config_path, data_dir) runs before the server starts."""
        workdir = tmp_path_factory.mktemp("plant")
        here = {"server": {"data_dir": str(workdir / "data")}}
        config = write_config(workdir / "plant.toml", deep_merge(here, overrides or {}), base=base)
        if before_start is not None:
            (workdir / "data").mkdir(exist_ok=True)
            before_start(config, workdir / "data")
        server = ServerProcess(config, workdir)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


def admin_token(server: ServerProcess) -> str:
    return server.token("admin", "test-admin")  # minted once per server


def audit_records(server: ServerProcess, token: str, action: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.http}/api/audit",
        params={"action": action, "limit": "1000"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def new_page(browser: Any, width: int = 1400, height: int = 1000, **options: Any) -> Any:
    """A page in a context of its own that collects the page's JS errors in `js_errors`;
    `options` go to the context (e.g. ignore_https_errors behind a self-signed nginx)."""
    # bypass_csp: see the `page` fixture above.
    context = browser.new_context(
        viewport={"width": width, "height": height},
        **{"accept_downloads": True, "bypass_csp": True, **options},
    )
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    pg.js_errors = errors
    return pg


def wait_live(page: Any, timeout: float | None = None) -> None:
    """Until the page shows live data (`timeout` in ms, from conftest.ms; 15 s scaled)."""
    page.wait_for_selector('body[data-live="yes"]', timeout=ms(15) if timeout is None else timeout)


def assert_nothing_shown_as_live(page: Any) -> None:
    """NO LIVE DATA on the page: every value struck (stale), every line state unknown, every
    alarm action disabled."""
    qualities = page.eval_on_selector_all(".tile .val", "els => els.map(e => e.dataset.quality)")
    assert qualities and set(qualities) == {"stale"}
    states = page.eval_on_selector_all(
        '.tile [data-role="state"]', "els => els.map(e => e.textContent)"
    )
    assert set(states) == {"unknown"}
    buttons = page.eval_on_selector_all(
        "#alarm-table button[data-action]", "els => els.map(e => e.disabled)"
    )
    assert buttons and all(buttons)
