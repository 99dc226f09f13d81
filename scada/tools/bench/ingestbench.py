"""`scada bench --ingest`: the per-tick pipeline without any client, at plant sizes 8..500 lines.

One tick here is what the server does every 100 ms before fan-out: the simulator steps and is
read (the `sim` driver), the tag store takes the reading and checks staleness, the alarm
engine evaluates every tag, the dirty lines become LineSample records and one encoded
`production_data` frame (the batcher), and the history ring gets its row. Lines are copies
of the default plant's lines (10 tags each, 1-8 as configured, then again); values arrive at
10 Hz.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson

from scada.alarms.engine import AlarmEngine
from scada.core.config import PlantConfig, config_from_dict, default_config_text
from scada.core.timefmt import iso_ms
from scada.fanout.broadcaster import frame_prefix
from scada.plant.runtime import Runtime

SIZES = (8, 50, 100, 200, 500)
TICK_S = 0.1
QUARTER_CORE = 0.25


def plant_config(lines: int) -> PlantConfig:
    """The default plant with `lines` lines: its own lines first (each with its overrides:
    lines 5-8 run other diameters), then further lines repeating them in turn."""
    raw = tomllib.loads(default_config_text())
    default = raw["lines"]
    raw["lines"] = [
        {**copy.deepcopy(default[(i - 1) % len(default)]), "id": str(i), "name": f"Line {i}"}
        for i in range(1, lines + 1)
    ]
    return config_from_dict(raw, source=f"<bench: {lines} lines>")


@dataclass
class IngestResult:
    lines: int
    tags: int
    ticks: int
    cpu_ms_per_tick: float
    cpu_us_per_1000_values: float
    core_fraction_at_10hz: float  # CPU seconds per second when ticking every 100 ms
    tick_ms_p50: float
    tick_ms_p99: float
    frame_bytes: int
    fits_quarter_core: bool


class IngestPipeline:
    def __init__(self, config: PlantConfig) -> None:
        self.rt = Runtime(config)
        self.engine = AlarmEngine(config, self.rt.schema, [d.name for d in config.devices])
        self.driver = self.rt.pollers[0].driver
        assert self.rt.plant is not None
        self.plant = self.rt.plant

    async def tick(self) -> int:
        """One 100 ms tick of work; returns the encoded frame's size."""
        rt = self.rt
        self.plant.advance(TICK_S)  # simulated time moves a full tick however fast we run
        rt.store.write(await self.driver.read(), time.monotonic())
        mono, now = time.monotonic(), time.time()
        rt.store.refresh(mono)
        self.engine.evaluate(now, rt.store.values, rt.store.quality, {"sim": True})
        dirty = rt.store.take_dirty()
        size = 0
        if len(dirty):
            records = rt.encoder.encode(rt.store, dirty)
            size = len(frame_prefix("production_data", records, iso_ms(now)))
        rt.history.append(now, rt.store.history_row())
        return size


async def measure_size(lines: int, ticks: int, warmup: int = 10) -> IngestResult:
    pipeline = IngestPipeline(plant_config(lines))
    for _ in range(warmup):
        await pipeline.tick()
    durations = np.empty(ticks)
    size = 0
    cpu0 = time.process_time()
    for i in range(ticks):
        t0 = time.perf_counter()
        size = await pipeline.tick()
        durations[i] = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    tags = pipeline.rt.schema.size
    per_tick = cpu / ticks
    return IngestResult(
        lines=lines,
        tags=tags,
        ticks=ticks,
        cpu_ms_per_tick=per_tick * 1000,
        cpu_us_per_1000_values=per_tick / tags * 1000 * 1e6,
        core_fraction_at_10hz=per_tick / TICK_S,
        tick_ms_p50=float(np.percentile(durations, 50) * 1000),
        tick_ms_p99=float(np.percentile(durations, 99) * 1000),
        frame_bytes=size,
        fits_quarter_core=per_tick / TICK_S <= QUARTER_CORE,
    )


def render(results: list[IngestResult]) -> str:
    head = (
        f"{'lines':>6} {'tags':>6} {'CPU ms/tick':>12} {'µs/1000 values':>15} "
        f"{'core @10 Hz':>12} {'tick p50 ms':>12} {'tick p99 ms':>12} {'frame KB':>9}"
    )
    rows = [
        f"{r.lines:>6} {r.tags:>6} {r.cpu_ms_per_tick:>12.2f} {r.cpu_us_per_1000_values:>15.0f} "
        f"{r.core_fraction_at_10hz:>12.3f} {r.tick_ms_p50:>12.2f} {r.tick_ms_p99:>12.2f} "
        f"{r.frame_bytes / 1024:>9.1f}"
        for r in results
    ]
    last = results[-1]
    verdict = "fits" if last.fits_quarter_core else "does NOT fit"
    return "\n".join(
        [
            "scada bench --ingest: simulator + tag store + alarm engine + batcher, 10 Hz",
            "",
            head,
            *rows,
            "",
            f"{last.lines} lines need {last.core_fraction_at_10hz:.3f} of one core: "
            f"{verdict} in a quarter core (target ≤ {QUARTER_CORE}).",
        ]
    )


def run_ingest(args: argparse.Namespace, progress: Callable[[str], None] | None) -> int:
    sizes = [int(s) for s in args.sizes.split(",")] if getattr(args, "sizes", None) else SIZES
    ticks = max(10, int(args.seconds * 10))
    results = []
    for lines in sizes:
        if progress is not None:
            progress(f"ingest: {lines} lines, {ticks} ticks")
        results.append(asyncio.run(measure_size(lines, ticks)))
    if progress is not None:
        sys.stderr.write("\r\x1b[2K")
    if args.json:
        doc: dict[str, Any] = {"ingest": [asdict(r) for r in results]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(results))
    return 0
