"""KPI bench: a synthetic journal of N events, the KPI query time and its memory, and (with
--url) the production_data gaps seen while concurrent KPI requests run on a live server.

    python -m scada.tools.bench.kpibench --events 300000 --journal /tmp/j.sqlite
    python -m scada.tools.bench.kpibench --journal DATA/journal.sqlite --url http://127.0.0.1:8000 \\
        --concurrent 10

The journal holds a plausible month: ~600 alarm names, raise/clear/ack cycles, a few
chattering alarms and flood bursts, spread over 30 days up to now.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scada.alarms import kpi as kpi_mod
from scada.alarms.flood import FloodDetector
from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent

DAY = 86_400.0
SEVERITIES = ("low", "low", "low", "medium", "medium", "high", "critical")


def build_journal(path: Path, events: int, *, seed: int = 7, end: float | None = None) -> None:
    rng = random.Random(seed)
    end = time.time() if end is None else end
    start = end - 30 * DAY
    names = [f"line{1 + i % 8}.tag{i // 8}.{('hi', 'lo', 'rate')[i % 3]}" for i in range(600)]
    journal = Journal(path, retention_days=365, retention_events=10_000_000)
    batch: list[AlarmEvent] = []
    occurrence, written = 0, 0
    while written < events:
        name = rng.choice(names)
        at = rng.uniform(start, end)
        if rng.random() < 0.002:  # a flood burst: 40 alarms in 2 minutes
            cycle = [(rng.choice(names), at + rng.uniform(0, 120)) for _ in range(40)]
        else:
            cycle = [(name, at)]
        for alarm, t in cycle:
            occurrence += 1
            severity = SEVERITIES[hash(alarm) % len(SEVERITIES)]
            for kind, dt in (("raised", 0.0), ("acknowledged", 30.0), ("cleared", 90.0)):
                batch.append(_event(alarm, occurrence, kind, t + dt, t, severity))
        written += 3 * len(cycle)
        if len(batch) >= 5000:
            journal.append(sorted(batch, key=lambda e: e.at))
            batch = []
    if batch:
        journal.append(sorted(batch, key=lambda e: e.at))
    journal.close()


def _event(
    alarm: str, occurrence: int, kind: str, at: float, raised: float, severity: str
) -> AlarmEvent:
    state = {"raised": "unacked_active", "acknowledged": "acked_active", "cleared": "normal"}
    return AlarmEvent(
        event_id=None,
        occurrence_id=occurrence,
        alarm=alarm,
        production_line_id=alarm[4],
        tag=alarm.split(".")[1],
        condition=alarm.rsplit(".", 1)[1],
        severity=severity,
        event=kind,
        state=state[kind],
        message=alarm,
        value=1.0,
        limit=1.0,
        at=at,
        raised_at=raised,
        alarm_state=state[kind],
    )


def kpi_once(path: Path, hours: float) -> tuple[float, dict[str, object]]:
    journal = Journal(path, retention_days=365, retention_events=10_000_000)
    end = time.time()
    started = time.perf_counter()
    with journal.reader() as db:
        report = kpi_mod.compute(db, start=end - hours * 3600, end=end, flood=FloodDetector())
    elapsed = time.perf_counter() - started
    journal.close()
    return elapsed, report


async def gaps_under_load(url: str, concurrent: int, hours: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    ws_url = url.replace("http", "ws", 1) + "/ws"
    stamps: list[float] = []
    done = asyncio.Event()

    async def watch() -> None:
        async with connect(ws_url, max_size=None) as ws:
            while not done.is_set():
                frame = json.loads(await ws.recv())
                if frame["type"] == "production_data":
                    stamps.append(time.monotonic())

    def one() -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/api/alarms/kpi?hours={hours}", timeout=120) as r:
                r.read()
                status = int(r.status)
        except urllib.error.HTTPError as err:
            status = err.code
        return status, time.perf_counter() - t0

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(2.0)
    before = len(stamps)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=concurrent) as pool:  # all of them at once
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, one) for _ in range(concurrent))
        )
    await asyncio.sleep(1.0)
    done.set()
    watcher.cancel()
    window = stamps[max(0, before - 1) :]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    return {
        "requests": [{"status": s, "seconds": round(t, 3)} for s, t in results],
        "frames": len(window),
        "max_gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--events", type=int, default=0, help="build a journal of N events")
    parser.add_argument("--hours", type=float, default=720.0)
    parser.add_argument("--url", help="a running server whose journal this is")
    parser.add_argument("--concurrent", type=int, default=10)
    args = parser.parse_args()
    if args.events:
        t0 = time.perf_counter()
        build_journal(args.journal, args.events)
        print(f"built {args.events} events in {time.perf_counter() - t0:.1f} s")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed, report = kpi_once(args.journal, args.hours)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    floods = report["floods"]
    print(
        f"KPI over {args.hours:g} h: {elapsed * 1000:.0f} ms, peak RSS +{(rss1 - rss0) / 1024:.1f}"
        f" MB, raised {report['raised']}, flood episodes {floods['count']}"  # type: ignore[index]
    )
    if args.url:
        print(json.dumps(asyncio.run(gaps_under_load(args.url, args.concurrent, args.hours))))


if __name__ == "__main__":
    main()
