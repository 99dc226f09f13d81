"""`scada bench --stall`: do heavy reads stall the plant view?

Builds a data dir whose alarm journal holds `--events` events (default 300,000: raise, ack
and clear of real alarm names over the last 30 days) and whose audit log holds a tenth as
many records, starts the real server on it, and watches `production_data` from a separate
process while ten clients at a time ask for KPIs (31 days), alarm history, history, the
audit log and the alarm export, for `--seconds`. Reported: the largest gap between two
`production_data` frames before and during the load (the tick is 100 ms; the target is no gap
over 200 ms), how many heavy reads were served or refused (429) and how fast, and the
server's RSS. Three runs: the configured limits; the limits lifted so all ten run at once
(what the off-loop reads alone achieve); and 300 failed logins from 300 addresses (issue #9
defect 9: password checks have their own executor and a global budget).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from scada.alarms.journal import Journal
from scada.alarms.model import AlarmEvent
from scada.auth.auditlog import AuditRecord
from scada.auth.store import AuthStore
from scada.core.config import default_config_text
from scada.tools.bench.servers import ServerUnderTest, descendants_pss_kb, rss_kb

CONCURRENCY = 10
LOGIN_FLOOD = 300
GAP_TARGET_MS = 200.0
READS = [
    "/api/alarms/kpi?hours=744",
    "/api/alarms/history?limit=1000",
    "/api/history?tags=line1.diameter,line2.diameter&from=-24h&points=1000",
    "/api/audit?limit=1000",
    "/api/alarms/export?format=csv",
]
ALARMS = [
    f"line{n}.{tag}.{c}" for n in range(1, 9) for tag, c in (("diameter", "hi"), ("diameter", "lo"))
]
LIFTED = {
    "anonymous": CONCURRENCY,
    "viewer": CONCURRENCY,
    "operator": CONCURRENCY,
    "engineer": CONCURRENCY,
    "admin": CONCURRENCY,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stall", action="store_true", help="run the heavy-read stall benchmark")
    p.add_argument("--events", type=int, default=300_000, help="--stall journal size")


def _event(occ: int, alarm: str, kind: str, state: str, at: float, raised: float) -> AlarmEvent:
    line = alarm.split(".")[0].removeprefix("line")
    tag = alarm.rsplit(".", 1)[0]
    return AlarmEvent(
        event_id=None,
        occurrence_id=occ,
        alarm=alarm,
        production_line_id=line,
        tag=tag,
        condition=alarm.rsplit(".", 1)[1],
        severity="medium",
        event=kind,
        state=state,
        message=f"{tag} out of limits",
        value=12.5,
        limit=12.0,
        at=at,
        raised_at=raised,
        cleared_at=at if kind == "cleared" else None,
        acked_at=raised + 30 if kind != "raised" else None,
        acked_by="bench" if kind != "raised" else None,
    )


def build_journal(path: Path, events: int, now: float) -> None:
    journal = Journal(path, retention_days=90, retention_events=max(events, 1000) * 2)
    occurrences = events // 3
    span = 30 * 86_400.0
    batch: list[AlarmEvent] = []
    for occ in range(1, occurrences + 1):
        alarm = ALARMS[occ % len(ALARMS)]
        raised = now - span + occ * span / occurrences - 120
        batch += [
            _event(occ, alarm, "raised", "unacked_active", raised, raised),
            _event(occ, alarm, "acknowledged", "acked_active", raised + 30, raised),
            _event(occ, alarm, "cleared", "normal", raised + 90, raised),
        ]
        if len(batch) >= 30_000:
            journal.append(batch)
            batch = []
    journal.append(batch)
    journal.close()


def build_data_dir(data: Path, events: int) -> list[str]:
    """The journal and audit log; returns CONCURRENCY admin tokens (one per client)."""
    now = time.time()
    build_journal(data / "journal.sqlite", events, now)
    store = AuthStore(data / "auth.sqlite")
    store.add_user("admin", "admin", "bench-password-not-used")
    tokens = [store.create_token(f"bench{i}", "admin", "bench")[1] for i in range(CONCURRENCY)]
    with store.db.transaction() as db:
        for i in range(events // 10):
            r = AuditRecord("bench", "admin", "127.0.0.1", "ack", str(i), "ok", "", at=now - i)
            db.execute(
                "INSERT INTO audit(at, user, role, address, action, target, result, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (r.at, r.user, r.role, r.address, r.action, r.target, r.result, r.detail),
            )
    store.close()
    return tokens


def _watch(url: str, seconds: float, out: Any) -> None:
    """In its own process: arrival times (monotonic) of production_data frames."""
    from websockets.sync.client import connect

    arrivals: list[float] = []
    deadline = time.monotonic() + seconds
    with connect(url, max_size=None) as ws:
        while time.monotonic() < deadline:
            try:
                raw = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if b'"production_data"' in (raw if isinstance(raw, bytes) else raw.encode()):
                arrivals.append(time.monotonic())
    out.put(arrivals)


def _get(url: str, token: str) -> tuple[int, int]:
    """(status, body bytes) of one GET (stdlib only: the bench needs no test extras)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), len(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), len(err.read())


async def _client(
    http: str, token: str, index: int, until: float, results: list[dict[str, Any]]
) -> None:
    i = index
    while time.monotonic() < until:
        path = READS[i % len(READS)]
        i += 1
        started = time.monotonic()
        status, size = await asyncio.to_thread(_get, http + path, token)
        ms = (time.monotonic() - started) * 1000
        results.append({"path": path.split("?")[0], "status": status, "bytes": size, "ms": ms})
        if status == 429:
            await asyncio.sleep(0.05)


async def _load(server: ServerUnderTest, tokens: list[str], seconds: float) -> dict[str, Any]:
    until = time.monotonic() + seconds
    results: list[dict[str, Any]] = []
    peak = rss_kb(server.pid)
    workers = 0

    async def sample() -> None:
        nonlocal peak, workers
        while time.monotonic() < until:
            peak = max(peak, rss_kb(server.pid))
            workers = max(workers, descendants_pss_kb(server.pid))
            await asyncio.sleep(0.1)

    clients = [_client(server.http, t, i, until, results) for i, t in enumerate(tokens)]
    await asyncio.gather(sample(), *clients)
    return {"results": results, "rss_peak_kb": peak, "workers_pss_peak_kb": workers}


def _config_text(data: Path, mode: str) -> str:
    """The default plant on `data`; lifted: every heavy-read limit at CONCURRENCY; logins:
    the bench's X-Forwarded-For believed, so each login comes from its own address."""
    text = default_config_text().replace('data_dir = "data"', f"data_dir = {str(data)!r}", 1)
    if mode == "logins":
        text += '\n[auth]\ntrusted_proxies = ["127.0.0.1"]\n'
    if mode == "lifted":
        roles = ", ".join(f"{role} = {n}" for role, n in LIFTED.items())
        text += (
            f"\n[auth]\nheavy_reads_per_client = {CONCURRENCY}\nmax_exports = {CONCURRENCY}\n"
            f"heavy_reads_per_role = {{{roles}}}\n"
        )
    return text


def _gaps(arrivals: list[float], start: float, end: float) -> list[float]:
    inside = [t for t in arrivals if start <= t <= end]
    return [(b - a) * 1000 for a, b in itertools.pairwise(inside)]


def _post_login(url: str, address: str) -> tuple[int, int]:
    body = b'{"username": "admin", "password": "not the password"}'
    headers = {"Content-Type": "application/json", "X-Forwarded-For": address}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), len(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), len(err.read())


async def _login_flood(server: ServerUnderTest, seconds: float) -> dict[str, Any]:
    """LOGIN_FLOOD failed logins, each from its own address, 30 at a time."""
    results: list[dict[str, Any]] = []
    addresses = iter(f"198.18.{i // 250}.{i % 250 + 1}" for i in range(LOGIN_FLOOD))
    peak = rss_kb(server.pid)

    async def worker() -> None:
        nonlocal peak
        for address in addresses:
            started = time.monotonic()
            status, size = await asyncio.to_thread(_post_login, f"{server.http}/api/login", address)
            ms = (time.monotonic() - started) * 1000
            results.append({"path": "/api/login", "status": status, "bytes": size, "ms": ms})
            peak = max(peak, rss_kb(server.pid))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(30))), seconds + 60)
    return {"results": results, "rss_peak_kb": peak, "workers_pss_peak_kb": 0}


def measure(tokens: list[str], data: Path, seconds: float, mode: str) -> dict[str, Any]:
    config_path = data.parent / f"{mode}.toml"
    config_path.write_text(_config_text(data, mode))
    server = ServerUnderTest("scada", config=str(config_path))
    server.start(timeout=120)
    try:
        baseline_s = 3.0
        queue: Any = multiprocessing.get_context("spawn").Queue()
        url = f"ws://127.0.0.1:{server.port}/ws"
        watcher = multiprocessing.get_context("spawn").Process(
            target=_watch, args=(url, baseline_s + seconds + 2.0, queue)
        )
        rss_before = rss_kb(server.pid)
        watcher.start()
        time.sleep(1.0 + baseline_s)
        load_start = time.monotonic()
        if mode == "logins":
            load = asyncio.run(_login_flood(server, seconds))
        else:
            load = asyncio.run(_load(server, tokens, seconds))
        load_end = time.monotonic()
        arrivals: list[float] = queue.get(timeout=60)
        watcher.join(10)
    finally:
        server.stop()
    before = _gaps(arrivals, load_start - baseline_s, load_start)
    during = _gaps(arrivals, load_start, load_end)
    return summarize(load, before, during, rss_before, mode)


MODES = {
    "defaults": "heavy reads, configured limits",
    "lifted": "heavy reads, limits lifted (10 per role, client and exports)",
    "logins": "300 failed logins from 300 addresses",
}


def summarize(
    load: dict[str, Any], before: list[float], during: list[float], rss: int, mode: str
) -> dict[str, Any]:
    results = load["results"]
    served = [r for r in results if r["status"] == 200]
    by_path: dict[str, dict[str, Any]] = {}
    for r in served:
        entry = by_path.setdefault(r["path"], {"n": 0, "ms": [], "bytes": 0})
        entry["n"] += 1
        entry["ms"].append(r["ms"])
        entry["bytes"] = max(entry["bytes"], r["bytes"])
    return {
        "load": MODES[mode],
        "gap_ms_max_before": round(max(before, default=0.0), 1),
        "gap_ms_max_during": round(max(during, default=0.0), 1),
        "gap_ms_p99_during": round(_p(during, 0.99), 1),
        "gaps_over_200ms": sum(1 for g in during if g > GAP_TARGET_MS),
        "frames_during": len(during) + 1 if during else 0,
        "requests": len(results),
        "served": len(served),
        "refused_429": sum(1 for r in results if r["status"] == 429),
        "status_counts": {
            str(k): sum(1 for r in results if r["status"] == k)
            for k in sorted({r["status"] for r in results})
        },
        "per_route": {
            p: {
                "n": e["n"],
                "p50_ms": round(statistics.median(e["ms"]), 1),
                "max_ms": round(max(e["ms"]), 1),
                "max_bytes": e["bytes"],
            }
            for p, e in sorted(by_path.items())
        },
        "rss_mb_before": round(rss / 1024, 1),
        "rss_mb_peak": round(load["rss_peak_kb"] / 1024, 1),
        # The heavy-read worker processes (scada.core.offload) and their fork server.
        "workers_pss_mb_peak": round(load.get("workers_pss_peak_kb", 0) / 1024, 1),
    }


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scada-stall-") as tmp:
        data = Path(tmp) / "data"
        if progress:
            progress(f"building a {args.events:,}-event journal")
        started = time.monotonic()
        tokens = build_data_dir(data, args.events)
        built_s = time.monotonic() - started
        runs = []
        for mode in MODES:
            if progress:
                progress(f"stall run: {MODES[mode]}")
            runs.append(measure(tokens, data, args.seconds, mode))
    return {
        "events": args.events,
        "audit_records": args.events // 10,
        "seconds": args.seconds,
        "concurrency": CONCURRENCY,
        "build_s": round(built_s, 1),
        "runs": runs,
    }


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"stall: {doc['events']:,} journal events, {doc['audit_records']:,} audit records, "
        f"{doc['concurrency']} clients reading for {doc['seconds']:g} s each run",
    ]
    for r in doc["runs"]:
        lines.append(
            f"  {r['load']}: production_data gap max {r['gap_ms_max_during']} ms "
            f"(before load {r['gap_ms_max_before']} ms, p99 {r['gap_ms_p99_during']} ms, "
            f"{r['gaps_over_200ms']} over 200 ms); {r['requests']} requests, "
            f"status counts {r['status_counts']}; "
            f"RSS {r['rss_mb_before']} -> {r['rss_mb_peak']} MB "
            f"(+ {r['workers_pss_mb_peak']} MB PSS of the heavy-read workers)"
        )
        for path, e in r["per_route"].items():
            lines.append(
                f"      {path:<22} n={e['n']:<4} p50 {e['p50_ms']:>8} ms  max {e['max_ms']:>8} ms"
                f"  {e['max_bytes']:>10,} B"
            )
    return "\n".join(lines)
