"""FrameFollower.take: rows from the first full frame on, latest values kept between partial
frames, recorded at the frame's time, never twice for one instant."""

from __future__ import annotations

import numpy as np

from scada.bus.keys import BusKeys
from scada.core.tags import Quality
from scada.core.timefmt import iso_ms
from scada.plant.samples import SampleEncoder
from scada.roles.ingest.follow import FrameFollower
from scada.roles.ingest.framepublish import frame_payload
from tests.unit.test_sampledecode import SCHEMA, plant_store

Row = tuple[float, np.ndarray, np.ndarray]


def follower(rows: list[Row], last: list[float]) -> FrameFollower:
    def record(t: float, values: np.ndarray, quality: np.ndarray) -> None:
        rows.append((t, values.copy(), quality.copy()))
        last.append(t)

    return FrameFollower(
        "redis://127.0.0.1:1/0",
        BusKeys("scada"),
        SCHEMA,
        record,
        resolution_ms=100,
        last_recorded=lambda: last[-1] if last else None,
    )


def test_rows_from_the_first_full_frame_with_the_latest_values_kept() -> None:
    store = plant_store()
    store.quality[:] = Quality.GOOD
    encoder = SampleEncoder(SCHEMA)
    rows: list[Row] = []
    f = follower(rows, [])
    t0 = 1_800_000_000.0
    assert not f.take(frame_payload(iso_ms(t0), encoder.encode(store, [0]), False, {}))
    everything = encoder.encode(store, list(range(len(SCHEMA.line_ids))))
    assert f.take(frame_payload(iso_ms(t0 + 0.1), everything, True, {}))
    i = SCHEMA.index("2", "diameter")
    store.values[i] = 1.5
    assert f.take(frame_payload(iso_ms(t0 + 0.2), encoder.encode(store, [1]), False, {}))
    assert f.take(frame_payload(iso_ms(t0 + 0.3), [], False, {}))  # heartbeat: same values
    assert [round(t, 3) for t, _, _ in rows] == [t0 + 0.1, t0 + 0.2, t0 + 0.3]
    np.testing.assert_array_equal(rows[-1][1], store.values)
    assert (rows[-1][2] == Quality.GOOD).all()
    assert rows[0][1][i] != 1.5 and rows[1][1][i] == 1.5


def test_an_instant_already_recorded_is_skipped() -> None:
    store = plant_store()
    everything = SampleEncoder(SCHEMA).encode(store, list(range(len(SCHEMA.line_ids))))
    rows: list[Row] = []
    t0 = 1_800_000_000.0
    f = follower(rows, [t0])  # the node's own tick recorded t0
    assert not f.take(frame_payload(iso_ms(t0 - 1), everything, True, {}))
    assert not f.take(frame_payload(iso_ms(t0 + 0.04), everything, True, {}))
    assert f.take(frame_payload(iso_ms(t0 + 0.1), everything, True, {}))
    assert f.skipped == 2 and len(rows) == 1
