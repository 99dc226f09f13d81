"""A restart keeps the simulator faults an engineer injected (issue #21): they are active
again after the server comes back, with what was left of their duration, and the log says the
simulated values restarted from steady state."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import OPEN_PLANT, ServerProcess, eventually


def faults(server: ServerProcess) -> list[dict[str, Any]]:
    body: dict[str, list[dict[str, Any]]] = httpx.get(f"{server.http}/api/simulator/faults").json()
    return body["faults"]


def test_injected_faults_are_active_again_after_a_restart(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(OPEN_PLANT)
    post = f"{server.http}/api/simulator/faults"
    held = httpx.post(post, json={"line": "3", "kind": "heater_failure", "zone": 2})
    timed = httpx.post(post, json={"line": "6", "kind": "diameter_drift", "rate": 0.01,
                                   "duration": 3600})  # fmt: skip
    gone = httpx.post(post, json={"line": "1", "kind": "line_stop"})
    assert held.status_code == timed.status_code == gone.status_code == 201
    assert httpx.delete(f"{post}/{gone.json()['id']}").status_code == 200
    kept = server.workdir / "data" / "simulator-faults.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert len(json.loads(kept.read_text())["faults"]) == 2

    server.stop()
    server.start()
    after = eventually(lambda: faults(server))
    assert sorted((f["line"], f["kind"]) for f in after) == [
        ("3", "heater_failure"),
        ("6", "diameter_drift"),
    ]
    heater = next(f for f in after if f["kind"] == "heater_failure")
    assert heater["zone"] == 2 and heater["duration"] is None
    drift = next(f for f in after if f["kind"] == "diameter_drift")
    assert drift["rate"] == 0.01 and 0 < drift["remaining"] <= 3600
    assert "injected before the restart are active again" in server.log()
