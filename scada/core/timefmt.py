"""Timestamps on the wire: ISO 8601 UTC with milliseconds and a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_ms(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds and Z, rounded to the nearest millisecond (the one
    formatter: frames, alarms, audit and KPI windows all use it)."""
    ms = round(epoch * 1000)
    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else iso_ms(epoch)


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (Z or offset) or a plain number of epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
