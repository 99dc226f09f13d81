"""`scada bench --readers`: does a crowd of heavy readers hold up the plant view? (issue #20)

1. A data directory (`--readers-dir`, reused when it holds the files; else a temporary one): a
   300,000-event alarm journal, 30,000 audit records and `--history-hours` of history
   (`readersdata`), and admin API tokens made by `scada tokens create`.
2. The real server (`scada serve`, uvicorn on a free port) in a child process on it; with
   `--cluster`, `scada cluster`'s Redis, ingest pair, gateways and nginx instead (the same
   data in each ingest node's directory; `readerscluster`).
3. A separate watcher process on /ws records every production_data frame's arrival.
4. `--baseline` seconds with no reader (the same server, the same watcher: the run's own
   baseline), then `--seconds` of reader processes hammering: anonymous tasks and token tasks,
   each looping over 32-tag 1-hour history as CSV and JSON, KPIs over 31 days, alarm history
   over 30 days, the alarm export and the audit log (`readersload.plan`), on its own
   connection, retrying 50 ms after a 429.
5. Reported: the largest and p99 gap between frames and the frames received, baseline beside
   load; per read the requests and their status counts (200/429/403), served p50/max time and
   body size. The target: no gap over 0.5 s (and, in the cluster, the lease never lost).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scada.tools.bench.readersload import (
    GAP_TARGET_MS,
    Read,
    gap_figures,
    plan,
    read,
    route_figures,
    status_totals,
    watch,
)

Progress = Callable[[str], None] | None
CTX = multiprocessing.get_context("spawn")
SETTLE_S = 2.0  # after the watcher connected: the first frames, the page cache warm


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--readers (issue #20: heavy readers against the tick)")
    g.add_argument("--readers", action="store_true", help="run the heavy-readers benchmark")
    g.add_argument(
        "--anonymous-readers", type=int, default=4, help="--readers: anonymous tasks (default 4)"
    )
    g.add_argument(
        "--token-readers", type=int, default=4, help="--readers: tasks with a token (default 4)"
    )
    g.add_argument(
        "--baseline", type=float, default=10.0, help="--readers: seconds with no reader first"
    )
    g.add_argument(
        "--history-hours", type=float, default=2.0, help="--readers: history built (>= 1)"
    )
    g.add_argument("--readers-dir", help="--readers: data directory to build or reuse")


def check(args: argparse.Namespace) -> str | None:
    """A refusal for arguments that cannot make the run, or None."""
    if args.anonymous_readers < 0 or args.token_readers < 0:
        return "--anonymous-readers and --token-readers are 0 or more"
    if args.anonymous_readers + args.token_readers == 0:
        return "no readers: give --anonymous-readers or --token-readers"
    if args.history_hours < 1:
        return "--history-hours must be at least 1 (the readers ask for the last hour)"
    if args.seconds <= 0 or args.baseline <= 0:
        return "--seconds and --baseline must be above 0"
    return None


class Watcher:
    """The separate client process: arrival times of production_data frames at `url`."""

    def __init__(self, url: str) -> None:
        self.stop = CTX.Event()
        self.ready = CTX.Event()
        self.queue: Any = CTX.Queue()
        self.proc = CTX.Process(target=watch, args=(url, self.stop, self.queue, self.ready))

    def __enter__(self) -> Watcher:
        self.proc.start()
        if not self.ready.wait(60):
            raise RuntimeError("the watcher did not connect within 60 s")
        return self

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        doc: dict[str, Any] = self.queue.get(timeout=60)
        self.proc.join(10)
        return doc

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.proc.is_alive():
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def hammer(
    base: str, reads: list[Read], anonymous: int, tokens: list[str], seconds: float
) -> tuple[list[dict[str, Any]], float, float]:
    """Reader processes (anonymous ones, token ones) for `seconds`; (results, start, end),
    end when the last request in flight at the deadline has finished."""
    until = time.monotonic() + seconds
    groups: list[list[str | None]] = [[None] * anonymous, list(tokens)]
    queue: Any = CTX.Queue()
    procs = [
        CTX.Process(target=read, args=(base, reads, group, until, queue))
        for group in groups
        if group
    ]
    start = time.monotonic()
    for proc in procs:
        proc.start()
    results: list[dict[str, Any]] = []
    for _ in procs:
        results += queue.get(timeout=seconds + 300)
    for proc in procs:
        proc.join(30)
    end = max([until, *(r["end"] for r in results)])
    return results, start, end


def measure(
    ws_url: str, http: str, reads: list[Read], tokens: list[str], args: argparse.Namespace,
    progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    """Baseline, then load, with one watcher across both (the caller runs the server)."""
    with Watcher(ws_url) as watcher:
        time.sleep(SETTLE_S)
        if progress:
            progress(f"baseline: {args.baseline:g} s, no readers")
        base_start = time.monotonic()
        time.sleep(args.baseline)
        base_end = time.monotonic()
        if progress:
            progress(
                f"load: {args.anonymous_readers} anonymous + {len(tokens)} token readers, "
                f"{args.seconds:g} s"
            )
        results, load_start, load_end = hammer(
            http, reads, args.anonymous_readers, tokens, args.seconds
        )
        time.sleep(0.5)  # the frame after the window
        watched = watcher.finish()
    arrivals, ticks = watched["arrivals"], watched["ticks"]
    return {
        "baseline": gap_figures(arrivals, base_start, base_end, ticks),
        "load": gap_figures(arrivals, load_start, load_end, ticks),
        "watcher_error": watched["error"],
        "reads": route_figures(results),
        "status": status_totals(results),
        "requests": len(results),
    }


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from scada.tools.bench.readersdata import (
        config_text,
        create_tokens,
        history_tags,
        plant,
        prepare,
    )
    from scada.tools.bench.servers import ServerUnderTest

    with tempfile.TemporaryDirectory(prefix="scada-bench-readers-") as tmp:
        work = Path(args.readers_dir) if args.readers_dir else Path(tmp)
        data = work / "data"
        text = config_text(data)
        config = plant(text)
        built = prepare(
            data, config, events=args.events, history_hours=args.history_hours, progress=progress
        )
        if args.cluster:
            from scada.tools.bench import readerscluster

            doc = readerscluster.run(args, work, data, config, progress, measure)
        else:
            config_path = work / "plant.toml"
            config_path.write_text(text)
            tokens = create_tokens(config_path, args.token_readers)
            reads = plan(history_tags(config), time.time())
            server = ServerUnderTest("scada", config=str(config_path))
            if progress:
                progress("starting the server")
            server.start(timeout=180)
            try:
                doc = measure(f"ws://127.0.0.1:{server.port}/ws", server.http, reads, tokens,
                              args, progress)  # fmt: skip
            finally:
                server.stop()
            doc["target"] = "all-in-one (scada serve)"
    doc.update(
        events=args.events,
        history_hours=args.history_hours,
        built=built,
        anonymous_readers=args.anonymous_readers,
        token_readers=args.token_readers,
        gap_target_ms=GAP_TARGET_MS,
        loadavg_after=load_average(),
    )
    return doc


def render(doc: dict[str, Any]) -> str:
    b, w = doc["baseline"], doc["load"]
    rows = [
        ("seconds", "seconds"),
        ("production_data frames", "frames"),
        ("ticks without a frame", "ticks_missing"),
        ("largest gap (ms)", "gap_ms_max"),
        ("p99 gap (ms)", "gap_ms_p99"),
        (f"gaps over {doc['gap_target_ms']:g} ms", "gaps_over_target"),
    ]
    out = [
        f"scada bench --readers: {doc['target']}; {doc['events']:,} journal events, "
        f"{doc['history_hours']:g} h of history; {doc['anonymous_readers']} anonymous + "
        f"{doc['token_readers']} token readers; load average after {doc['loadavg_after']}",
        "",
        f"{'':<26}{'baseline':>12}{'readers':>12}",
        *(f"{label:<26}{b[key]:>12}{w[key]:>12}" for label, key in rows),
        "",
        f"{'read':<16}{'requests':>9}  {'status counts':<28}{'p50 ms':>9}{'max ms':>9}"
        f"{'max bytes':>12}",
    ]
    for label, r in doc["reads"].items():
        status = " ".join(f"{k}:{v}" for k, v in r["status"].items())
        out.append(
            f"{label:<16}{r['requests']:>9}  {status:<28}{_cell(r['served_p50_ms']):>9}"
            f"{_cell(r['served_max_ms']):>9}{r['max_bytes']:>12,}"
        )
    out.append("status by client: " + "; ".join(f"{k} {v}" for k, v in doc["status"].items()))
    if doc.get("watcher_error"):
        out.append(f"watcher: {doc['watcher_error']}")
    verdict = "met" if w["gap_ms_max"] < doc["gap_target_ms"] else "NOT met"
    out.append(f"largest gap under readers < {doc['gap_target_ms']:g} ms: {verdict}")
    if "lease" in doc:
        from scada.tools.bench.readerscluster import render_lease

        out += render_lease(doc["lease"])
    return "\n".join(out)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
