"""`scada bench --cluster`: what the cluster's bus and gateways cost against the all-in-one
server, in one run on this box (docs/cluster.md).

Four windows, each measured like `scada bench --url` (the same clients and figures):

1. `single`: the all-in-one `scada serve`, clients directly on it;
2. `single+nginx`: the same server behind nginx (nginx/cluster.conf over plain http, both
   upstreams pointing at it), the latency reference;
3. `cluster+nginx`: Redis, two ingest nodes and two gateways (`scada cluster`'s processes)
   behind the same nginx config, clients spread over the gateways by least_conn;
4. `gateway`: clients directly on one gateway, for its CPU per delivered frame.

The envelope `timestamp` of a gateway's production_data is the ingest node's tick time, so
the latency of 3 includes the bus; 3 minus 2 is what the bus and the gateway add. 4 over 1 is
a gateway's CPU per delivered frame over the all-in-one server's. The all-in-one windows run
before the cluster starts, so the two never share the CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from scada.tools.bench.fanoutbench import FanoutResult, Progress, default_workers, measure
from scada.tools.bench.report import FANOUT_ROWS, ratio, table
from scada.tools.bench.servers import ServerUnderTest, free_port
from scada.tools.cluster.local import LocalCluster, find_binary, nginx_child, port_listens

# Targets of the issue (#12).
ADDED_P99_MS = 10.0
CPU_RATIO = 1.1


def _window(
    label: str, url: str, pid: int | None, args: argparse.Namespace, progress: Progress | None
) -> FanoutResult:
    result = measure(
        ServerUnderTest.from_url(url, pid),
        clients=args.clients,
        seconds=args.seconds,
        workers=args.workers or default_workers(args.clients),
        progress=progress,
    )
    result.target = label
    return result


def _single(
    args: argparse.Namespace, nginx_bin: str, work: Path, progress: Progress | None
) -> list[FanoutResult]:
    server = ServerUnderTest("scada", config=args.config)
    server.start()
    nginx = None
    try:
        direct = _window("single", f"ws://127.0.0.1:{server.port}/ws", server.pid, args, progress)
        port = free_port()
        nginx = nginx_child(
            nginx_bin,
            work / "nginx-single",
            gateways=[server.port],
            ingests=[server.port],
            port=port,
            tls=False,
        )
        nginx.start()
        _wait(lambda: port_listens(port), "nginx")
        proxied = _window("single+nginx", f"ws://127.0.0.1:{port}/ws", server.pid, args, progress)
        return [direct, proxied]
    finally:
        if nginx is not None:
            nginx.signal(15)
            nginx.wait(10)
        server.stop()


def _cluster(args: argparse.Namespace, work: Path, progress: Progress | None) -> list[FanoutResult]:
    port = free_port()
    config = Path(args.config) if args.config else None
    cluster = LocalCluster(work / "cluster", port=port, config=config, tls=False)
    try:
        cluster.prepare()
        if progress is not None:
            progress("cluster: starting Redis, 2 ingest nodes, 2 gateways, nginx")
        cluster.start()
        proxied = _window("cluster+nginx", f"ws://127.0.0.1:{port}/ws", None, args, progress)
        gateway = cluster.gateways[0]
        url = f"ws://127.0.0.1:{cluster.ports[gateway.name]}/ws"
        direct = _window("gateway", url, gateway.pid, args, progress)
        return [proxied, direct]
    finally:
        cluster.stop()


def _wait(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.1)


def run(args: argparse.Namespace, progress: Progress | None) -> dict[str, Any]:
    nginx_bin = find_binary("nginx", None)
    find_binary("redis-server", None)
    with tempfile.TemporaryDirectory(prefix="scada-bench-cluster-") as tmp:
        work = Path(tmp)
        results = _single(args, nginx_bin, work, progress) + _cluster(args, work, progress)
    by = {r.target: r for r in results}
    single, cluster = by["single+nginx"], by["cluster+nginx"]
    added = (
        cluster.latency_ms_p99 - single.latency_ms_p99
        if cluster.latency_ms_p99 is not None and single.latency_ms_p99 is not None
        else None
    )
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "results": {r.target: r.as_dict() for r in results},
        "added_latency_ms_p99": added,
        "gateway_cpu_per_frame_over_single": ratio(
            by["gateway"].cpu_us_per_frame, by["single"].cpu_us_per_frame
        ),
        "targets": {"added_latency_ms_p99": ADDED_P99_MS, "cpu_ratio": CPU_RATIO},
    }


def render(doc: dict[str, Any]) -> str:
    results = [FanoutResult(**v) for v in doc["results"].values()]
    added, cpu = doc["added_latency_ms_p99"], doc["gateway_cpu_per_frame_over_single"]

    def verdict(value: float | None, target: float) -> str:
        return "-" if value is None else ("met" if value <= target else "NOT met")

    return "\n".join(
        [
            f"scada bench --cluster: {doc['clients']} clients, {doc['seconds']:.0f} s per window",
            "",
            table(FANOUT_ROWS, results),
            "",
            "latency p99 added by the bus and a gateway (cluster+nginx - single+nginx): "
            + ("-" if added is None else f"{added:+.1f} ms")
            + f" (target <= +{ADDED_P99_MS:g} ms: {verdict(added, ADDED_P99_MS)})",
            "gateway CPU per delivered frame / all-in-one: "
            + ("-" if cpu is None else f"{cpu:.2f}")
            + f" (target <= {CPU_RATIO:g}: {verdict(cpu, CPU_RATIO)})",
        ]
    )
