"""The `[notifications]` section: rules and targets, validated with key paths.

PlantConfig keeps the section as a plain table (core imports nothing of ours); this module
validates it the way drivers validate their `settings`, and `notification_problems` reports
every problem with its dotted key path, as `scada check-config` prints them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scada.core.config import PlantConfig, Severity, format_path
from scada.core.errors import ConfigError

EventName = Literal[
    "raised",
    "cleared",
    "acknowledged",
    "shelved",
    "unshelved",
    "suppressed",
    "unsuppressed",
    "escalated",
    "unacknowledged",
]
DEFAULT_EVENTS: tuple[EventName, ...] = ("raised",)
PRIORITY_OF_SEVERITY: dict[str, int] = {"critical": 1, "high": 2, "medium": 3, "low": 4}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RetrySettings(_Model):
    """Exponential backoff between delivery attempts: initial, ×multiplier, capped at max."""

    initial_seconds: float = Field(default=5.0, gt=0)
    max_seconds: float = Field(default=300.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)


class WebhookTarget(_Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str
    # The HMAC key: given here, or (better) the name of an environment variable holding it.
    secret: str | None = Field(default=None, min_length=16, repr=False)
    secret_env: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    ca_file: str | None = None  # extra CA bundle to trust for https (a private CA)
    retry: RetrySettings | None = None  # default: [notifications.retry]

    def secret_value(self) -> bytes:
        value = self.secret if self.secret is not None else os.environ.get(self.secret_env or "")
        return (value or "").encode()


class EmailTarget(_Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: plain connect then STARTTLS (port 587); tls: TLS from the start (465);
    # none: only for a relay on the same host, and never with a login.
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[SCADA]"
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    # 0: one message per event (rate limited below); N > 0: one digest per N minutes,
    # counted from the first event waiting.
    digest_minutes: float = Field(default=0.0, ge=0)
    # At most `max_messages` mails per `per_minutes` (a token bucket). Events that wait for a
    # token are sent together as one digest, so a flood sends a digest, not a mail per alarm.
    max_messages: int = Field(default=5, ge=1)
    per_minutes: float = Field(default=10.0, gt=0)
    max_events_per_message: int = Field(default=500, ge=1)
    retry: RetrySettings | None = None

    def password_value(self) -> str:
        if self.password is not None:
            return self.password
        return os.environ.get(self.password_env or "", "")


class RuleConfig(_Model):
    name: str = Field(default="", max_length=64)
    # Which events: alarm journal events, plus "unacknowledged" (N minutes after raised).
    events: list[EventName] = Field(default_factory=lambda: list(DEFAULT_EVENTS), min_length=1)
    unacknowledged_minutes: float | None = Field(default=None, gt=0)
    # Filters; an empty list matches everything. Priority 1 = critical ... 4 = low.
    priority: list[int] = Field(default_factory=list)
    severity: list[Severity] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)
    alarms: list[str] = Field(default_factory=list)  # glob patterns: "line*.diameter.*"
    targets: list[str] = Field(min_length=1)


class NotificationsConfig(_Model):
    outbox_path: str | None = None  # default: <data_dir>/notify.sqlite
    retry: RetrySettings = RetrySettings()
    # A target whose outbox grows past this drops its oldest rows (counted, logged once).
    max_queued: int = Field(default=100_000, ge=10)
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    email: list[EmailTarget] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)

    @property
    def targets(self) -> list[WebhookTarget | EmailTarget]:
        return [*self.webhooks, *self.email]

    def rule_name(self, index: int) -> str:
        return self.rules[index].name or f"rule{index + 1}"


def notifications_of(config: PlantConfig) -> NotificationsConfig:
    """The validated section; raises ConfigError listing every problem."""
    problems = notification_problems(config)
    if problems:
        raise ConfigError("[notifications]", problems)
    return NotificationsConfig.model_validate(config.notifications)


def notification_problems(
    config: PlantConfig, *, environment: bool = True
) -> list[tuple[str, str]]:
    """Every problem of the section with its key path. environment=False skips the checks
    of the secrets' environment variables (for tools that do not send anything)."""
    try:
        section = NotificationsConfig.model_validate(config.notifications)
    except ValidationError as err:
        return [_problem(e) for e in err.errors()]
    problems = _semantic_problems(section, {line.id for line in config.lines})
    return [p for p in problems if environment or not p[0].endswith("_env")]


def _problem(error: Any) -> tuple[str, str]:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    return format_path(("notifications", *error["loc"])), message


def _semantic_problems(section: NotificationsConfig, lines: set[str]) -> Iterator[tuple[str, str]]:
    names: set[str] = set()
    paths = [f"notifications.webhooks[{i}]" for i in range(len(section.webhooks))]
    paths += [f"notifications.email[{i}]" for i in range(len(section.email))]
    for path, target in zip(paths, section.targets, strict=True):
        if target.name in names:
            yield f"{path}.name", f"duplicate target name {target.name!r}"
        names.add(target.name)
        if isinstance(target, WebhookTarget):
            yield from _webhook_problems(path, target)
        else:
            yield from _email_problems(path, target)
    rule_names: set[str] = set()
    for i, rule in enumerate(section.rules):
        path = f"notifications.rules[{i}]"
        name = section.rule_name(i)
        if name in rule_names:
            yield f"{path}.name", f"duplicate rule name {name!r}"
        rule_names.add(name)
        yield from _rule_problems(path, rule, names, lines)


def _ca_file_problems(path: str, ca_file: str | None) -> Iterator[tuple[str, str]]:
    if ca_file is None:
        return
    if not os.path.isabs(ca_file):
        yield f"{path}.ca_file", "must be an absolute path"
    elif not os.access(ca_file, os.R_OK):
        yield f"{path}.ca_file", "cannot read this file"


def _webhook_problems(path: str, target: WebhookTarget) -> Iterator[tuple[str, str]]:
    yield from _ca_file_problems(path, target.ca_file)
    url = urlsplit(target.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        yield f"{path}.url", "must be an http:// or https:// URL with a host"
    if (target.secret is None) == (target.secret_env is None):
        yield f"{path}.secret", "give exactly one of secret or secret_env (the HMAC key)"
    elif target.secret_env is not None and len(os.environ.get(target.secret_env, "")) < 16:
        yield (
            f"{path}.secret_env",
            f"environment variable {target.secret_env} is unset or shorter than 16 characters",
        )


def _email_problems(path: str, target: EmailTarget) -> Iterator[tuple[str, str]]:
    yield from _ca_file_problems(path, target.ca_file)
    if target.username is not None:
        if target.security == "none":
            yield (
                f"{path}.security",
                "a login needs starttls or tls (the password would go in clear)",
            )
        if (target.password is None) == (target.password_env is None):
            yield (
                f"{path}.password",
                "with a username, give exactly one of password or password_env",
            )
        elif target.password_env is not None and not os.environ.get(target.password_env):
            yield f"{path}.password_env", f"environment variable {target.password_env} is unset"
    for j, address in enumerate(target.to):
        if "@" not in address:
            yield f"{path}.to[{j}]", "not an e-mail address"
    if "@" not in target.sender:
        yield f"{path}.from", "not an e-mail address"


def _rule_problems(
    path: str, rule: RuleConfig, targets: set[str], lines: set[str]
) -> Iterator[tuple[str, str]]:
    wants_unack = "unacknowledged" in rule.events
    if wants_unack and rule.unacknowledged_minutes is None:
        yield f"{path}.unacknowledged_minutes", "needed for the event 'unacknowledged'"
    if not wants_unack and rule.unacknowledged_minutes is not None:
        yield f"{path}.unacknowledged_minutes", "only used with the event 'unacknowledged'"
    for j, target in enumerate(rule.targets):
        if target not in targets:
            yield f"{path}.targets[{j}]", f"no webhook or email target named {target!r}"
    for j, line in enumerate(rule.lines):
        if line not in lines:
            yield f"{path}.lines[{j}]", f"no line with id {line!r}"
    for j, priority in enumerate(rule.priority):
        if not 1 <= priority <= 4:
            yield f"{path}.priority[{j}]", "priorities are 1 (critical) to 4 (low)"
