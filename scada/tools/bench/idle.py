"""`scada bench --idle-memory`: what one idle WebSocket connection costs the server.

Idle: connected, reading every frame the server sends, sending nothing. Two measurements at
`--clients` N:

1. RSS per connection of each target (`scada serve`, the `bare` reference; subprocesses, no
   tracing): RSS once N clients are connected and settled, minus RSS before, over N.
2. The real server in this process with tracemalloc on: the bytes Python holds per
   connection, the allocation sites that hold them, and the objects per connection by type
   (a census of what the garbage collector tracks), so a regression names its culprit.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from scada.tools.bench.churn import inprocess_server
from scada.tools.bench.fanoutbench import default_workers
from scada.tools.bench.load import (
    Workers,
    WorkerSpec,
    await_connected,
    raise_fd_limit,
    shares,
    start_workers,
)
from scada.tools.bench.servers import ServerUnderTest, rss_kb

TARGET_KB = 10.0  # issue #12: at most 10 KB per idle connection at 2,000 clients
SETTLE_S = 2.0  # after the last handshake, before memory is read (less for a few clients)
TOP = 12


def settle(clients: int) -> None:
    time.sleep(min(SETTLE_S, 0.5 + clients / 1000))


@contextlib.contextmanager
def idle_clients(host: str, port: int, path: str, clients: int) -> Iterator[int]:
    """Open `clients` WebSockets from worker processes; yield how many connected."""
    raise_fd_limit(clients + 1024)
    workers = default_workers(clients)
    procs: Workers = []
    try:
        start_workers([WorkerSpec(host, port, path, n) for n in shares(clients, workers)], procs)
        connected = await_connected(procs)
        yield connected
    finally:
        now = time.time()
        for _, pipe in procs:
            with contextlib.suppress(OSError):
                pipe.send((now, now, now))  # an empty window: the workers report and close
        for proc, _ in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def rss_per_connection(kind: str, clients: int, config: str | None = None) -> dict[str, Any]:
    server = ServerUnderTest(kind, config=config)
    server.start()
    try:
        settle(clients)
        before = rss_kb(server.pid)
        with idle_clients(server.host, server.port, server.path, clients) as connected:
            settle(clients)
            after = rss_kb(server.pid)
    finally:
        server.stop()
    per = (after - before) / connected if connected else None
    return {"connected": connected, "rss_mb": after / 1024, "kb_per_connection": per}


def census() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def traced_per_connection(clients: int) -> dict[str, Any]:
    """The real server in this process: what Python holds per idle connection."""
    tracemalloc.start(1)
    try:
        with inprocess_server(clients) as (server, url):
            broadcaster = server.config.loaded_app.app.state.broadcaster
            settle(clients)
            gc.collect()
            before, objects_before = tracemalloc.take_snapshot(), census()
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            with idle_clients("127.0.0.1", port, "/ws", clients):
                settle(clients)
                connected = len(broadcaster.clients)
                gc.collect()
                after, objects_after = tracemalloc.take_snapshot(), census()
    finally:
        tracemalloc.stop()
    n = max(connected, 1)
    diff = after.compare_to(before, "lineno")
    sites = [
        [_short(str(d.traceback[0])), d.size_diff / n, d.count_diff / n]
        for d in diff[:TOP]
        if d.size_diff
    ]
    objects: list[tuple[str, float]] = [
        (name, (count - objects_before.get(name, 0)) / n)
        for name, count in objects_after.items()
        if count - objects_before.get(name, 0) >= n * 0.5
    ]
    objects.sort(key=lambda item: -item[1])
    return {
        "connected": connected,
        "bytes_per_connection": sum(d.size_diff for d in diff) / n,
        "top_sites": sites,
        "objects_per_connection": objects,
    }


def _short(site: str) -> str:
    """`.../site-packages/uvicorn/x.py:12` → `uvicorn/x.py:12`; the same for the stdlib and
    this project's files."""
    for marker in ("site-packages/", "/lib/python3", "/scada/"):
        i = site.rfind(marker)
        if i >= 0:
            rest = site[i + len(marker) :]
            if marker == "/lib/python3":
                rest = rest.split("/", 1)[-1]
            return ("scada/" + rest) if marker == "/scada/" else rest
    return site


def run(args: Any, progress: Any) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    rss: dict[str, Any] = {}
    for kind in [t.strip() for t in args.targets.split(",") if t.strip()]:
        say(f"idle memory: {kind}, {args.clients} clients")
        rss[kind] = rss_per_connection(kind, args.clients, args.config)
    say(f"idle memory: scada in-process with tracemalloc, {args.clients} clients")
    return {
        "clients": args.clients,
        "pid": os.getpid(),
        "rss": rss,
        "traced": traced_per_connection(args.clients),
        "target_kb": TARGET_KB,
    }


def render(doc: dict[str, Any]) -> str:
    out = [
        f"scada bench --idle-memory: {doc['clients']} idle clients "
        "(connected, reading every frame, sending nothing)",
        "",
        f"{'':28}" + "".join(f"{kind:>12}" for kind in doc["rss"]),
        f"{'clients connected':28}"
        + "".join(f"{r['connected']:>12d}" for r in doc["rss"].values()),
        f"{'server RSS (MB)':28}" + "".join(f"{r['rss_mb']:>12.1f}" for r in doc["rss"].values()),
        f"{'RSS per connection (KB)':28}"
        + "".join(
            f"{'-' if r['kb_per_connection'] is None else format(r['kb_per_connection'], '.1f'):>12}"
            for r in doc["rss"].values()
        ),
    ]
    scada = doc["rss"].get("scada")
    if scada and scada["kb_per_connection"] is not None:
        verdict = "holds" if scada["kb_per_connection"] <= doc["target_kb"] else "missed"
        out += [
            "",
            f"scada: {scada['kb_per_connection']:.1f} KB per idle connection "
            f"(target ≤ {doc['target_kb']:.0f} KB: {verdict})",
        ]
    traced = doc["traced"]
    out += [
        "",
        f"Python memory per connection in scada (tracemalloc, {traced['connected']} clients): "
        f"{traced['bytes_per_connection'] / 1024:.1f} KB",
        "  bytes  blocks  allocated at",
    ]
    out += [f"  {size:5.0f}  {count:6.2f}  {site}" for site, size, count in traced["top_sites"]]
    out += ["", "objects per connection (gc census):"]
    out.append(
        "  " + ", ".join(f"{count:.2g} {name}" for name, count in traced["objects_per_connection"])
    )
    return "\n".join(out)
