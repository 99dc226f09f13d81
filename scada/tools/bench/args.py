"""`scada bench`: argument handling and the run order; measuring lives in the sibling modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import orjson

from scada.tools.bench.fanoutbench import FanoutResult, default_workers, measure, stderr_progress
from scada.tools.bench.historybench import add_arguments as history_arguments
from scada.tools.bench.readers import add_arguments as readers_arguments
from scada.tools.bench.report import FANOUT_ROWS, fanout_ratios, ratio_lines, table
from scada.tools.bench.servers import ServerUnderTest, bare_reference
from scada.tools.bench.stall import add_arguments as stall_arguments

COMPRESSION_MODES = ("off", "per-client", "shared")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clients", type=int, default=200, help="WebSocket clients (default 200)")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window (default 10)")
    p.add_argument(
        "--workers", type=int, default=None, help="client processes (default: 1 per 750)"
    )
    p.add_argument("--url", help="measure a running server (ws://HOST:PORT/ws) instead")
    p.add_argument("--server-pid", type=int, help="with --url on this box: its pid, for CPU/RSS")
    p.add_argument(
        "--targets",
        default="scada,naive,bare",
        help="comma list of scada, naive, bare (default: all three)",
    )
    p.add_argument(
        "--compression",
        action="store_true",
        help="also compare permessage-deflate: off, per-client, shared (clients offer deflate)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="bus latency and gateway CPU per frame: two gateways behind nginx vs the all-in-one",
    )
    p.add_argument("--ingest", action="store_true", help="run the ingest benchmark instead")
    p.add_argument(
        "--sizes", help="--ingest plant sizes in lines, comma list (default 8,50,100,200,500)"
    )
    p.add_argument("--history", action="store_true", help="run the historian benchmark instead")
    p.add_argument(
        "--idle-memory",
        action="store_true",
        help="memory per idle connection instead: RSS of --targets, tracemalloc sites of scada",
    )
    p.add_argument(
        "--churn",
        type=int,
        metavar="ROUNDS",
        help="run the connection-churn memory benchmark instead: ROUNDS x --clients, tracemalloc",
    )
    history_arguments(p)
    stall_arguments(p)
    readers_arguments(p)
    p.add_argument(
        "--sparkplug",
        action="store_true",
        help="the Sparkplug edge node's CPU per published value (--sizes, default 8,500)",
    )
    p.add_argument("--broker", help="--sparkplug: also publish to this MQTT broker (mqtt://...)")
    p.add_argument("--mqtt-user", help="--sparkplug --broker: user name")
    p.add_argument("--mqtt-password-env", help="--sparkplug --broker: password's variable")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--config", help="plant config for the servers (default: the 8-line plant)")


def run(args: argparse.Namespace) -> int:
    progress = None if args.quiet else stderr_progress
    if args.readers:
        from scada.tools.bench import readers

        refused = readers.check(args)
        if refused is not None:
            print(f"error: {refused}", file=sys.stderr)
            return 2
        return emit(args, progress, readers.run(args, progress), readers.render)
    if args.stall:
        from scada.tools.bench import stall

        return emit(args, progress, stall.run(args, progress), stall.render)
    if args.history_out:
        from scada.core.errors import ConfigError
        from scada.tools.bench import historybench as history

        try:
            doc = history.build_data_dir(args, progress)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return emit(args, progress, doc, history.render_data_dir)
    if args.history:
        from scada.tools.bench import historybench as history

        return emit(args, progress, history.run(args, progress), history.render)
    if args.idle_memory:
        from scada.tools.bench import idle

        return emit(args, progress, idle.run(args, progress), idle.render)
    if args.churn:
        from scada.tools.bench import churn

        return emit(args, progress, churn.run(args, progress), churn.render)
    if args.cluster:
        from scada.tools.bench import clusterbench as cluster

        return emit(args, progress, cluster.run(args, progress), cluster.render)
    if args.sparkplug:
        from scada.tools.bench.sparkplugbench import run_sparkplug

        return run_sparkplug(args, progress)
    if args.ingest:
        from scada.tools.bench.ingestbench import run_ingest

        return run_ingest(args, progress)
    return emit(args, progress, run_fanout(args, progress), render_fanout)


def emit(
    args: argparse.Namespace,
    progress: Any,
    doc: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
) -> int:
    if progress is not None:
        sys.stderr.write("\r\x1b[2K")
    if args.json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(doc))
    return 0


def run_fanout(args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    workers = args.workers or default_workers(args.clients)
    results: dict[str, FanoutResult] = {}
    if args.url:
        results["url"] = measure(
            external(args.url, args.server_pid),
            clients=args.clients,
            seconds=args.seconds,
            workers=workers,
            progress=progress,
        )
    else:
        for kind in [t.strip() for t in args.targets.split(",") if t.strip()]:
            server = ServerUnderTest(kind, config=args.config)
            results[kind] = measure(
                server,
                clients=args.clients,
                seconds=args.seconds,
                workers=workers,
                progress=progress,
            )
    compression: dict[str, FanoutResult] = {}
    if args.compression and not args.url:
        for mode in COMPRESSION_MODES:
            server = ServerUnderTest("scada", compression=mode, config=args.config)
            compression[mode] = measure(
                server,
                clients=args.clients,
                seconds=args.seconds,
                workers=workers,
                deflate=True,
                slow_client=False,
                progress=progress,
            )
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "workers": workers,
        "bare_reference": bare_reference() if "bare" in results else None,
        "results": {k: v.as_dict() for k, v in results.items()},
        "ratios": fanout_ratios(results),
        "compression": {k: v.as_dict() for k, v in compression.items()},
        "compression_ratios": compression_ratios(compression),
    }


def compression_ratios(results: dict[str, FanoutResult]) -> dict[str, float | None]:
    off = results.get("off")
    out: dict[str, float | None] = {}
    if off is None or not off.cpu_us_per_frame or not off.bytes_per_frame:
        return out
    for mode in ("per-client", "shared"):
        r = results.get(mode)
        if r is not None and r.cpu_us_per_frame and r.bytes_per_frame:
            out[f"{mode}_cpu_over_off"] = r.cpu_us_per_frame / off.cpu_us_per_frame
            out[f"{mode}_bytes_over_off"] = r.bytes_per_frame / off.bytes_per_frame
    return out


def external(url: str, pid: int | None) -> ServerUnderTest:
    return ServerUnderTest.from_url(url, pid)


def render_fanout(doc: dict[str, Any]) -> str:
    results = [FanoutResult(**v) for v in doc["results"].values()]
    out = [
        f"scada bench: {doc['clients']} clients, {doc['seconds']:.0f} s window, "
        f"{doc['workers']} client process(es)"
        + (f"; bare = {doc['bare_reference']}" if doc.get("bare_reference") else ""),
        "",
        table(FANOUT_ROWS, results),
        "",
        *ratio_lines(doc["ratios"]),
    ]
    if doc["compression"]:
        comp = [FanoutResult(**v) for v in doc["compression"].values()]
        out += ["", "permessage-deflate (clients offer it):", table(FANOUT_ROWS[:12], comp)]
        for key, value in doc["compression_ratios"].items():
            out.append(f"{key.replace('_', ' ')}: {value:.2f}")
    return "\n".join(out)
