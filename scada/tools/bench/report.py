"""The bench's output: a readable table for people, a dict for `--json`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scada.tools.bench.fanoutbench import FanoutResult

Row = tuple[str, Callable[[FanoutResult], Any], str]

FANOUT_ROWS: list[Row] = [
    ("clients connected", lambda r: r.connected, "{:d}"),
    ("frames/s per client, min", lambda r: r.rate_min, "{:.2f}"),
    ("frames/s per client, median", lambda r: r.rate_p50, "{:.2f}"),
    ("frames/s per client, mean", lambda r: r.rate_mean, "{:.3f}"),
    ("clients under 9.9 frames/s", lambda r: r.clients_below_9_9, "{:d}"),
    ("latency p50 (ms)", lambda r: r.latency_ms_p50, "{:.1f}"),
    ("latency p99 (ms)", lambda r: r.latency_ms_p99, "{:.1f}"),
    ("latency max (ms)", lambda r: r.latency_ms_max, "{:.1f}"),
    ("seq gaps / closed by server", lambda r: f"{r.seq_gaps} / {r.closed_by_server}", "{}"),
    ("server CPU (s in window)", lambda r: r.cpu_s, "{:.2f}"),
    ("server CPU per frame (µs)", lambda r: r.cpu_us_per_frame, "{:.2f}"),
    ("bytes per frame (wire)", lambda r: r.bytes_per_frame, "{:.0f}"),
    ("server RSS (MB)", lambda r: r.rss_mb, "{:.1f}"),
    ("RSS per connection (KB)", lambda r: r.rss_kb_per_connection, "{:.1f}"),
    ("tick p50 / p99 (ms)", lambda r: _pair(r.tick_ms_p50, r.tick_ms_p99), "{}"),
    ("tick overruns", lambda r: r.tick_overruns, "{:d}"),
    ("slow client dropped after (s)", lambda r: r.slow_client_dropped_after_s, "{:.1f}"),
]


def _pair(a: float | None, b: float | None) -> str | None:
    return None if a is None or b is None else f"{a:.2f} / {b:.2f}"


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[Row], results: list[FanoutResult]) -> str:
    width = max(len(name) for name, _, _ in rows) + 2
    cols = [max(12, len(r.target) + 2) for r in results]
    lines = [" " * width + "".join(r.target.rjust(c) for r, c in zip(results, cols, strict=True))]
    for name, get, fmt in rows:
        cells = "".join(_cell(get(r), fmt).rjust(c) for r, c in zip(results, cols, strict=True))
        lines.append(name.ljust(width) + cells)
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fanout_ratios(results: dict[str, FanoutResult]) -> dict[str, float | None]:
    scada, naive, bare = results.get("scada"), results.get("naive"), results.get("bare")
    out: dict[str, float | None] = {}
    if scada and bare:
        out["cpu_per_frame_scada_over_bare"] = ratio(scada.cpu_us_per_frame, bare.cpu_us_per_frame)
    if scada and naive:
        out["cpu_per_frame_scada_over_naive"] = ratio(
            scada.cpu_us_per_frame, naive.cpu_us_per_frame
        )
    if naive and bare:
        out["cpu_per_frame_naive_over_bare"] = ratio(naive.cpu_us_per_frame, bare.cpu_us_per_frame)
    return out


def ratio_lines(ratios: dict[str, float | None]) -> list[str]:
    targets = {
        "cpu_per_frame_scada_over_bare": " (target ≤ 1.10)",
        "cpu_per_frame_scada_over_naive": " (target ≤ 0.50)",
    }
    lines = []
    for key, value in ratios.items():
        name = key.removeprefix("cpu_per_frame_").replace("_over_", " / ")
        shown = "-" if value is None else f"{value:.2f}"
        lines.append(f"CPU per frame, {name}: {shown}{targets.get(key, '')}")
    return lines
