"""ISA-18.2 / EEMUA 191 alarm-system performance figures over a window, aggregated in SQL.

`compute(db, ...)` runs on a read connection of its own (see Journal.reader) in a worker
thread: every figure is a GROUP BY or a window function over indexed columns, and the one
streaming pass (flood episodes) holds only the alarms of one 10-minute window, so memory does
not grow with the journal. Only alarms an operator was shown count (annunciated): raises while
shelved or suppressed (by design or out of service) are left out.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from scada.alarms.flood import FloodDetector
from scada.alarms.model import ACTIVE_STATES, PRIORITY, AlarmEvent
from scada.core.stats import nearest_rank
from scada.core.timefmt import iso_ms, iso_or_none

BIN_SECONDS: Final = 600.0  # ISA-18.2 counts alarms per 10 minutes
FLOOD_PER_BIN: Final = 10  # more than 10 raised in 10 minutes is a flood
CHATTER_COUNT: Final = 3  # 3 or more activations ...
CHATTER_SECONDS: Final = 60.0  # ... within one minute
STALE_SECONDS: Final = 86_400.0  # active for more than 24 hours
TOP_N: Final = 10
MAX_EPISODES: Final = 100  # newest flood episodes listed (all are counted)
# ISA-18.2 / EEMUA 191 target distribution of annunciated alarms by priority.
PRIORITY_TARGET: Final = {"critical": 0.01, "high": 0.05, "medium": 0.15, "low": 0.80}
# Starting deadbands (% of span) by measurement, ISA-18.2 TR2 / EEMUA 191 guidance.
DEADBAND_PERCENT_BY_UNIT: Final = {"°C": 1.0, "K": 1.0, "bar": 2.0, "kPa": 2.0}
DEFAULT_DEADBAND_PERCENT: Final = 5.0

_ANNUNCIATED = (
    "event = 'raised' AND at >= :start AND at <= :end"
    " AND coalesce(state, '') NOT IN ('shelved', 'suppressed')"
)


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """What a suggestion for a chattering alarm needs from its definition."""

    condition: str
    unit: str = ""
    span: float | None = None


def rate_per_bin(db: sqlite3.Connection, start: float, end: float) -> dict[str, float | int]:
    """Raised per 10-minute bin (counted from the window start): average, peak, flood bins."""
    bins = max(1, math.ceil((end - start) / BIN_SECONDS))
    counts: dict[int, int] = {}
    rows = db.execute(
        f"SELECT CAST((at - :start) / {BIN_SECONDS} AS INTEGER) AS b, count(*)"
        f" FROM events WHERE {_ANNUNCIATED} GROUP BY b",
        {"start": start, "end": end},
    )
    for b, n in rows:
        key = min(bins - 1, int(b))  # the window includes its end
        counts[key] = counts.get(key, 0) + int(n)
    total = sum(counts.values())
    flood_bins = sum(1 for c in counts.values() if c > FLOOD_PER_BIN)
    return {
        "bins": bins,
        "average_per_10min": round(total / bins, 3),
        "max_per_10min": max(counts.values(), default=0),
        "flood_bins": flood_bins,
        "flood_share": round(flood_bins / bins, 4),
    }


def top_alarms(
    db: sqlite3.Connection, start: float, end: float, total: int
) -> list[dict[str, object]]:
    rows = db.execute(
        f"SELECT alarm, count(*) AS n FROM events WHERE {_ANNUNCIATED}"
        " GROUP BY alarm ORDER BY n DESC, alarm LIMIT :n",
        {"start": start, "end": end, "n": TOP_N},
    ).fetchall()
    return [
        {"alarm": a, "count": int(n), "share": round(n / total, 4) if total else 0.0}
        for a, n in rows
    ]


def priority_distribution(
    db: sqlite3.Connection, start: float, end: float, total: int
) -> dict[str, object]:
    counts = dict(
        db.execute(
            f"SELECT severity, count(*) FROM events WHERE {_ANNUNCIATED} GROUP BY severity",
            {"start": start, "end": end},
        ).fetchall()
    )
    out: dict[str, object] = {}
    for severity, target in PRIORITY_TARGET.items():
        n = int(counts.get(severity, 0))
        out[severity] = {
            "priority": PRIORITY[severity],
            "count": n,
            "share": round(n / total, 4) if total else 0.0,
            "target_share": target,
        }
    return out


def chattering(
    db: sqlite3.Connection, start: float, end: float, info: Mapping[str, AlarmInfo]
) -> list[dict[str, object]]:
    """Alarms raised CHATTER_COUNT or more times within any CHATTER_SECONDS, with a
    suggested off-delay (the longest re-raise gap inside a burst, so one occurrence would
    have held) and, for limit alarms, a starting deadband."""
    rows = db.execute(
        "SELECT alarm, max(n), count(*), max(CASE WHEN gap <= :span THEN gap END) FROM ("
        "  SELECT alarm,"
        "   count(*) OVER (PARTITION BY alarm ORDER BY at"
        "    RANGE BETWEEN :span PRECEDING AND CURRENT ROW) AS n,"
        "   at - lag(at) OVER (PARTITION BY alarm ORDER BY at) AS gap"
        f"  FROM events WHERE {_ANNUNCIATED})"
        " GROUP BY alarm HAVING max(n) >= :count",
        {"start": start, "end": end, "span": CHATTER_SECONDS, "count": CHATTER_COUNT},
    ).fetchall()
    out: list[dict[str, object]] = []
    for alarm, most, activations, gap in rows:
        item: dict[str, object] = {
            "alarm": alarm,
            "max_per_minute": int(most),
            "activations": int(activations),
            "suggested_off_delay_s": float(math.ceil(gap or 1.0)),
        }
        defn = info.get(alarm)
        if defn is not None and defn.condition in ("hihi", "hi", "lo", "lolo", "deviation"):
            pct = DEADBAND_PERCENT_BY_UNIT.get(defn.unit, DEFAULT_DEADBAND_PERCENT)
            item["suggested_deadband_percent"] = pct
            if defn.span is not None:
                item["suggested_deadband"] = round(defn.span * pct / 100.0, 6)
        out.append(item)
    out.sort(key=lambda item: (-int(str(item["max_per_minute"])), str(item["alarm"])))
    return out


def flood_episodes(
    db: sqlite3.Connection, start: float, end: float, detector: FloodDetector | None = None
) -> dict[str, object]:
    """Flood episodes from the annunciated alarms in the window (one streaming pass)."""
    detector = detector or FloodDetector()
    episodes: list[dict[str, object]] = []
    total = 0

    def close(ep: object) -> None:
        nonlocal total
        total += 1
        episodes.append(ep.summary())  # type: ignore[attr-defined]
        if len(episodes) > MAX_EPISODES:
            episodes.pop(0)

    cur = db.execute(
        f"SELECT at, alarm FROM events WHERE {_ANNUNCIATED} ORDER BY at, id",
        {"start": start, "end": end},
    )
    for at, alarm in cur:
        ended = detector.add(at, alarm)
        if ended is not None:
            close(ended)
    ended = detector.advance(end)
    if ended is not None:
        close(ended)
    if detector.episode is not None:
        close(detector.episode)
    for ep in episodes:
        ep["started_at"] = iso_ms(float(str(ep["started_at"])))
        ep["ended_at"] = iso_or_none(ep["ended_at"])  # type: ignore[arg-type]
    return {"count": total, "episodes": episodes}


def stale(current: Iterable[AlarmEvent], end: float) -> list[dict[str, object]]:
    """Alarms whose occurrence has been active for more than 24 h at `end`."""
    out = [
        {"alarm": e.alarm, "id": e.occurrence_id, "hours": round((end - e.raised_at) / 3600, 2)}
        for e in current
        if e.alarm_state in ACTIVE_STATES
        and e.raised_at is not None
        and end - e.raised_at > STALE_SECONDS
    ]
    out.sort(key=lambda item: (-float(str(item["hours"])), str(item["alarm"])))
    return out


def ack_times(db: sqlite3.Connection, start: float, end: float) -> dict[str, object]:
    """Seconds from raise to acknowledgement, for acks inside the window (nearest rank;
    one sort for both percentiles)."""
    where = "event = 'acknowledged' AND at >= ? AND at <= ? AND raised_at IS NOT NULL"
    n = int(db.execute(f"SELECT count(*) FROM events WHERE {where}", (start, end)).fetchone()[0])
    if not n:
        return {"count": 0, "p50_seconds": None, "p90_seconds": None}
    p50, p90 = db.execute(
        "SELECT max(CASE WHEN rn = ? THEN d END), max(CASE WHEN rn = ? THEN d END) FROM ("
        " SELECT at - raised_at AS d, row_number() OVER (ORDER BY at - raised_at) AS rn"
        f" FROM events WHERE {where})",
        (nearest_rank(n, 0.5), nearest_rank(n, 0.9), start, end),
    ).fetchone()
    return {"count": n, "p50_seconds": round(p50, 3), "p90_seconds": round(p90, 3)}


def compute(
    db: sqlite3.Connection,
    *,
    start: float,
    end: float,
    current: Iterable[AlarmEvent] = (),
    info: Mapping[str, AlarmInfo] | None = None,
    flood: FloodDetector | None = None,
) -> dict[str, object]:
    """All KPIs over [start, end]. `current` is the alarm state at `end` (for stale)."""
    args = {"start": start, "end": end}
    raised = int(
        db.execute(f"SELECT count(*) FROM events WHERE {_ANNUNCIATED}", args).fetchone()[0]
    )
    # Raised while shelved or out of service, plus conditions withheld by designed
    # suppression: everything left out of `raised` (docs/alarms.md).
    suppressed = int(
        db.execute(
            "SELECT count(*) FROM events WHERE at >= :start AND at <= :end AND ("
            "(event = 'raised' AND state IN ('shelved', 'suppressed')) OR (event = 'suppressed'"
            " AND occurrence_id = 0))",
            args,
        ).fetchone()[0]
    )
    standing = stale(current, end)
    top = top_alarms(db, start, end, raised)
    return {
        "window": {
            "start": iso_ms(start),
            "end": iso_ms(end),
            "hours": round((end - start) / 3600, 3),
        },
        "raised": raised,
        "suppressed_raised": suppressed,
        "rate": rate_per_bin(db, start, end),
        "floods": flood_episodes(db, start, end, flood),
        "priority": priority_distribution(db, start, end, raised),
        "top": top,
        "top_share": round(sum(int(str(t["count"])) for t in top) / raised, 4) if raised else 0.0,
        "chattering": chattering(db, start, end, info or {}),
        "stale": standing,
        "standing": standing,  # the same list under its earlier name
        "ack_time": ack_times(db, start, end),
    }
