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


# The latest instant a time parameter may name: 9999-12-31T23:59:59Z.
MAX_EPOCH = 253_402_300_799.0


class TimeParameterError(ValueError):
    """A time query parameter that is not an instant; the message names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"bad query parameter {parameter!r}: {message}")
        self.parameter = parameter


def time_param(name: str, text: str | None) -> float | None:
    """The one parser of time query parameters: ISO 8601 (naive means UTC) or epoch seconds,
    finite and between 1970 and 9999; None when absent or empty."""
    if text is None or text.strip() == "":
        return None
    try:
        value = parse_time(text.strip())
    except (ValueError, OverflowError, OSError):
        raise TimeParameterError(name, "expected ISO 8601 or epoch seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise TimeParameterError(name, "expected a finite time")
    if not 0.0 <= value <= MAX_EPOCH:
        raise TimeParameterError(name, "expected a time between 1970 and 9999")
    return value


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
