"""ISA-18.2 KPIs over hand-built journals (real SQLite) whose answers are worked out in the
comments."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scada.alarms import kpi as kpi_mod
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent
from scada.core.timefmt import iso_ms
from tests.unit.conftest_alarms import T0

HOUR = 3600.0
START, END = T0, T0 + HOUR  # six 10-minute bins


def ev(alarm: str, at: float, kind: str = "raised", state: str = "unacked_active",
       raised_at: float | None = None, alarm_state: str | None = None) -> AlarmEvent:  # fmt: skip
    return AlarmEvent(
        event_id=None, occurrence_id=1, alarm=alarm, production_line_id="1", tag="t",
        condition="hi", severity="high", event=kind, state=state, message="", value=None,
        limit=None, at=at, raised_at=at if raised_at is None else raised_at,
        alarm_state=alarm_state or state,
    )  # fmt: skip


class _KPI:
    """`kpi.compute(events, ...)` over a journal file holding exactly those events."""

    def compute(
        self,
        events: Iterable[AlarmEvent],
        *,
        start: float,
        end: float,
        current: Iterable[AlarmEvent] = (),
        info: dict[str, kpi_mod.AlarmInfo] | None = None,
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            journal = Journal(Path(tmp) / "j.sqlite", retention_days=90, retention_events=1000)
            journal.append(list(events))
            with journal.reader() as db:
                report = kpi_mod.compute(db, start=start, end=end, current=current, info=info)
            journal.close()
        return report


kpi = _KPI()


def window_events() -> list[AlarmEvent]:
    events = [ev("a", START + 40 * i) for i in range(12)]  # bin 0: 12, never 3 in 60 s
    events += [ev("b", START + 600 + 10 * i) for i in range(3)]  # bin 1: 3 in 20 s
    events += [ev("c", START + 1000), ev("c", END)]  # bin 1 and bin 5 (end is inside)
    events += [ev("d", START + 100, state="shelved", alarm_state="unacked_active")]
    events += [ev("e", START + 700, state="suppressed", alarm_state="unacked_active")]
    events += [ev("x", START - 1), ev("x", END + 1)]  # outside the window
    return events


def test_rate_and_flood_share() -> None:
    report = kpi.compute(window_events(), start=START, end=END)
    # Shelved and suppressed raises are not shown to operators: not counted in `raised`,
    # counted in `suppressed_raised` (d while shelved, e while out of service).
    assert report["raised"] == 12 + 3 + 2
    assert report["suppressed_raised"] == 2
    # bins: [12, 4, 0, 0, 0, 1] -> 17 / 6 = 2.833; only bin 0 is above 10.
    assert report["rate"] == {
        "bins": 6,
        "average_per_10min": 2.833,
        "max_per_10min": 12,
        "flood_bins": 1,
        "flood_share": 0.1667,
    }


def test_exactly_ten_in_a_bin_is_not_a_flood() -> None:
    events = [ev("a", START + i) for i in range(10)]
    assert kpi.compute(events, start=START, end=END)["rate"]["flood_bins"] == 0
    events.append(ev("a", START + 11))
    assert kpi.compute(events, start=START, end=END)["rate"]["flood_bins"] == 1


def test_top_alarms_by_count_then_name() -> None:
    events = window_events() + [ev(f"z{i:02d}", START + 2000 + i) for i in range(12)]
    top = kpi.compute(events, start=START, end=END)["top"]
    # a 12, b 3, c 2, then the twelve z alarms at 1 each, in name order, cut at 10 rows.
    # 29 annunciated in all: shares are count / 29.
    assert top == [
        {"alarm": "a", "count": 12, "share": round(12 / 29, 4)},
        {"alarm": "b", "count": 3, "share": round(3 / 29, 4)},
        {"alarm": "c", "count": 2, "share": round(2 / 29, 4)},
    ] + [{"alarm": f"z{i:02d}", "count": 1, "share": round(1 / 29, 4)} for i in range(7)]


def test_chattering_needs_three_activations_within_a_minute() -> None:
    events = [ev("b", START + t) for t in (0, 30, 60)]  # 3 within 60 s (inclusive)
    events += [ev("n", START + t) for t in (0, 30, 61, 200)]  # never 3 within 60 s
    events += [ev("m", START + t) for t in (500, 510, 520, 530, 900)]  # 4 within 60 s
    # Suggested off-delay: the longest gap between raises inside a minute (m: 10 s, b: 30 s).
    # m is a temperature limit alarm over a 300 °C span: 1 % of span = 3.0 °C deadband.
    info = {"m": kpi_mod.AlarmInfo("hi", "°C", 300.0)}
    assert kpi.compute(events, start=START, end=END, info=info)["chattering"] == [
        {
            "alarm": "m",
            "max_per_minute": 4,
            "activations": 5,
            "suggested_off_delay_s": 10.0,
            "suggested_deadband_percent": 1.0,
            "suggested_deadband": 3.0,
        },
        {"alarm": "b", "max_per_minute": 3, "activations": 3, "suggested_off_delay_s": 30.0},
    ]
    assert kpi.compute(window_events(), start=START, end=END)["chattering"] == [
        {"alarm": "b", "max_per_minute": 3, "activations": 3, "suggested_off_delay_s": 10.0}
    ]


def test_standing_alarms_are_active_over_24_hours_at_window_end() -> None:
    current = [
        ev("f", END, state="acked_active", raised_at=END - 25 * HOUR),  # standing, 25 h
        ev("g", END, state="unacked_active", raised_at=END - 23 * HOUR),  # too young
        ev("h", END, state="unacked_cleared", raised_at=END - 30 * HOUR),  # not active
        ev("s", END, state="shelved", alarm_state="unacked_active", raised_at=END - 48 * HOUR),
    ]
    report = kpi.compute([], start=START, end=END, current=current)
    assert (
        report["stale"]
        == report["standing"]
        == [
            {"alarm": "s", "id": 1, "hours": 48.0},
            {"alarm": "f", "id": 1, "hours": 25.0},
        ]
    )


def test_acknowledge_time_percentiles_nearest_rank() -> None:
    acks = [
        ev("a", START + 100 + d, kind="acknowledged", raised_at=START + 100)
        for d in (40, 10, 100, 30, 20)
    ]
    acks.append(ev("a", END + 5, kind="acknowledged", raised_at=START))  # outside
    # sorted [10, 20, 30, 40, 100]: p50 = rank ceil(2.5) = 3 -> 30; p90 = rank 5 -> 100.
    assert kpi.compute(acks, start=START, end=END)["ack_time"] == {
        "count": 5,
        "p50_seconds": 30.0,
        "p90_seconds": 100.0,
    }
    empty = kpi.compute([], start=START, end=END)
    assert empty["ack_time"] == {"count": 0, "p50_seconds": None, "p90_seconds": None}
    assert empty["rate"]["max_per_10min"] == 0


def test_priority_distribution_against_the_80_15_5_target() -> None:
    def sev(alarm: str, at: float, severity: str) -> AlarmEvent:
        e = ev(alarm, at)
        e.severity = severity
        return e

    events = [sev("l", START + i, "low") for i in range(16)]
    events += [sev("m", START + 100 + i, "medium") for i in range(3)]
    events += [sev("h", START + 200, "high")]
    events += [sev("q", START + 300, "critical")]  # 21 in all
    events += [sev("q", START + 400, "critical")]
    events[-1].state = "suppressed"  # not annunciated: not counted
    report = kpi.compute(events, start=START, end=END)
    assert report["priority"] == {
        "critical": {"priority": 1, "count": 1, "share": round(1 / 21, 4), "target_share": 0.01},
        "high": {"priority": 2, "count": 1, "share": round(1 / 21, 4), "target_share": 0.05},
        "medium": {"priority": 3, "count": 3, "share": round(3 / 21, 4), "target_share": 0.15},
        "low": {"priority": 4, "count": 16, "share": round(16 / 21, 4), "target_share": 0.8},
    }
    assert report["suppressed_raised"] == 1


def test_flood_episodes_start_end_count_and_contributors() -> None:
    # 12 alarms 10 s apart from START+1000: the 11th (START+1100) starts the episode.
    # Then one more at START+1500 (13 in all). The window empties from START+1600 on: after
    # the 9th of the first twelve leaves (START+1080+600) 4 remain -> ended START+1680.
    events = [ev("a" if i % 3 else "b", START + 1000 + 10 * i) for i in range(12)]
    events.append(ev("c", START + 1500))
    # A second burst that never exceeds 10 in 10 minutes: no episode.
    events += [ev("d", START + 2400 + 30 * i) for i in range(10)]
    floods = kpi.compute(events, start=START, end=END)["floods"]
    assert floods == {
        "count": 1,
        "episodes": [
            {
                "started_at": iso_ms(START + 1100),
                "ended_at": iso_ms(START + 1680),
                "count": 13,
                "top": [
                    {"alarm": "a", "count": 8},
                    {"alarm": "b", "count": 4},
                    {"alarm": "c", "count": 1},
                ],
            }
        ],
    }


def test_a_flood_still_running_at_the_window_end_has_no_end() -> None:
    events = [ev("a", END - 100 + i) for i in range(11)]
    (episode,) = kpi.compute(events, start=START, end=END)["floods"]["episodes"]
    assert (episode["started_at"], episode["ended_at"], episode["count"]) == (
        iso_ms(END - 90),
        None,
        11,
    )
