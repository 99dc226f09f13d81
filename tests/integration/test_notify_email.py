"""E-mail notifications through a real SMTP server (aiosmtpd: STARTTLS and AUTH required,
a self-signed certificate trusted through `ca_file`), fed by the real AlarmService."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.integration.notify_plant import Clock, Plant, until, until_async
from tests.integration.notify_receivers import MailReceiver
from tests.unit.conftest_alarms import plant

DIAMETER = {"setpoint": 12.0, "span": [0.0, 30.0], "limits": {"hi": 12.2, "lo": 11.8}}
PASSWORD = "smtp-password-never-logged"


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailReceiver]:
    receiver = MailReceiver(free_port(), tmp_path_factory.mktemp("smtp"), "scada", PASSWORD)
    yield receiver.start()
    receiver.stop()


def mail_section(smtp: MailReceiver, **email: Any) -> dict[str, Any]:
    target = {
        "name": "shift",
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "starttls",
        "ca_file": str(smtp.cert),
        "username": "scada",
        "password": PASSWORD,
        "from": "scada@plant.example",
        "to": ["lead@plant.example", "oncall@plant.example"],
        **email,
    }
    return {
        "retry": {"initial_seconds": 0.05, "max_seconds": 0.2},
        "email": [target],
        "rules": [{"name": "raised", "events": ["raised"], "targets": ["shift"]}],
    }


async def raise_lines(p: Plant, lines: range) -> list[dict[str, Any]]:
    for line in lines:
        p.rig.set("diameter", 12.3, line=str(line))
    return await p.tick()


def test_flood_of_100_alarms_in_10_commits_sends_one_digest(
    smtp: MailReceiver, tmp_path: Path
) -> None:
    smtp.messages.clear()

    async def main() -> list[dict[str, Any]]:
        p = Plant(plant({"diameter": DIAMETER}, lines=100), tmp_path, Clock())
        await p.service.start()
        # One digest per 3 s (0.05 min) counted from the first event waiting.
        notifier = p.notifier(mail_section(smtp, digest_minutes=0.05))
        await notifier.start()
        raised = []
        for start in range(1, 101, 10):  # 100 alarms in 10 commits
            raised += await raise_lines(p, range(start, start + 10))
        assert len(raised) == 100
        await until(lambda: smtp.messages)
        # The receiver holds the mail a moment before the notifier has read the server's
        # answer and counted the delivery (seen on a loaded box: delivered 0).
        state = await until_async(notifier.snapshot, lambda s: s["targets"][0]["delivered"] == 100)
        await notifier.stop()
        await p.service.close()
        (target,) = state["targets"]
        assert target["delivered"] == 100 and target["queued"] == 0
        return raised

    raised = asyncio.run(main())
    (mail,) = smtp.messages
    assert mail["Subject"] == "[SCADA] 100 alarm events (100 raised)"
    assert mail["To"] == "lead@plant.example, oncall@plant.example"
    body = mail.get_payload()
    assert isinstance(body, str)
    names = [e["alarm"] for e in raised]
    positions = [body.index(f" {name}: ") for name in names]
    assert positions == sorted(positions)  # oldest first, every one listed
    assert all(ok for _, ok in smtp.logins) and smtp.logins


def test_one_mail_per_event_and_a_flood_in_one_commit_is_one_digest(
    smtp: MailReceiver, tmp_path: Path
) -> None:
    smtp.messages.clear()

    async def main() -> None:
        p = Plant(plant({"diameter": DIAMETER}, lines=40), tmp_path, Clock())
        await p.service.start()
        notifier = p.notifier(mail_section(smtp, max_messages=3, per_minutes=60))
        await notifier.start()
        (single,) = await raise_lines(p, range(1, 2))
        await until(lambda: len(smtp.messages) == 1)
        assert smtp.messages[0]["Subject"] == (
            f"[SCADA] RAISED P2 line1.diameter.hi: {single['message']}"
        )
        assert smtp.messages[0]["X-Scada-Event-Id"].endswith(f":{single['event_id']}")
        flood = await raise_lines(p, range(2, 41))  # 39 alarms in one commit
        assert len(flood) == 39
        await until(lambda: len(smtp.messages) == 2)
        # Every event went out in those two mails: nothing is left to send a third.
        state = await until_async(notifier.snapshot, lambda s: s["targets"][0]["delivered"] == 40)
        assert state["targets"][0]["queued"] == 0
        await notifier.stop()
        await p.service.close()

    asyncio.run(main())
    assert len(smtp.messages) == 2
    assert smtp.messages[1]["Subject"] == "[SCADA] 39 alarm events (39 raised)"


def test_wrong_password_is_a_failure_logged_once_without_the_password(
    smtp: MailReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.messages.clear()

    async def main() -> dict[str, Any]:
        p = Plant(plant({"diameter": DIAMETER}, lines=2), tmp_path, Clock())
        await p.service.start()
        notifier = p.notifier(mail_section(smtp, password="wrong-" + PASSWORD))
        await notifier.start()
        await raise_lines(p, range(1, 3))

        state = await until_async(
            notifier.snapshot, lambda s: s["targets"][0]["failed_attempts"] >= 3
        )
        await notifier.stop()
        await p.service.close()
        return dict(state["targets"][0])

    target = asyncio.run(main())
    assert smtp.messages == []
    assert target["queued"] == 2 and target["last_error"] == "SMTP login refused (535)"
    assert target["destination"] == f"smtp://127.0.0.1:{smtp.port}"
    failing = [r for r in caplog.records if "failing" in r.getMessage()]
    assert len(failing) == 1
    assert PASSWORD not in caplog.text
