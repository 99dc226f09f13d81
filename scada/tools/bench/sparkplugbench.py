"""`scada bench --sparkplug`: the Sparkplug edge node's CPU per published value at plant sizes
(default 8 and 500 lines), beside the WebSocket fan-out's per-tick frame in the same run.

Each 100 ms tick runs the ingest pipeline of `--ingest` (simulator, tag store, alarm engine);
then, measured apart on the process CPU clock:
- fan-out: the dirty lines' LineSample records and the one encoded `production_data` frame
  every WebSocket client gets (encoded once per tick, whatever the number of clients);
- edge node: what scada.sparkplug does after a tick: changed tags (rounded, numpy) and alarm
  metrics into the session, DDATA built and encoded; with `--broker`, also published (aiomqtt
  over paho) to that broker, so the figure includes the MQTT client's share.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from drivers.sparkplug.edge import EdgeNode, Publish
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import frame_prefix
from scada.sparkplug.plantmetrics import PlantMetrics
from scada.sparkplug.service import alarm_infos
from scada.tools.bench.ingestbench import TICK_S, IngestPipeline, plant_config

SIZES = (8, 500)


@dataclass
class SparkplugResult:
    lines: int
    tags: int
    ticks: int
    published: bool  # through a broker, or built and encoded only
    values_per_tick: float
    messages_per_tick: float
    edge_cpu_ms_per_tick: float
    edge_cpu_us_per_value: float
    fanout_frame_cpu_ms_per_tick: float
    fanout_frame_kb: float


class Bench:
    def __init__(self, lines: int) -> None:
        self.pipeline = IngestPipeline(plant_config(lines))
        rt = self.pipeline.rt
        engine = self.pipeline.engine
        self.metrics = PlantMetrics(rt.schema, rt.config.lines, alarm_infos(engine.defs))
        self.node = EdgeNode("plant", "bench", self.metrics.defs())
        self.node.connecting()
        self.node.connected(int(time.time() * 1000))
        self.wire: list[dict[str, Any]] = []

    async def ingest(self) -> Any:
        """The tick's ingest work (not measured); the dirty lines."""
        p = self.pipeline
        rt = p.rt
        p.plant.advance(TICK_S)
        rt.store.write(await p.driver.read(), time.monotonic())
        rt.store.refresh(time.monotonic())
        if p.engine.evaluate(time.time(), rt.store.values, rt.store.quality, {"sim": True}):
            self.wire = [e.to_wire() for e in p.engine.current()]
        return rt.store.take_dirty()

    def fanout(self, dirty: Any) -> int:
        rt = self.pipeline.rt
        records = rt.encoder.encode(rt.store, dirty)
        return len(frame_prefix("production_data", records, iso_ms(time.time())))

    def edge(self) -> list[Publish]:
        store = self.pipeline.rt.store
        now = int(time.time() * 1000)
        samples = self.metrics.tag_samples(store.values, store.quality, store.source_time)
        alarms = self.metrics.alarm_samples(self.wire, now, version=id(self.wire))
        for device, values in alarms.items():
            samples.setdefault(device, {}).update(values)
        for device, values in samples.items():
            self.node.set_values(device, values)
        return self.node.changes(now)


async def measure(lines: int, ticks: int, publish: Any = None) -> SparkplugResult:
    bench = Bench(lines)
    for _ in range(10):  # warm up: the first ticks publish every tag
        bench.edge()
        bench.fanout(await bench.ingest())
    values0 = bench.node.values_sent
    edge_cpu = fan_cpu = 0.0
    messages = size = 0
    for _ in range(ticks):
        dirty = await bench.ingest()
        t0 = time.process_time()
        size = bench.fanout(dirty)
        t1 = time.process_time()
        out = bench.edge()
        if publish is not None:
            for m in out:
                await publish(m)
        t2 = time.process_time()
        fan_cpu += t1 - t0
        edge_cpu += t2 - t1
        messages += len(out)
    values = bench.node.values_sent - values0
    return SparkplugResult(
        lines=lines,
        tags=bench.pipeline.rt.schema.size,
        ticks=ticks,
        published=publish is not None,
        values_per_tick=values / ticks,
        messages_per_tick=messages / ticks,
        edge_cpu_ms_per_tick=edge_cpu / ticks * 1000,
        edge_cpu_us_per_value=edge_cpu / max(values, 1) * 1e6,
        fanout_frame_cpu_ms_per_tick=fan_cpu / ticks * 1000,
        fanout_frame_kb=size / 1024,
    )


async def _measure_all(
    args: argparse.Namespace, sizes: list[int], ticks: int, progress: Any
) -> list[SparkplugResult]:
    results = []
    if not args.broker:
        for lines in sizes:
            if progress is not None:
                progress(f"sparkplug: {lines} lines, {ticks} ticks")
            results.append(await measure(lines, ticks))
        return results
    import os

    import aiomqtt

    from drivers.sparkplug.aiomqtt_adapter import require_aiomqtt
    from drivers.sparkplug.broker import BrokerSettings
    from drivers.sparkplug.edgeclient import send

    require_aiomqtt()  # `send` takes paho's fast path, like an EdgeClient
    password = os.environ.get(args.mqtt_password_env or "", "") or None
    broker = BrokerSettings(url=args.broker, username=args.mqtt_user, password=password)
    async with aiomqtt.Client(**broker.client_kwargs(), identifier="scada-bench") as client:

        async def publish(m: Publish) -> None:
            await send(client, [m])

        for lines in sizes:
            if progress is not None:
                progress(f"sparkplug: {lines} lines, {ticks} ticks, publishing")
            results.append(await measure(lines, ticks, publish))
    return results


def render(results: list[SparkplugResult]) -> str:
    head = (
        f"{'lines':>6} {'tags':>6} {'values/tick':>12} {'msgs/tick':>10} {'edge ms/tick':>13} "
        f"{'edge µs/value':>14} {'frame ms/tick':>14} {'frame KB':>9}"
    )
    rows = [
        f"{r.lines:>6} {r.tags:>6} {r.values_per_tick:>12.1f} {r.messages_per_tick:>10.1f} "
        f"{r.edge_cpu_ms_per_tick:>13.3f} {r.edge_cpu_us_per_value:>14.2f} "
        f"{r.fanout_frame_cpu_ms_per_tick:>14.3f} {r.fanout_frame_kb:>9.1f}"
        for r in results
    ]
    how = (
        "built, encoded and published"
        if results and results[0].published
        else "built and encoded (no broker: --broker URL adds the publish)"
    )
    return "\n".join(
        [
            "scada bench --sparkplug: the edge node's DDATA per 100 ms tick beside the fan-out's frame",
            f"(edge: changed tags + alarm metrics {how}; frame: records + one encoded",
            " production_data frame, shared by every WebSocket client)",
            "",
            head,
            *rows,
        ]
    )


def run_sparkplug(args: argparse.Namespace, progress: Callable[[str], None] | None) -> int:
    sizes = [int(s) for s in args.sizes.split(",")] if getattr(args, "sizes", None) else list(SIZES)
    ticks = max(10, int(args.seconds * 10))
    results = asyncio.run(_measure_all(args, sizes, ticks, progress))
    if progress is not None:
        sys.stderr.write("\r\x1b[2K")
    if args.json:
        doc = {"sparkplug": [asdict(r) for r in results]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(results))
    return 0
