"""Webhook notifications in process: the real AlarmService and journal, the outbox file and
a real HTTP receiver that is down, answers 503 after recording, and comes back."""

from __future__ import annotations

import asyncio
import base64
import logging
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from scada.core.timefmt import parse_time
from scada.tools.cluster.selfsigned import make_certificate
from tests.conftest import free_port
from tests.integration.notify_plant import Clock, Plant, until, until_async
from tests.integration.notify_receivers import WebhookReceiver
from tests.unit.conftest_alarms import diameter_plant, plant

DIAMETER = {"setpoint": 12.0, "span": [0.0, 30.0], "limits": {"hi": 12.2, "lo": 11.8}}


def two_lines() -> Any:
    return plant({"diameter": DIAMETER}, lines=2)


SECRET = b"a-webhook-secret-of-32-characters"


def section(url: str, **rule: Any) -> dict[str, Any]:
    return {
        "retry": {"initial_seconds": 0.05, "max_seconds": 0.2},
        "webhooks": [{"name": "ops", "url": url, "secret": SECRET.decode()}],
        "rules": [{"name": "all", "events": ["raised", "cleared"], "targets": ["ops"], **rule}],
    }


async def swing(plant: Plant, times: int) -> None:
    """Raise and clear line 1's diameter high alarm `times` times, acknowledging each."""
    for _ in range(times):
        plant.rig.set("diameter", 12.3)
        (raised,) = await plant.tick()
        plant.rig.set("diameter", 12.0)
        await plant.tick()
        await plant.service.ack(raised["id"], "ann", "seen")


def run(main: Coroutine[Any, Any, None], receiver: WebhookReceiver) -> None:
    try:
        asyncio.run(main)
    finally:
        receiver.stop()


def expected_ids(plant: Plant, instance: str) -> list[str]:
    return [
        f"{instance}:{e['event_id']}"
        for e in plant.journal()
        if e["event"] in ("raised", "cleared")
    ]


def test_dead_receiver_then_restart_then_back_receives_each_event_once_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scada.notify")
    receiver = WebhookReceiver(free_port(), SECRET)

    async def main() -> None:
        plant = Plant(diameter_plant(), tmp_path, Clock())
        await plant.service.start()
        notifier = await plant.started(section(receiver.url))
        assert notifier.outbox is not None
        instance = notifier.outbox.instance
        await swing(plant, 3)  # receiver down: connection refused

        def failing(state: dict[str, Any]) -> bool:
            (ops,) = state["targets"]
            return bool(ops["queued"] == 6 and ops["failed_attempts"] >= 3)

        state = await until_async(notifier.snapshot, failing)
        (ops,) = state["targets"]
        assert ops["delivered"] == 0 and ops["last_error"] == "connection refused"
        assert ops["outage_since"] is not None and ops["destination"] == receiver.url[:22]
        await notifier.stop()  # a restart of notify while events keep being committed

        await swing(plant, 2)
        notifier = await plant.started(section(receiver.url))
        receiver.fail_next = 3  # recorded, then 503: three retries the receiver already has
        receiver.start()
        want = expected_ids(plant, instance)
        assert len(want) == 10
        await until(lambda: [b["id"] for b in receiver.unique()] == want)
        state = await until_async(notifier.snapshot, lambda s: s["targets"][0]["queued"] == 0)
        (ops,) = state["targets"]
        assert ops["delivered"] == 10 and ops["outage_since"] is None
        assert ops["last_success"] is not None
        assert len(receiver.requests) == 13  # the three 503s were retried
        assert all(r["signed"] for r in receiver.requests)
        first = receiver.requests[0]
        assert first["headers"]["X-Scada-Event-Id"] == first["body"]["id"]
        assert first["body"]["alarm"]["alarm"] == "line1.diameter.hi"
        assert [b["event"] for b in receiver.unique()] == ["raised", "cleared"] * 5
        await notifier.stop()
        await plant.service.close()

    run(main(), receiver)
    failing_logs = [r for r in caplog.records if "failing" in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    # One line per outage (the first run's, and the restarted notifier's), one recovery.
    assert len(failing_logs) == 2 and len(recovered) == 1
    text = caplog.text
    assert SECRET.decode() not in text and "in-the-query" not in text and "/hooks" not in text
    mode = stat.S_IMODE((tmp_path / "notify.sqlite").stat().st_mode)
    assert mode == 0o600


def test_events_committed_while_notify_was_down_are_caught_up(tmp_path: Path) -> None:
    receiver = WebhookReceiver(free_port(), SECRET).start()

    async def main() -> None:
        plant = Plant(diameter_plant(), tmp_path, Clock())
        await plant.service.start()
        notifier = await plant.started(
            section(receiver.url)
        )  # a new outbox starts at the journal's newest event
        await notifier.stop()
        await swing(plant, 2)  # committed while notify is down
        await plant.service.close()
        # Server restart: a new AlarmService over the same journal, then notify again.
        plant = Plant(diameter_plant(), tmp_path, Clock())
        await plant.service.start()
        notifier = await plant.started(section(receiver.url))
        assert notifier.outbox is not None
        want = expected_ids(plant, notifier.outbox.instance)
        assert len(want) == 4
        await until(lambda: [b["id"] for b in receiver.unique()] == want)
        await notifier.stop()
        await plant.service.close()

    run(main(), receiver)
    assert len(receiver.requests) == 4


def test_unacknowledged_for_n_minutes(tmp_path: Path) -> None:
    """Two alarms raised; one is acknowledged in time: only the other is reminded of, once,
    also when the reminder fell due while the notifier was stopped."""
    receiver = WebhookReceiver(free_port(), SECRET).start()
    rule = {"events": ["unacknowledged"], "unacknowledged_minutes": 15}

    async def main() -> None:
        clock = Clock()
        plant = Plant(two_lines(), tmp_path, clock)
        await plant.service.start()
        notifier = await plant.started(section(receiver.url, **rule))
        plant.rig.set("diameter", 12.3, line="1")
        plant.rig.set("diameter", 12.3, line="2")
        one, two = await plant.tick()
        await plant.service.ack(one["id"], "ann", "on it")
        assert notifier.outbox is not None and notifier.feeder is not None
        await until(lambda: notifier.feeder is not None and notifier.feeder.cursor == 3)
        await notifier.stop()
        clock.now += 14 * 60
        notifier = await plant.started(section(receiver.url, **rule))
        assert notifier.outbox is not None
        # What the feeder fires from: the reminder is there, and not due yet.
        assert await notifier.db(notifier.outbox.due_timers, clock.now) == []
        assert await notifier.db(notifier.outbox.next_due) == parse_time(two["raised_at"]) + 15 * 60
        await notifier.stop()
        assert receiver.requests == []
        clock.now += 2 * 60  # 16 minutes after raised, while notify is stopped
        notifier = await plant.started(section(receiver.url, **rule))
        await until(lambda: len(receiver.unique()) == 1)
        (body,) = receiver.unique()
        assert body["event"] == "unacknowledged" and body["unacknowledged_minutes"] == 15
        assert body["alarm"]["id"] == two["id"] and body["alarm"]["alarm"] == "line2.diameter.hi"
        assert notifier.outbox is not None
        assert await notifier.db(notifier.outbox.next_due) is None  # nothing else pending
        await notifier.stop()
        await plant.service.close()

    run(main(), receiver)
    assert len(receiver.requests) == 1


def test_https_webhook_verifies_the_certificate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A private CA given as ca_file is trusted; without it the same receiver is refused.
    The refused target's notification stays queued, also when the target leaves the config."""
    receiver = WebhookReceiver(free_port(), SECRET, tls=make_certificate(tmp_path / "tls")).start()
    assert receiver.tls is not None
    hooks: dict[str, Any] = {
        "retry": {"initial_seconds": 0.05, "max_seconds": 0.2},
        "webhooks": [
            {
                "name": "trusted",
                "url": receiver.url,
                "secret": SECRET.decode(),
                "ca_file": str(receiver.tls[0]),
            },
            {"name": "untrusted", "url": receiver.url, "secret": SECRET.decode()},
        ],
        "rules": [{"targets": ["trusted", "untrusted"]}],
    }

    async def main() -> None:
        plant = Plant(diameter_plant(), tmp_path, Clock())
        await plant.service.start()
        notifier = await plant.started(hooks)
        await swing(plant, 1)
        state = await until_async(
            notifier.snapshot,
            lambda s: s["targets"][0]["delivered"] == 1 and s["targets"][1]["failed_attempts"] >= 2,
        )
        trusted, untrusted = state["targets"]
        assert trusted["queued"] == 0 and untrusted["queued"] == 1
        assert untrusted["delivered"] == 0
        assert untrusted["last_error"].startswith("TLS error: CERTIFICATE_VERIFY_FAILED")
        await notifier.stop()
        hooks["webhooks"] = hooks["webhooks"][:1]
        hooks["rules"] = [{"targets": ["trusted"]}]
        notifier = await plant.started(hooks)
        await notifier.stop()
        await plant.service.close()

    run(main(), receiver)
    assert len(receiver.requests) == 1 and receiver.requests[0]["signed"]
    assert "holds 1 notification(s) for untrusted, which is no longer configured" in caplog.text


def test_a_full_outbox_drops_the_oldest_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="scada.notify")
    receiver = WebhookReceiver(free_port(), SECRET)  # down until the end
    capped = {**section(receiver.url), "max_queued": 10}

    async def main() -> None:
        plant = Plant(diameter_plant(), tmp_path, Clock())
        await plant.service.start()
        notifier = await plant.started(capped)
        await swing(plant, 10)  # 20 routed events, the outbox keeps 10
        assert notifier.outbox is not None
        want = expected_ids(plant, notifier.outbox.instance)[-10:]
        await until(lambda: notifier.feeder is not None and notifier.feeder.cursor == 30)
        state = await notifier.snapshot()
        (ops,) = state["targets"]
        assert (ops["queued"], ops["dropped"]) == (10, 10)
        receiver.start()
        await until(lambda: [b["id"] for b in receiver.unique()] == want)
        await notifier.stop()
        await plant.service.close()

    run(main(), receiver)
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1


def test_a_replaced_journal_gets_new_event_ids_and_basic_auth_is_sent(tmp_path: Path) -> None:
    receiver = WebhookReceiver(free_port(), SECRET).start()
    url = receiver.url.replace("http://", "http://hook:p%40ss@")

    async def main() -> None:
        plant = Plant(diameter_plant(), tmp_path, Clock())
        await plant.service.start()
        notifier = await plant.started(section(url))
        await swing(plant, 2)
        await until(lambda: len(receiver.unique()) == 4)
        await notifier.stop()
        await plant.service.close()
        for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        plant = Plant(diameter_plant(), tmp_path, Clock())  # a new, empty journal
        await plant.service.start()
        notifier = await plant.started(section(url))
        await swing(plant, 1)  # journal ids 1 and 2 again
        await until(lambda: len(receiver.unique()) == 6)
        await notifier.stop()
        await plant.service.close()

    run(main(), receiver)
    ids = [b["id"] for b in receiver.unique()]
    assert [i.split(":")[1] for i in ids] == ["1", "2", "4", "5", "1", "2"]
    assert len({i.split(":")[0] for i in ids[:4]} | {i.split(":")[0] for i in ids[4:]}) == 2
    auth = {r["headers"]["Authorization"] for r in receiver.requests}
    assert auth == {"Basic " + base64.b64encode(b"hook:p@ss").decode()}
