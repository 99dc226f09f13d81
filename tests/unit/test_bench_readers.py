"""`scada bench --readers`: its arguments, its reads, and the figures made of what the
watcher and the readers recorded (the measurement itself is the bench's, never a test's)."""

from __future__ import annotations

import urllib.parse

import pytest

from scada.tools.bench.readersload import (
    gap_figures,
    gaps,
    plan,
    route_figures,
    status_totals,
    ticks_missing,
)
from scada.tools.cli import build_parser


def bench_args(*words: str) -> object:
    return build_parser("bench").parse_args(["bench", *words])


def test_arguments_and_refusals() -> None:
    from scada.tools.bench.readers import check

    args = bench_args("--readers", "--anonymous-readers", "2", "--token-readers", "3")
    assert (args.readers, args.anonymous_readers, args.token_readers) == (True, 2, 3)  # type: ignore[attr-defined]
    assert args.events == 300_000 and args.cluster is False  # type: ignore[attr-defined]
    assert check(args) is None  # type: ignore[arg-type]
    none = bench_args("--readers", "--anonymous-readers", "0", "--token-readers", "0")
    assert "no readers" in (check(none) or "")  # type: ignore[arg-type]
    short = bench_args("--readers", "--history-hours", "0.5")
    assert "--history-hours" in (check(short) or "")  # type: ignore[arg-type]
    assert bench_args("--readers", "--cluster").cluster is True  # type: ignore[attr-defined]


def test_plan_asks_for_32_tags_an_hour_at_the_most_points_as_csv_and_json() -> None:
    tags = [f"line{n}.t{k}" for n in range(1, 5) for k in range(8)]
    reads = {r.label: r for r in plan(tags, now_s=1_800_000_000.0)}
    assert set(reads) == {
        "history csv",
        "history json",
        "kpi 744 h",
        "alarm history",
        "alarm export",
        "audit",
    }
    for label, fmt in (("history csv", "csv"), ("history json", "json")):
        path, _, query = reads[label].path.partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        assert path == "/api/history"
        assert q["tags"].split(",") == tags and q["from"] == "-1h" and q["format"] == fmt
        assert q["points"] == "10000"
    assert "since=1797408000" in reads["alarm history"].path  # 30 days before now


def test_gaps_count_a_stall_across_the_window_edges() -> None:
    frames = [0.0, 0.1, 0.2, 1.5, 1.6, 1.7]
    # the window starts mid-stall: the gap from the frame before it counts whole
    assert gaps(frames, 0.5, 1.65) == pytest.approx([1300.0, 100.0, 100.0])
    # frames stop inside the window: the silence up to its end is a gap
    assert gaps([0.0, 0.1], 0.0, 2.0) == pytest.approx([100.0, 1900.0])
    # no frame at all
    assert gaps([], 0.0, 1.0) == pytest.approx([1000.0])


def test_gap_figures() -> None:
    frames = [i / 10 for i in range(11)] + [1.7, 1.8]
    ticks = [1000.0 + t for t in frames[:11]] + [1001.2, 1001.8]  # 1001.1 never sent
    fig = gap_figures(frames, 0.0, 1.8, ticks)
    assert fig["frames"] == 13
    assert fig["ticks_missing"] == 1 + 5  # 1001.1, and 1001.3 .. 1001.7
    assert fig["gap_ms_max"] == pytest.approx(700.0)
    assert fig["gaps_over_target"] == 1  # the 0.5 s target


def test_route_figures_and_status_totals() -> None:
    results = [
        {"read": "audit", "who": "anonymous", "status": 403, "bytes": 80, "ms": 2.0},
        {"read": "audit", "who": "token", "status": 200, "bytes": 5000, "ms": 30.0},
        {"read": "audit", "who": "token", "status": 200, "bytes": 4000, "ms": 10.0},
        {"read": "kpi 744 h", "who": "anonymous", "status": 429, "bytes": 90, "ms": 1.0},
    ]
    figures = route_figures(results)
    assert figures["audit"]["status"] == {"200": 2, "403": 1}
    assert figures["audit"]["max_bytes"] == 5000
    assert figures["audit"]["served_max_ms"] == 30.0
    assert figures["kpi 744 h"]["served_p50_ms"] is None
    assert status_totals(results) == {
        "anonymous": {"403": 1, "429": 1},
        "token": {"200": 2},
    }


def test_ticks_missing_counts_ticks_no_frame_stood_for() -> None:
    assert ticks_missing([10.0, 10.1, 10.2, 10.3]) == 0
    assert ticks_missing([10.0, 10.1, 10.5, 10.6]) == 3
    assert ticks_missing([10.0, 10.1, 10.1, float("nan"), 10.2]) == 0  # repeats, a bad stamp
