"""Notifications on the real server (`scada serve` subprocess): a webhook receiver that is
down while alarms are raised, across a server killed with SIGKILL and started again, then comes back and answers 503 to its
first deliveries, ends up with every routed event once (by event id), in journal order,
signed; the server logs the outage once per process and the recovery once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import OPEN_PLANT, ServerProcess, eventually, free_port
from tests.integration.notify_receivers import WebhookReceiver

SECRET = "e2e-webhook-secret-0123456789abcdef"
ROUTED = ("raised", "cleared")


def routed_events(server: ServerProcess) -> list[dict[str, Any]]:
    """Line 3's raised/cleared events as the journal holds them, oldest first."""
    r = httpx.get(f"{server.http}/api/alarms/history", params={"line": "3", "limit": 1000})
    events = [e for e in r.json()["events"] if e["event"] in ROUTED]
    return sorted(events, key=lambda e: e["event_id"])


def target_state(server: ServerProcess) -> dict[str, Any]:
    state = httpx.get(f"{server.http}/api/notifications").json()
    (target,) = state["targets"]
    return dict(target)


def test_webhook_delivery_survives_a_dead_receiver_and_a_server_restart(
    server_factory: Callable[..., ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCADA_TEST_WEBHOOK_SECRET", SECRET)  # the server inherits it
    receiver = WebhookReceiver(free_port(), SECRET.encode())  # not started: down
    notifications = {
        "retry": {"initial_seconds": 0.2, "max_seconds": 1.0},
        "webhooks": [
            {"name": "hook", "url": receiver.url, "secret_env": "SCADA_TEST_WEBHOOK_SECRET"}
        ],
        "rules": [{"name": "line3", "lines": ["3"], "events": list(ROUTED), "targets": ["hook"]}],
    }
    server = server_factory({**OPEN_PLANT, "notifications": notifications})
    r = httpx.post(
        f"{server.http}/api/simulator/faults",
        json={"line": "3", "kind": "sensor_dropout", "tag": "*"},
    )
    assert r.status_code == 201
    eventually(lambda: routed_events(server), timeout=20)
    state = eventually(
        lambda: (s := target_state(server))["failed_attempts"] >= 2 and s, timeout=20
    )
    assert state["queued"] >= 1 and state["delivered"] == 0
    assert state["last_error"] == "connection refused" and state["outage_since"]
    assert state["destination"] == f"http://127.0.0.1:{receiver.port}"
    metrics = httpx.get(f"{server.http}/metrics").text
    assert 'scada_notify_up{target="hook"} 0.0' in metrics
    assert 'scada_notify_queued{target="hook"}' in metrics

    server.kill()  # SIGKILL: no shutdown
    server.start()
    # The injected fault survives the restart (scada.plant.faultstore): clear it, so the
    # alarms clear and their notifications go out too.
    for fault in httpx.get(f"{server.http}/api/simulator/faults").json()["faults"]:
        httpx.delete(f"{server.http}/api/simulator/faults/{fault['id']}")
    receiver.fail_next = 2  # recorded, then 503: two deliveries come twice
    receiver.start()
    try:

        def all_delivered() -> bool:
            want = [e["event_id"] for e in routed_events(server)]
            got = [b["alarm"]["event_id"] for b in receiver.unique()]
            return "cleared" in {e["event"] for e in receiver.unique()} and got == want

        eventually(all_delivered, timeout=30)
        eventually(lambda: target_state(server)["queued"] == 0, timeout=10)
    finally:
        receiver.stop()
    bodies = receiver.unique()
    assert {b["alarm"]["production_line_id"] for b in bodies} == {"3"}
    assert len(receiver.requests) == len(bodies) + 2  # the 503s were retried, nothing else
    assert all(r["signed"] for r in receiver.requests)
    assert all(r["headers"]["X-Scada-Event-Id"] == r["body"]["id"] for r in receiver.requests)
    state = target_state(server)
    assert state["delivered"] == len(bodies) and state["outage_since"] is None
    metrics = httpx.get(f"{server.http}/metrics").text
    assert 'scada_notify_up{target="hook"} 1.0' in metrics
    log = server.log()
    assert log.count("notifications to hook") == 3, log  # failing (x2 processes), recovered
    assert log.count("recovered after") == 1
    assert SECRET not in log and "in-the-query" not in log
