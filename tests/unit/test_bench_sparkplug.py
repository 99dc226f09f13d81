"""`scada bench --sparkplug` measures what it says: the edge node's DATA values of real ticks
(counted from the encoded payloads), beside the fan-out frame of the same ticks."""

from __future__ import annotations

import asyncio

from drivers.sparkplug import spbcodec as sp
from scada.tools.bench.sparkplugbench import Bench, measure, render


def test_the_values_counted_are_the_values_in_the_payloads() -> None:
    bench = Bench(8)

    async def ticks() -> tuple[int, int]:
        in_payloads = 0
        before = bench.node.values_sent
        for _ in range(5):
            bench.fanout(await bench.ingest())
            for message in bench.edge():
                assert "/DDATA/bench/line" in message.topic
                in_payloads += len(sp.decode(message.payload).metrics)
        return in_payloads, bench.node.values_sent - before

    in_payloads, counted = asyncio.run(ticks())
    assert in_payloads == counted > 0


def test_a_run_reports_both_sides() -> None:
    result = asyncio.run(measure(8, 10))
    assert result.tags == 80 and result.values_per_tick > 0 and result.fanout_frame_kb > 0
    assert not result.published
    assert "edge µs/value" in render([result])
