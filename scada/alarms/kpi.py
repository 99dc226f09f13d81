"""ISA-18.2 / EEMUA 191 alarm-system health figures over a window, from journal events.

Pure functions: the events and the window bounds in, a JSON-able dict out. Only alarms an
operator was shown count: raises while shelved or out of service are left out.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

from scada.alarms.model import ACTIVE_STATES, AlarmEvent
from scada.core.stats import percentile
from scada.core.timefmt import iso_ms

BIN_SECONDS = 600.0  # ISA-18.2 counts alarms per 10 minutes
FLOOD_PER_BIN = 10  # more than 10 raised in 10 minutes is a flood
CHATTER_COUNT = 3  # 3 or more activations ...
CHATTER_SECONDS = 60.0  # ... within one minute
STANDING_SECONDS = 86_400.0  # active for more than 24 hours
TOP_N = 10


def announced_raises(events: Iterable[AlarmEvent], start: float, end: float) -> list[AlarmEvent]:
    return [
        e
        for e in events
        if e.event == "raised" and start <= e.at <= end and e.state not in ("shelved", "suppressed")
    ]


def rate_per_bin(raised: list[AlarmEvent], start: float, end: float) -> dict[str, float | int]:
    """Average and max raised per 10-minute bin, and the share of bins in flood."""
    bins = max(1, math.ceil((end - start) / BIN_SECONDS))
    counts = [0] * bins
    for e in raised:
        counts[min(bins - 1, int((e.at - start) // BIN_SECONDS))] += 1
    return {
        "bins": bins,
        "average_per_10min": round(sum(counts) / bins, 3),
        "max_per_10min": max(counts),
        "flood_bins": sum(1 for c in counts if c > FLOOD_PER_BIN),
        "flood_share": round(sum(1 for c in counts if c > FLOOD_PER_BIN) / bins, 4),
    }


def top_alarms(raised: list[AlarmEvent], n: int = TOP_N) -> list[dict[str, object]]:
    counts = Counter(e.alarm for e in raised)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{"alarm": name, "count": count} for name, count in ranked]


def chattering(raised: list[AlarmEvent]) -> list[dict[str, object]]:
    """Alarms raised CHATTER_COUNT or more times within any CHATTER_SECONDS."""
    times: dict[str, list[float]] = defaultdict(list)
    for e in raised:
        times[e.alarm].append(e.at)
    out: list[dict[str, object]] = []
    for name, ts in sorted(times.items()):
        ts.sort()
        most = _most_within(ts, CHATTER_SECONDS)
        if most >= CHATTER_COUNT:
            out.append({"alarm": name, "max_per_minute": most, "activations": len(ts)})
    out.sort(key=lambda item: (-int(str(item["max_per_minute"])), str(item["alarm"])))
    return out


def _most_within(sorted_times: list[float], span: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(sorted_times):
        while t - sorted_times[lo] > span:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def standing(current: Iterable[AlarmEvent], end: float) -> list[dict[str, object]]:
    """Alarms whose occurrence has been active for more than 24 h at `end`."""
    out = [
        {"alarm": e.alarm, "id": e.occurrence_id, "hours": round((end - e.raised_at) / 3600, 2)}
        for e in current
        if e.alarm_state in ACTIVE_STATES
        and e.raised_at is not None
        and end - e.raised_at > STANDING_SECONDS
    ]
    out.sort(key=lambda item: (-float(str(item["hours"])), str(item["alarm"])))
    return out


def ack_times(events: Iterable[AlarmEvent], start: float, end: float) -> dict[str, object]:
    """Seconds from raise to acknowledgement, for acks inside the window (nearest rank)."""
    delays = sorted(
        e.at - e.raised_at
        for e in events
        if e.event == "acknowledged" and start <= e.at <= end and e.raised_at is not None
    )
    return {
        "count": len(delays),
        "p50_seconds": _nearest_rank(delays, 50),
        "p90_seconds": _nearest_rank(delays, 90),
    }


def _nearest_rank(values: list[float], pct: float) -> float | None:
    value = percentile(values, pct / 100)
    return None if value is None else round(value, 3)


def compute(
    events: Iterable[AlarmEvent], *, start: float, end: float, current: Iterable[AlarmEvent] = ()
) -> dict[str, object]:
    """All KPIs over [start, end]. `current` is the alarm state at `end` (for standing)."""
    evs = list(events)
    raised = announced_raises(evs, start, end)
    return {
        "window": {
            "start": iso_ms(start),
            "end": iso_ms(end),
            "hours": round((end - start) / 3600, 3),
        },
        "raised": len(raised),
        "rate": rate_per_bin(raised, start, end),
        "top": top_alarms(raised),
        "chattering": chattering(raised),
        "standing": standing(current, end),
        "ack_time": ack_times(evs, start, end),
    }
