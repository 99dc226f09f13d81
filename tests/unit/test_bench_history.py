"""`scada bench --history` at a tiny size: every part runs and the report holds together."""

from __future__ import annotations

import argparse
from pathlib import Path

from scada.tools.bench import historybench as history
from scada.tools.bench.args import add_arguments


def test_tiny_history_bench_reports_every_measurement(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--history",
            "--history-days", "1.05",
            "--history-lines", "1",
            "--big-lines", "2",
            "--big-hours", "1.1",
            "--naive-hours", "0.5",
            "--cpu-tags", "20",
            "--cpu-seconds", "1.5",
            "--reps", "2",
            "--sim-minutes", "1",
            "--dir", str(tmp_path),
        ]
    )  # fmt: skip
    doc = history.run(args, None)
    plant = doc["plant"]
    assert plant["tags"] == 10 and plant["values"] == 10 * 1512 * 600
    assert 0.5 < plant["bytes_per_value"] < 4  # the simulator's signals, rollups included
    assert doc["naive"]["bytes_per_value"] > plant["bytes_per_value"]
    queries = plant["queries"]
    assert set(queries) == {"1 tag x 1 h", "1 tag x 24 h", "8 tags x 24 h"}
    assert queries["1 tag x 1 h"]["tier"] == "raw" and queries["1 tag x 24 h"]["tier"] == "1m"
    assert 0 < queries["1 tag x 24 h"]["p50_ms"] <= queries["1 tag x 24 h"]["p95_ms"]
    assert set(doc["speedup_24h"]) == {"1 tag x 24 h", "8 tags x 24 h"}
    assert doc["big"]["tags"] == 20 and "1 tag x 1 h" in doc["big"]["queries"]
    assert doc["writer"]["tags"] == 20 and doc["writer"]["writer_core_fraction"] > 0
    text = history.render(doc)
    assert "naive" in text and "bytes per raw value" in text


def test_the_bench_plant_has_the_default_plants_lines_and_repeats_them() -> None:
    from scada.core.config import load_config
    from scada.tools.bench.ingestbench import plant_config

    default = load_config().lines
    bench = plant_config(12).lines
    for got, want in zip(bench[:8], default, strict=True):
        assert got.tags["diameter"] == want.tags["diameter"]
    assert bench[4].tags["diameter"].setpoint == 16.0 and bench[6].tags["diameter"].setpoint == 8.0
    assert bench[12 - 1].tags["diameter"] == default[3].tags["diameter"]  # line 12 as line 4
