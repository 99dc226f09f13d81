"""ISA-18.2 KPIs over hand-built event sets whose answers are worked out in the comments."""

from __future__ import annotations

from scada.alarms import kpi
from scada.alarms.model import AlarmEvent
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
    # Shelved and suppressed raises are not shown to operators: not counted.
    assert report["raised"] == 12 + 3 + 2
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
    assert kpi.compute(events, start=START, end=END)["rate"]["flood_bins"] == 0  # type: ignore[index]
    events.append(ev("a", START + 11))
    assert kpi.compute(events, start=START, end=END)["rate"]["flood_bins"] == 1  # type: ignore[index]


def test_top_alarms_by_count_then_name() -> None:
    events = window_events() + [ev(f"z{i:02d}", START + 2000 + i) for i in range(12)]
    top = kpi.compute(events, start=START, end=END)["top"]
    # a 12, b 3, c 2, then the twelve z alarms at 1 each, in name order, cut at 10 rows.
    assert top == [
        {"alarm": "a", "count": 12},
        {"alarm": "b", "count": 3},
        {"alarm": "c", "count": 2},
    ] + [{"alarm": f"z{i:02d}", "count": 1} for i in range(7)]


def test_chattering_needs_three_activations_within_a_minute() -> None:
    events = [ev("b", START + t) for t in (0, 30, 60)]  # 3 within 60 s (inclusive)
    events += [ev("n", START + t) for t in (0, 30, 61, 200)]  # never 3 within 60 s
    events += [ev("m", START + t) for t in (500, 510, 520, 530, 900)]  # 4 within 60 s
    assert kpi.compute(events, start=START, end=END)["chattering"] == [
        {"alarm": "m", "max_per_minute": 4, "activations": 5},
        {"alarm": "b", "max_per_minute": 3, "activations": 3},
    ]
    assert kpi.compute(window_events(), start=START, end=END)["chattering"] == [
        {"alarm": "b", "max_per_minute": 3, "activations": 3}
    ]


def test_standing_alarms_are_active_over_24_hours_at_window_end() -> None:
    current = [
        ev("f", END, state="acked_active", raised_at=END - 25 * HOUR),  # standing, 25 h
        ev("g", END, state="unacked_active", raised_at=END - 23 * HOUR),  # too young
        ev("h", END, state="unacked_cleared", raised_at=END - 30 * HOUR),  # not active
        ev("s", END, state="shelved", alarm_state="unacked_active", raised_at=END - 48 * HOUR),
    ]
    report = kpi.compute([], start=START, end=END, current=current)
    assert report["standing"] == [
        {"alarm": "s", "id": 1, "hours": 48.0},
        {"alarm": "f", "id": 1, "hours": 25.0},
    ]


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
    assert empty["rate"]["max_per_10min"] == 0  # type: ignore[index]
