"""`scada bench --churn`: does memory come back after connections go? (tracemalloc per round)

The real server runs in this process (uvicorn in a thread, the same build_server as `scada
serve`) with tracemalloc on; a client process opens `clients` WebSockets, reads a few frames
on each, and drops them all at once, `rounds` times. After each round (garbage collected, the
server back to zero clients) it records RSS, RSS after glibc's malloc_trim (what the allocator
only kept for reuse), and the bytes Python holds; the first rounds warm
caches up, so growth is judged from round 2 on, and the allocation sites that grew most
between round 2 and the last are listed (a leak shows up there, linearly, round after round).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scada.tools.bench.servers import free_port, rss_kb

CLIENT = """
import asyncio, sys
from websockets.asyncio.client import connect

async def one(url, frames):
    async with connect(url, compression=None) as ws:
        for _ in range(frames):
            await ws.recv()
        ws.transport.abort()  # all at once, no close handshake: the churn that hurt

async def main(url, n):
    results = await asyncio.gather(*(one(url, 3) for _ in range(n)), return_exceptions=True)
    print(sum(1 for r in results if isinstance(r, BaseException)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class ChurnRound:
    connections: int
    failed: int
    rss_mb: float
    rss_trimmed_mb: float | None  # after malloc_trim(0): what the allocator merely kept
    traced_mb: float


@dataclass
class ChurnResult:
    clients: int
    rounds: list[ChurnRound] = field(default_factory=list)
    top_growth: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:  # what `--json` prints
        return {
            "clients": self.clients,
            "rounds": [r.__dict__ for r in self.rounds],
            "top_growth": self.top_growth,
        }


@contextlib.contextmanager
def inprocess_server(clients: int) -> Iterator[tuple[Any, str]]:
    """The real server (the same build_server as `scada serve`) in a thread of this process,
    in a throwaway data dir; yields (uvicorn.Server, ws url) and stops it afterwards."""
    from scada.core.config import config_from_dict, default_config_text
    from scada.roles.allinone import create_app
    from scada.server.serve import build_server

    with tempfile.TemporaryDirectory(prefix="scada-bench-") as tmp:
        raw = tomllib.loads(default_config_text())
        raw.setdefault("server", {}).update(
            {"data_dir": str(Path(tmp, "data")), "max_connections": max(clients * 2, 100)}
        )
        port = free_port()
        server = build_server(
            config_from_dict(raw), port=port, log_level="warning", create_app=create_app
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        _wait(lambda: server.started, 30)
        try:
            yield server, f"ws://127.0.0.1:{port}/ws"
        finally:
            server.should_exit = True
            thread.join(15)


def run_churn(clients: int, rounds: int, progress: Any = None) -> ChurnResult:
    tracemalloc.start(8)
    result = ChurnResult(clients)
    with inprocess_server(clients) as (server, url):
        broadcaster = server.config.loaded_app.app.state.broadcaster
        snapshots = []
        for n in range(rounds):
            out = subprocess.run(
                [sys.executable, "-c", CLIENT, url, str(clients)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            failed = int(out.stdout.strip() or clients)
            _wait(lambda: not broadcaster.clients, 30)
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
            snapshots.append(tracemalloc.take_snapshot())
            if len(snapshots) > 2:
                snapshots[1:-1] = []  # keep round 2 (index 1) and the latest
            rss = rss_kb(os.getpid()) / 1024
            trimmed = rss_kb(os.getpid()) / 1024 if malloc_trim() else None
            result.rounds.append(ChurnRound(clients, failed, rss, trimmed, traced / 2**20))
            if progress is not None:
                progress(f"churn round {n + 1}/{rounds}")
    if len(snapshots) == 2:
        diff = snapshots[1].compare_to(snapshots[0], "lineno")
        result.top_growth = [str(d) for d in diff[:10]]
    tracemalloc.stop()
    return result


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): hand free heap pages back to the OS (False: not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("churn: condition not met in time")
        time.sleep(0.05)


def run(args: Any, progress: Any) -> dict[str, Any]:
    return run_churn(args.clients, args.churn, progress).as_dict()


def render(doc: dict[str, Any]) -> str:
    lines = [f"scada bench --churn: {doc['clients']} clients per round, dropped at once", ""]
    lines.append("round  failed  RSS (MB)  after malloc_trim (MB)  Python traced (MB)")
    for i, r in enumerate(doc["rounds"], 1):
        trimmed = "-" if r["rss_trimmed_mb"] is None else f"{r['rss_trimmed_mb']:.1f}"
        lines.append(
            f"{i:>5}  {r['failed']:>6}  {r['rss_mb']:>8.1f}  {trimmed:>22}  {r['traced_mb']:>18.2f}"
        )
    if doc["top_growth"]:
        lines += ["", "largest growth, round 2 to the last (tracemalloc):", *doc["top_growth"]]
    return "\n".join(lines)
