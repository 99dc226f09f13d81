"""What is sent: the notification JSON (stored in the outbox, sent as the webhook body),
its HMAC signature, and the e-mail text of one event or a digest of many."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import orjson

from scada.core.timefmt import iso_ms
from scada.notify.rules import priority_of

SIGNATURE_HEADER = "X-Scada-Signature"
EVENT_ID_HEADER = "X-Scada-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def notification(
    event_id: str,
    event: str,
    alarm: dict[str, Any],
    rules: list[str],
    created_at: float,
    *,
    unacknowledged_minutes: float | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "id": event_id,
        "event": event,
        "rules": rules,
        "created_at": iso_ms(created_at),
        "alarm": alarm,
    }
    if unacknowledged_minutes is not None:
        body["unacknowledged_minutes"] = unacknowledged_minutes
    return orjson.dumps(body)


def signature(secret: bytes, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the exact body bytes>`, as the receiver recomputes it."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def email_message(
    bodies: list[bytes], *, sender: str, to: list[str], subject_prefix: str
) -> EmailMessage:
    """One event: a mail about it; several: one digest listing them in order."""
    items = [orjson.loads(b) for b in bodies]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(usegmt=True)
    ids = [str(i["id"]) for i in items]
    # The same events always give the same Message-ID: a resend after a crash is a duplicate
    # a mail client can recognise.
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<{digest}@scada-notify>"
    if len(items) == 1:
        msg["Subject"] = f"{subject_prefix} {_headline(items[0])}"
        msg[EVENT_ID_HEADER] = ids[0]
        msg.set_content(_details(items[0]))
    else:
        kinds = Counter(str(i["event"]) for i in items)
        summary = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        msg["Subject"] = f"{subject_prefix} {len(items)} alarm events ({summary})"
        msg["X-Scada-Event-Count"] = str(len(items))
        lines = [f"{len(items)} alarm events, oldest first:", ""]
        lines += [_line(i) for i in items]
        lines += ["", "Event ids: " + " ".join(ids)]
        msg.set_content("\n".join(lines) + "\n")
    return msg


def _headline(item: dict[str, Any]) -> str:
    alarm = item["alarm"]
    return (
        f"{_event_label(item)} P{priority_of(alarm)} {alarm.get('alarm')}: {alarm.get('message')}"
    )


def _event_label(item: dict[str, Any]) -> str:
    if item["event"] == "unacknowledged":
        return f"UNACKNOWLEDGED {item.get('unacknowledged_minutes', 0):g} min"
    return str(item["event"]).upper()


def _line(item: dict[str, Any]) -> str:
    alarm = item["alarm"]
    return (
        f"{alarm.get('at') or item['created_at']}  {_headline(item)}  (value {alarm.get('value')})"
    )


def _details(item: dict[str, Any]) -> str:
    alarm = item["alarm"]
    fields = (
        ("Event", _event_label(item)),
        ("Alarm", alarm.get("alarm")),
        ("Message", alarm.get("message")),
        ("Line", alarm.get("production_line_id")),
        ("Priority", priority_of(alarm)),
        ("Severity", alarm.get("severity")),
        ("Value", alarm.get("value")),
        ("Limit", alarm.get("limit")),
        ("State", alarm.get("state")),
        ("Raised at", alarm.get("raised_at")),
        ("Event at", alarm.get("at")),
        ("Rules", ", ".join(item.get("rules", []))),
        ("Event id", item["id"]),
    )
    return "\n".join(f"{name}: {value}" for name, value in fields if value is not None) + "\n"
