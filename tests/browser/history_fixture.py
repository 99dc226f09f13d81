"""History files written ahead of a server start: a day of trend data in seconds, with gaps.

Uses the historian benchmark's bulk builder on minutes recorded from the plant's own
simulator, so tag paths, units and value ranges are those of the config the server runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from scada.core.config import load_config
from scada.core.tags import TagSchema
from scada.historian.db import CHUNK_MS
from scada.tools.bench.historybench import RES_MS, build
from simulators.simulation import SimulatedPlant

HOUR_MS = 3_600_000


def record(config_path: Path, minutes: int = 2) -> tuple[TagSchema, np.ndarray]:
    config = load_config(config_path)
    schema = TagSchema(config.lines)
    plant = SimulatedPlant(config.lines, seed=7)
    out = np.empty((minutes * CHUNK_MS // RES_MS, schema.size), dtype=np.float32)
    plant.advance(60.0)  # past the start-up transient
    for i in range(len(out)):
        plant.advance(RES_MS / 1000)
        values, _valid = plant.sample()
        out[i] = values.reshape(-1)
    return schema, out


def write_history(config_path: Path, history: Path, spans_h: list[tuple[float, float]]) -> None:
    """Write history for each (hours ago it starts, hours ago it ends); between: a gap."""
    schema, data = record(config_path)
    now = int(time.time() * 1000)
    for start_h, end_h in spans_h:
        end = now - int(end_h * HOUR_MS)
        build(history, schema, data, end, int((start_h - end_h) * HOUR_MS), None)
