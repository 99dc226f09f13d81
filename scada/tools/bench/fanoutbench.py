"""One fan-out measurement: a server under test, N clients in worker processes, one window."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scada.tools.bench.load import (
    Workers,
    WorkerSpec,
    await_connected,
    raise_fd_limit,
    shares,
    start_workers,
)
from scada.tools.bench.servers import ServerUnderTest, cpu_seconds, rss_kb

Progress = Callable[[str], None]


@dataclass
class FanoutResult:
    target: str
    clients: int
    connected: int
    seconds: float
    frames: int  # production_data frames received in the window, all clients
    rate_min: float  # frames/s per client
    rate_p50: float
    rate_mean: float
    rate_max: float
    clients_below_9_9: int
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    latency_ms_max: float | None
    seq_gaps: int
    closed_by_server: int
    cpu_s: float  # server utime + stime over the window
    cpu_us_per_frame: float | None
    bytes_per_frame: float | None  # on the wire: WebSocket header + payload
    rss_mb: float
    rss_kb_per_connection: float | None
    tick_ms_p50: float | None
    tick_ms_p99: float | None
    tick_overruns: int | None
    slow_client_dropped_after_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    target: str,
    clients: int,
    seconds: float,
    frames: list[int],
    latencies_s: np.ndarray,
    *,
    wire_bytes: int = 0,
    gaps: int = 0,
    closed: int = 0,
    cpu_s: float = 0.0,
    rss_mb: float = 0.0,
    rss_kb_per_connection: float | None = None,
    health: dict[str, Any] | None = None,
    slow_drop_s: float | None = None,
    cpu_known: bool = True,
) -> FanoutResult:
    """Pure: turn what the clients received into the reported figures."""
    rates = np.asarray(frames, dtype=float) / seconds if frames else np.zeros(1)
    total = int(sum(frames))
    lat_ms = latencies_s * 1000.0

    def pct(q: float) -> float | None:
        return float(np.percentile(lat_ms, q)) if len(lat_ms) else None

    return FanoutResult(
        target=target,
        clients=clients,
        connected=len(frames),
        seconds=seconds,
        frames=total,
        rate_min=float(rates.min()),
        rate_p50=float(np.median(rates)),
        rate_mean=float(rates.mean()),
        rate_max=float(rates.max()),
        clients_below_9_9=int((rates < 9.9).sum()),
        latency_ms_p50=pct(50),
        latency_ms_p99=pct(99),
        latency_ms_max=float(lat_ms.max()) if len(lat_ms) else None,
        seq_gaps=gaps,
        closed_by_server=closed,
        cpu_s=cpu_s,
        cpu_us_per_frame=cpu_s / total * 1e6 if total and cpu_known else None,
        bytes_per_frame=wire_bytes / total if total else None,
        rss_mb=rss_mb,
        rss_kb_per_connection=rss_kb_per_connection,
        tick_ms_p50=health.get("tick_ms_p50") if health else None,
        tick_ms_p99=health.get("tick_ms_p99") if health else None,
        tick_overruns=health.get("tick_overruns") if health else None,
        slow_client_dropped_after_s=slow_drop_s,
    )


def default_workers(clients: int) -> int:
    return max(1, min(4, math.ceil(clients / 750)))


def measure(
    server: ServerUnderTest,
    *,
    clients: int,
    seconds: float,
    workers: int | None = None,
    deflate: bool = False,
    slow_client: bool = True,
    progress: Progress | None = None,
) -> FanoutResult:
    """Start the server, connect, measure one window, stop. The server is always stopped."""
    say = progress or (lambda _msg: None)
    raise_fd_limit(clients + 1024)
    workers = workers or default_workers(clients)
    procs: Workers = []
    server.start()
    try:
        time.sleep(1.0)
        rss_before = rss_kb(server.pid)
        specs = [
            WorkerSpec(
                server.host,
                server.port,
                server.path,
                n,
                deflate=deflate,
                slow_client=slow_client and i == 0 and server.kind == "scada",
            )
            for i, n in enumerate(shares(clients, workers))
        ]
        start_workers(specs, procs)
        connected = await_connected(
            procs, lambda n: say(f"{server.label}: {n}/{clients} connected")
        )
        time.sleep(2.0)
        rss_after = rss_kb(server.pid)
        per_conn = (rss_after - rss_before) / connected if connected and server.pid else None
        start = time.time() + 1.0
        end = start + seconds
        for _, pipe in procs:
            pipe.send((start, end, start))
        time.sleep(max(0.0, start - time.time()))
        cpu0 = cpu_seconds(server.pid)
        stalled_at: float | None = None
        drop_s: float | None = None
        health0 = server.health()
        dropped0 = health0["slow_clients_dropped"] if health0 else 0
        while time.time() < end:
            time.sleep(min(0.25, max(0.0, end - time.time())))
            for _, pipe in procs:
                if pipe.poll():
                    kind, value = pipe.recv()
                    if kind == "stalled":
                        stalled_at = value
                    elif kind == "error":
                        raise RuntimeError(f"load worker failed: {value}")
            if stalled_at is not None and drop_s is None:
                health = server.health()
                if health and health["slow_clients_dropped"] > dropped0:
                    drop_s = time.time() - stalled_at
            cpu = cpu_seconds(server.pid) - cpu0
            elapsed = time.time() - start
            say(
                f"{server.label}: {clients} clients, {elapsed:4.1f}/{seconds:.0f} s, "
                f"server CPU {cpu / max(elapsed, 1e-9) * 100:3.0f}%"
                + (f", slow client dropped after {drop_s:.1f} s" if drop_s is not None else "")
            )
        cpu_s = cpu_seconds(server.pid) - cpu0
        health = server.health()
        rss = rss_kb(server.pid)
        frames: list[int] = []
        lat_parts: list[np.ndarray] = []
        wire = gaps = closed = 0
        for _, pipe in procs:
            while True:
                kind, value = pipe.recv()
                if kind == "result":
                    break
                if kind == "error":
                    raise RuntimeError(f"load worker failed: {value}")
            frames.extend(value["frames"])
            lat_parts.append(np.frombuffer(value["latencies"], dtype=np.float64))
            wire += value["wire_bytes"]
            gaps += value["gaps"]
            closed += value["closed"]
        return summarize(
            server.label,
            clients,
            seconds,
            frames,
            np.concatenate(lat_parts) if lat_parts else np.zeros(0),
            wire_bytes=wire,
            gaps=gaps,
            closed=closed,
            cpu_s=cpu_s,
            rss_mb=rss / 1024,
            cpu_known=server.pid is not None,
            rss_kb_per_connection=per_conn,
            health=health,
            slow_drop_s=drop_s,
        )
    finally:
        for proc, _ in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
        server.stop()


def stderr_progress(message: str) -> None:
    sys.stderr.write("\r\x1b[2K" + message)
    sys.stderr.flush()
