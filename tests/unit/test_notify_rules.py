"""Notification rules (pure routing), config validation with key paths, the payload."""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

import orjson
import pytest

from scada.core.config import config_from_dict, default_config_text, parse_config
from scada.notify.delivery import TokenBucket, backoff
from scada.notify.payload import notification, signature
from scada.notify.rules import route
from scada.notify.settings import NotificationsConfig, notification_problems
from tests.conftest import ROOT

T = 1_795_341_600.0


def alarm(**over: Any) -> dict[str, Any]:
    base = {
        "id": 7,
        "alarm": "line3.diameter.hi",
        "production_line_id": "3",
        "severity": "high",
        "event": "raised",
        "state": "unacked_active",
        "alarm_state": "unacked_active",
        "raised_at": "2026-11-22T10:00:00.000Z",
        "acked_at": None,
        "event_id": 41,
    }
    return {**base, **over}


def section(*rules: dict[str, Any]) -> NotificationsConfig:
    return NotificationsConfig.model_validate(
        {
            "webhooks": [{"name": "ops", "url": "http://h/x", "secret": "s" * 16}],
            "email": [{"name": "mail", "host": "smtp", "from": "a@b", "to": ["c@d"]}],
            "rules": list(rules),
        }
    )


@pytest.mark.parametrize(
    ("rule", "event", "routed"),
    [
        ({}, alarm(), True),
        ({"events": ["cleared"]}, alarm(), False),
        ({"events": ["cleared"]}, alarm(event="cleared", state="unacked_cleared"), True),
        ({"priority": [1]}, alarm(), False),  # high is priority 2
        ({"priority": [1, 2]}, alarm(), True),
        ({"priority": [1]}, alarm(priority=1), True),  # an explicit priority wins
        ({"severity": ["critical"]}, alarm(), False),
        ({"severity": ["high", "critical"]}, alarm(), True),
        ({"lines": ["1", "2"]}, alarm(), False),
        ({"lines": ["3"]}, alarm(), True),
        ({"alarms": ["line*.body_temperature*"]}, alarm(), False),
        ({"alarms": ["line*.body_temperature*", "line?.diameter.*"]}, alarm(), True),
        ({"alarms": ["LINE3.*"]}, alarm(), False),  # patterns are case-sensitive
        ({}, alarm(state="shelved"), False),  # not annunciated: not sent
        ({}, alarm(state="suppressed"), False),
        ({"events": ["suppressed"]}, alarm(event="suppressed", state="suppressed"), True),
    ],
)
def test_rule_filters(rule: dict[str, Any], event: dict[str, Any], routed: bool) -> None:
    config = section({"targets": ["ops"], **rule})
    assert bool(route(config, event).deliveries) is routed


def test_one_event_to_several_targets_names_every_rule_that_matched() -> None:
    config = section(
        {"name": "high", "severity": ["high"], "targets": ["ops", "mail"]},
        {"name": "line3", "lines": ["3"], "targets": ["ops"]},
        {"name": "other", "lines": ["4"], "targets": ["mail"]},
    )
    assert route(config, alarm()).deliveries == {"ops": ["high", "line3"], "mail": ["high"]}


def test_unacknowledged_timers_start_refresh_and_cancel() -> None:
    config = section(
        {
            "name": "late",
            "events": ["unacknowledged"],
            "unacknowledged_minutes": 10,
            "targets": ["ops"],
        }
    )
    started = route(config, alarm())
    (timer,) = started.timers
    assert timer.start and timer.due_at == T + 600 and timer.targets == ("ops",)
    assert started.deliveries == {}
    cleared = route(config, alarm(event="cleared", state="unacked_cleared"))
    assert [t.start for t in cleared.timers] == [False] and cleared.cancel == []
    acked = route(config, alarm(event="acknowledged", acked_at="2026-11-22T10:01:00.000Z"))
    assert acked.timers == [] and acked.cancel == [7]
    shelved = route(config, alarm(event="shelved", state="shelved"))
    assert shelved.timers == [] and shelved.cancel == [7]
    hidden = route(config, alarm(state="suppressed"))  # raised while suppressed
    assert hidden.timers == []


def problems(section: dict[str, Any], *, environment: bool = True) -> dict[str, str]:
    config = parse_config(default_config_text())
    raw = config.model_dump()
    raw["notifications"] = section
    return dict(notification_problems(config_from_dict(raw), environment=environment))


def test_config_problems_have_key_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    broken = {
        "webhooks": [
            {"name": "ops", "url": "ftp://x", "secret": "s" * 16},
            {
                "name": "ops",
                "url": "https://x",
                "secret_env": "NO_SUCH_SECRET",
                "ca_file": "ca.pem",
            },
        ],
        "email": [
            {
                "name": "m",
                "host": "h",
                "from": "nobody",
                "to": ["x"],
                "security": "none",
                "username": "u",
                "password": "p",
                "ca_file": "/no/such/ca.pem",
            }
        ],
        "rules": [
            {"targets": ["ops", "nope"], "lines": ["99"], "priority": [0]},
            {"events": ["unacknowledged"], "targets": ["m"]},
            {"name": "rule1", "targets": ["m"], "unacknowledged_minutes": 5},
        ],
    }
    # Structural problems (pydantic) are reported first, alone.
    structural: Any = copy.deepcopy(broken)
    structural["webhooks"][0]["secret"] = "short"
    structural["rules"][1]["bogus"] = 1
    assert problems(structural) == {
        "notifications.webhooks[0].secret": "String should have at least 16 characters",
        "notifications.rules[1].bogus": "unknown key",
    }
    found = problems(broken)
    assert found == {
        "notifications.webhooks[0].url": "must be an http:// or https:// URL with a host",
        "notifications.webhooks[1].name": "duplicate target name 'ops'",
        "notifications.webhooks[1].ca_file": "must be an absolute path",
        "notifications.webhooks[1].secret_env": (
            "environment variable NO_SUCH_SECRET is unset or shorter than 16 characters"
        ),
        "notifications.email[0].ca_file": "cannot read this file",
        "notifications.email[0].security": (
            "a login needs starttls or tls (the password would go in clear)"
        ),
        "notifications.email[0].to[0]": "not an e-mail address",
        "notifications.email[0].from": "not an e-mail address",
        "notifications.rules[0].targets[1]": "no webhook or email target named 'nope'",
        "notifications.rules[0].lines[0]": "no line with id '99'",
        "notifications.rules[0].priority[0]": "priorities are 1 (critical) to 4 (low)",
        "notifications.rules[1].unacknowledged_minutes": "needed for the event 'unacknowledged'",
        "notifications.rules[2].name": "duplicate rule name 'rule1'",
        "notifications.rules[2].unacknowledged_minutes": (
            "only used with the event 'unacknowledged'"
        ),
    }
    monkeypatch.setenv("NO_SUCH_SECRET", "x" * 16)
    assert "notifications.webhooks[1].secret_env" not in problems(
        {"webhooks": [{"name": "a", "url": "https://x", "secret_env": "NO_SUCH_SECRET"}]}
    )
    assert problems({}) == {}


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = notification("ab:1", "raised", alarm(), ["r"], T)
    expected = hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert signature(b"k" * 16, body) == f"sha256={expected}"
    assert orjson.loads(body)["alarm"]["alarm"] == "line3.diameter.hi"


def test_backoff_grows_and_is_capped() -> None:
    retry = NotificationsConfig.model_validate(
        {"retry": {"initial_seconds": 1, "max_seconds": 30}}
    ).retry
    assert [backoff(retry, n) for n in (1, 2, 3, 4, 5, 6, 200)] == [1, 2, 4, 8, 16, 30, 30]


def test_the_shipped_example_is_valid_appended_to_the_plant_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCADA_WEBHOOK_SECRET", "x" * 32)
    monkeypatch.setenv("SCADA_SMTP_PASSWORD", "secret")
    text = (ROOT / "config" / "plant.toml").read_text() + (
        ROOT / "config" / "notifications.toml"
    ).read_text()
    config = parse_config(text)
    assert notification_problems(config) == []
    section = NotificationsConfig.model_validate(config.notifications)
    assert [t.name for t in section.targets] == ["ops-chat", "shift-leads"]
    assert len(section.rules) == 3


def test_tools_that_send_nothing_do_not_need_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    section = {"webhooks": [{"name": "a", "url": "https://x", "secret_env": "NO_SUCH_SECRET"}]}
    assert list(problems(section)) == ["notifications.webhooks[0].secret_env"]
    assert problems(section, environment=False) == {}


def test_token_bucket_allows_a_burst_then_one_per_refill() -> None:
    now = [0.0]
    bucket = TokenBucket(3, 60.0, lambda: now[0])  # 3 mails per minute: one every 20 s
    take = bucket.try_take
    assert [take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take() == pytest.approx(20.0)
    now[0] = 10.0
    assert take() == pytest.approx(10.0)
    now[0] = 20.0
    assert take() == 0.0
    now[0] = 1000.0  # a long quiet time refills to the burst, not beyond
    assert [take() for _ in range(4)][-1] > 0
