"""Issue #21: the access log does not write a line for every periodic poll of every console."""

from __future__ import annotations

import httpx

from tests.conftest import OPEN_PLANT, ServerProcess, eventually


def test_periodic_polls_are_not_logged_but_other_requests_and_failures_are(
    server_factory: object,
) -> None:
    server: ServerProcess = server_factory(OPEN_PLANT)  # type: ignore[operator]
    for _ in range(5):  # what a console does every 3 s
        assert httpx.get(f"{server.http}/api/devices").status_code == 200
    assert httpx.get(f"{server.http}/api/lines").status_code == 200
    assert httpx.get(f"{server.http}/api/nothing-here").status_code == 404
    # Lines are written in request order: once the last one is there, all of them are.
    eventually(lambda: '"GET /api/nothing-here HTTP/1.1" 404' in server.log())
    log = server.log()
    assert '"GET /api/lines HTTP/1.1" 200' in log  # the access log is on
    assert "/api/devices" not in log
