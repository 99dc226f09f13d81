"""`scada bench --readers`: the two kinds of client process and the figures made of them.

- The watcher (`watch`): its own process, one WebSocket on /ws, the arrival time of every
  `production_data` frame (CLOCK_MONOTONIC, which every process on the box shares, so the
  bench cuts the list into its baseline and load windows afterwards).
- A reader process (`read`): asyncio tasks, each with its own HTTP connection, looping over
  the heavy reads (`Read`) until a deadline, every body read to the end and counted (gzip
  accepted and left compressed, as a browser would receive it), one record per request.

Pure parts (`gaps`, `gap_figures`, `route_figures`, `plan`) are unit-tested.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GAP_TARGET_MS = 500.0  # issue #20: the largest production_data gap under heavy readers
BACKOFF_429_S = 0.05  # a hammering client, not a polite one: it tries again almost at once
REQUEST_TIMEOUT_S = 120.0
TICK_S = 0.1  # the plant's tick ([server] batch_interval_ms of the built-in plant)


@dataclass(frozen=True)
class Read:
    """One heavy read a reader loops over: a label for the table and its path + query."""

    label: str
    path: str


def plan(tags: Sequence[str], now_s: float, days: float = 30.0) -> list[Read]:
    """The reads of issue #20: 32-tag 1-hour history as CSV and JSON at the most points a
    request may ask, KPIs over 31 days, alarm history over `days`, the alarm export (its
    default range: 30 days) and the audit log."""
    history = {"tags": ",".join(tags), "from": "-1h", "to": "now", "points": "10000"}
    since = f"{now_s - days * 86_400:.0f}"
    return [
        Read("history csv", "/api/history?" + urllib.parse.urlencode({**history, "format": "csv"})),
        Read(
            "history json", "/api/history?" + urllib.parse.urlencode({**history, "format": "json"})
        ),
        Read("kpi 744 h", "/api/alarms/kpi?hours=744"),
        Read("alarm history", f"/api/alarms/history?since={since}&limit=1000"),
        Read("alarm export", "/api/alarms/export?format=csv"),
        Read("audit", "/api/audit?limit=1000"),
    ]


# ---------------------------------------------------------------- the watcher process


def watch(url: str, stop: Any, out: Any, ready: Any) -> None:
    """In its own process: arrival times (monotonic s) of production_data frames, until `stop`
    (a multiprocessing Event) is set; then the list goes to `out` (a Queue)."""
    from websockets.sync.client import connect

    from scada.tools.bench.load import frame_stamp, stamp_epoch

    arrivals: list[float] = []
    ticks: list[float] = []  # each frame's tick time (its envelope timestamp), epoch s
    closed: str | None = None
    try:
        with connect(url, max_size=None, open_timeout=30) as ws:
            ready.set()
            while not stop.is_set():
                try:
                    raw = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                data = raw if isinstance(raw, bytes) else raw.encode()
                if b'"production_data"' in data[:200]:
                    arrivals.append(time.monotonic())
                    stamp = frame_stamp(data)
                    ticks.append(stamp_epoch(stamp) if stamp else float("nan"))
    except Exception as err:  # reported with the figures, not lost in a child's traceback
        closed = repr(err)
    ready.set()
    out.put({"arrivals": arrivals, "ticks": ticks, "error": closed})


# ---------------------------------------------------------------- the reader processes


def read(base: str, reads: list[Read], tokens: list[str | None], until: float, out: Any) -> None:
    """In its own process: one task per entry of `tokens` (None: anonymous) looping over
    `reads` (each task starting at another one) until monotonic `until`."""
    out.put(asyncio.run(_read_all(base, reads, tokens, until)))


async def _read_all(
    base: str, reads: list[Read], tokens: list[str | None], until: float
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    await asyncio.gather(
        *(_reader(base, reads, token, i, until, results) for i, token in enumerate(tokens))
    )
    return results


async def _reader(
    base: str,
    reads: list[Read],
    token: str | None,
    index: int,
    until: float,
    results: list[dict[str, Any]],
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    who = "token" if token else "anonymous"
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=30.0)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
        for n in itertools.count(index):
            if time.monotonic() >= until:
                return
            r = reads[n % len(reads)]
            started = time.monotonic()
            status, size = 0, 0
            try:
                async with client.stream("GET", r.path) as response:
                    status = response.status_code
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
            except httpx.HTTPError:
                status = 0  # reset, timed out: counted as status 0
            results.append(
                {
                    "read": r.label,
                    "who": who,
                    "status": status,
                    "bytes": size,
                    "ms": (time.monotonic() - started) * 1000,
                    "end": time.monotonic(),
                }
            )
            if status in (0, 429, 503):
                await asyncio.sleep(BACKOFF_429_S)


# ---------------------------------------------------------------- figures


def gaps(arrivals: Sequence[float], start: float, end: float) -> list[float]:
    """Gaps (ms) between consecutive frames of the window [start, end], counting the frame
    just before it and the one just after (a stall across an edge counts whole); with no
    frame at all after `start`, the silence up to `end` is a gap too."""
    ordered = sorted(arrivals)
    before = [t for t in ordered if t < start][-1:]
    inside = [t for t in ordered if start <= t <= end]
    after = [t for t in ordered if t > end][:1]
    points = before + inside + after
    out = [(b - a) * 1000 for a, b in itertools.pairwise(points)]
    if not after:
        last = points[-1] if points else start
        if end > last:
            out.append((end - last) * 1000)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ticks_missing(ticks: Sequence[float], tick_s: float = TICK_S) -> int:
    """Ticks a client never got a frame of, from the frames' tick times (a stall that the
    server makes up by sending only the newest frame shows here, not as a longer gap)."""
    known = sorted({round(t / tick_s) for t in ticks if t == t})  # t == t: not NaN
    return sum(max(0, b - a - 1) for a, b in itertools.pairwise(known))


def gap_figures(
    arrivals: Sequence[float], start: float, end: float, ticks: Sequence[float] = ()
) -> dict[str, Any]:
    g = gaps(arrivals, start, end)
    mine = [k for t, k in zip(arrivals, ticks, strict=False) if start <= t <= end]
    return {
        "seconds": round(end - start, 1),
        "frames": sum(1 for t in arrivals if start <= t <= end),
        "ticks_missing": ticks_missing(mine),
        "gap_ms_max": round(max(g, default=0.0), 1),
        "gap_ms_p99": round(percentile(g, 0.99), 1),
        "gaps_over_target": sum(1 for x in g if x > GAP_TARGET_MS),
    }


def route_figures(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per read: requests, status counts, served (200) p50/max ms and the largest body."""
    out: dict[str, dict[str, Any]] = {}
    for label in sorted({r["read"] for r in results}):
        mine = [r for r in results if r["read"] == label]
        ok = sorted(r["ms"] for r in mine if r["status"] == 200)
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        out[label] = {
            "requests": len(mine),
            "status": dict(sorted(statuses.items())),
            "served_p50_ms": round(ok[len(ok) // 2], 1) if ok else None,
            "served_max_ms": round(ok[-1], 1) if ok else None,
            "max_bytes": max((r["bytes"] for r in mine if r["status"] == 200), default=0),
        }
    return out


def status_totals(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Status counts of anonymous and token readers apart."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        counts = out.setdefault(r["who"], {})
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    return {who: dict(sorted(c.items())) for who, c in sorted(out.items())}
